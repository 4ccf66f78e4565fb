"""``python -m rewards_as_labels trl``: one run of a profile trained by TRL's ``GRPOTrainer``.

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml --num_processes 2 \\
        -m rewards_as_labels trl --profile smoke --method real --seed 0 [field=value ...]
    make train-trl PROFILE=smoke METHOD=real SEED=0 PROCS=2 [ACCELERATE=cpu_2proc]

It reads what our own trainer (:mod:`rewards_as_labels.trainer`) reads -- the profile and its
overrides (:func:`~rewards_as_labels.config.load_config`), the model (:func:`~rewards_as_labels.modeling.load_policy`:
hub id, folder, ``pypi:`` GGUF or the profile's warm start), the JSONL splits of ``make data``
(:func:`~rewards_as_labels.data.load_split`), the prompt format
(:func:`~rewards_as_labels.modeling.format_prompt`) and the verifier
(:func:`~rewards_as_labels.verifier.score_completions`, called in each process's main thread, where
math-verify's ``signal.alarm`` timeouts work) -- maps the profile onto TRL's config by ONE rule
(:func:`trl_fields`, table below), trains with :class:`~.trl.RewardsAsLabelsGRPOTrainer` (REAL/GRAD as
its losses, GRPO/DAPO/GSPO as TRL's own), and writes the run folder that ``make evaluate`` and
``make figures`` read, ``runs/<profile>/trl-<method>-s<seed>/`` (:mod:`~rewards_as_labels.run_names`):

    config.json     the Config (as our trainer writes it) plus ``engine: trl``
    trl.json        the GRPOConfig fields the rule set, the process count and the accelerate state
    versions.json   package versions (accelerate added)
    metrics.jsonl   one row per paper step, in our metric names (:data:`METRIC_NAMES`); validation
                    (``eval/*``) at the profile's ``eval_every`` through our own evaluation
    ckpt_<step>/    ``model/`` (weights + tokenizer) and ``state.json``, every ``checkpoint_every`` steps
                    and at the end (the newest ``keep_checkpoints`` kept): what ``make evaluate`` loads
    final.json      the validation after the last step, like our trainer's

All of them are written by the main process, atomically (:mod:`rewards_as_labels.io`). A run folder
that holds a finished run (``final.json``) is refused; an unfinished one (an interrupted run) starts
over from step 0 -- this command does not resume.

The mapping rule (:func:`trl_fields`). P = ``prompts_per_step``, n = ``rollouts_per_prompt``, M =
``minibatches_per_step``, W = processes; a paper step is one rollout batch of P x n rollouts trained in
M optimiser steps of P/M whole groups each (P/M must divide by W: every process holds whole groups).

    ======================================  =====================================================
    Config field(s)                         GRPOConfig field(s)
    ======================================  =====================================================
    rollouts_per_prompt                     num_generations = n
    prompts_per_step, minibatches_per_step, per_device_train_batch_size = micro_batch_size, else
    micro_batch_size, (processes W)         P n / (M W) (one pass per process and optimiser step);
                                            gradient_accumulation_steps = P n / (M W) / that;
                                            steps_per_generation = M x gradient_accumulation_steps
                                            (the generation batch is P x n rollouts, trained in M
                                            optimiser steps; M > 1 stores pi_old, later ones
                                            off-policy as in the paper); num_iterations = 1
    total_steps                             max_steps = total_steps x M (TRL counts optimiser steps)
    learning_rate, adam_beta1, adam_beta2,  the same names; optim adamw_torch
    weight_decay
    lr_warmup_steps                         warmup_steps, lr_scheduler_type constant_with_warmup
                                            (0: constant; TRL's default is a linear decay)
    grad_clip, max_grad_norm                fixed: max_grad_norm; off: max_grad_norm = 0 (the norm is
                                            still logged); relative: REFUSED (TRL clips at a fixed norm)
    method                                  real / grad: ral_loss = method, tau = tau;
                                            grpo: ral_loss None, loss_type grpo, epsilon = epsilon_high
                                            = clip_eps; dapo: loss_type dapo, epsilon = dapo_clip_low,
                                            epsilon_high = dapo_clip_high; gspo: loss_type grpo,
                                            importance_sampling_level sequence, epsilon =
                                            gspo_clip_low, epsilon_high = gspo_clip_high;
                                            scale_rewards group (all)
    kl_coef (resolved: GRPO 0.001)          beta
    temperature, top_k, top_p               the same names (top_k 0 = off in both)
    max_new_tokens                          max_completion_length (prompts are never cut, in both)
    seed                                    seed; the prompts of step s are our trainer's
                                            (trainer.prompt_indices), in order (shuffle_dataset False)
    gradient_checkpointing                  gradient_checkpointing (TRL's default True is overridden)
    device, dtype                           use_cpu = device is cpu; bf16 = dtype auto on CUDA
    rollout_backend                         hf: use_vllm False; vllm: use_vllm True, vllm_mode
                                            ``--vllm-mode`` (colocate, or server with
                                            ``--vllm-server-base-url``), vllm_gpu_memory_utilization =
                                            gpu_memory_utilization, vllm_importance_sampling_correction
                                            False (neither REAL/GRAD nor our trainer correct for it)
    eval_*, checkpoint_every,               our own evaluation and checkpoints (TRL's eval_strategy
    keep_checkpoints                        and save_strategy are "no")
    num_threads                             torch.set_num_threads in each process
    ======================================  =====================================================

A profile whose value cannot be expressed this way is refused with the field, the value and the fix
(:class:`Unmappable`), never dropped: ``grad_clip=relative``; P/M not divisible by W; a
``micro_batch_size`` that does not divide a process's rows (or, for REAL/GRAD, holds part of a group);
and, at launch, ``eval_every > 0`` under DeepSpeed ZeRO-3 or FSDP (validation generates on the main
process alone, which sharded parameters do not allow). Where TRL differs from our trainer even so is
listed in docs/scaling_out.md ("The two engines: what TRL does differently").
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from ..config import Config
from ..run_names import engine_run_name

ENGINE = "trl"
# how long the other processes wait at a barrier while the main one validates or writes a checkpoint
# (torch.distributed's default is 30 min, short for a long-answer validation on one GPU)
BARRIER_TIMEOUT_S = 6 * 3600

# TRL's log key -> our metric name. TRL averages a key over the optimiser steps of a paper step
# (logging_steps = M); keys not listed are kept as "trl/<key>".
METRIC_NAMES = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",  # TRL: the last optimiser step's pre-clip norm (ours: mean over M)
    "learning_rate": "train/lr",
    "entropy": "policy/entropy",  # TRL: from the training forwards (ours: the old log-prob forward)
    "completions/mean_length": "response/length_mean",
    "kl": "train/kl",
    "clip_ratio/region_mean": "train/clip_fraction",  # GRPO/DAPO/GSPO: tokens whose ratio was clipped
}
# computed by us from the verifier's own results in the reward function (every process, summed):
# reward/mean, response/truncated_frac, groups/{one_label,all_correct,all_wrong}_frac, groups/count,
# verify/<outcome>_frac; and ral/weight/{pos,neg}_{mean,max} -> weights/<method>/{pos,neg}_{mean,max}
# for REAL/GRAD; time/step, the wall time of the paper step.


class Unmappable(ValueError):
    """A profile value that TRL's GRPOConfig cannot express (the message names field, value and fix)."""


def trl_run_dir(cfg: Config) -> Path:
    """``cfg.out`` when set, else ``<profile_dir>/trl-<method>-s<seed>``."""
    return Path(cfg.out) if cfg.out else cfg.profile_dir / engine_run_name(ENGINE, cfg.method, cfg.seed)


def trl_fields(
    cfg: Config, num_processes: int = 1, *, vllm_mode: str = "colocate", vllm_server_base_url: str = ""
) -> dict:
    """The GRPOConfig fields of ``cfg`` trained on ``num_processes`` processes: the one mapping rule of
    the module docstring. Raises :class:`Unmappable` naming the field, the value and the fix.

    >>> f = trl_fields(Config(method="real", prompts_per_step=32, rollouts_per_prompt=8, minibatches_per_step=2), 2)
    >>> [f[k] for k in ("num_generations", "per_device_train_batch_size", "gradient_accumulation_steps")]
    [8, 64, 1]
    """
    P, n, M, W = cfg.prompts_per_step, cfg.rollouts_per_prompt, cfg.minibatches_per_step, num_processes
    if W < 1:
        raise Unmappable(f"num_processes must be >= 1, got {W}")
    if (P // M) % W:
        raise Unmappable(
            f"prompts_per_step={P} / minibatches_per_step={M} = {P // M} prompts per optimiser step cannot be split "
            f"into whole groups over {W} processes: choose prompts_per_step (or minibatches_per_step) so that "
            f"prompts_per_step / minibatches_per_step is a multiple of {W}, or launch {W} -> a divisor of {P // M} "
            "processes (PROCS=)"
        )
    rows = P * n // (M * W)  # rollouts per process per optimiser step
    micro = cfg.micro_batch_size or rows
    if micro > rows or rows % micro:
        raise Unmappable(
            f"micro_batch_size={cfg.micro_batch_size} must divide the {rows} rollouts each of {W} processes trains "
            f"per optimiser step (prompts_per_step x rollouts_per_prompt / minibatches_per_step / processes): "
            f"use a divisor of {rows}, or 0 (one pass)"
        )
    if cfg.method in ("real", "grad") and micro % n:
        raise Unmappable(
            f"micro_batch_size={cfg.micro_batch_size} splits a group of rollouts_per_prompt={n}: TRL's REAL/GRAD need "
            f"whole groups per micro-batch (our trainer splits them exactly, TRL cannot): use a multiple of {n}, or 0"
        )
    if cfg.grad_clip == "relative":
        raise Unmappable(
            "grad_clip='relative' (clip at grad_clip_relative x the median norm of the first grad_clip_window "
            "updates) has no TRL equivalent: TRL clips at a fixed max_grad_norm. Use grad_clip=fixed (with "
            "max_grad_norm=<the threshold>) or grad_clip=off"
        )
    if vllm_mode not in ("colocate", "server"):
        raise Unmappable(f"--vllm-mode must be colocate or server, got {vllm_mode!r}")
    accumulation = rows // micro
    fields: dict = {
        "num_generations": n,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": accumulation,
        "steps_per_generation": M * accumulation,
        "num_iterations": 1,
        "max_steps": cfg.total_steps * M,
        "learning_rate": cfg.learning_rate,
        "adam_beta1": cfg.adam_beta1,
        "adam_beta2": cfg.adam_beta2,
        "weight_decay": cfg.weight_decay,
        "optim": "adamw_torch",
        "lr_scheduler_type": "constant_with_warmup" if cfg.lr_warmup_steps > 0 else "constant",
        "warmup_steps": max(cfg.lr_warmup_steps, 0),
        "max_grad_norm": cfg.max_grad_norm if cfg.grad_clip == "fixed" else 0.0,
        "beta": cfg.resolved_kl_coef,
        "temperature": cfg.temperature,
        "top_k": cfg.top_k,
        "top_p": cfg.top_p,
        "max_completion_length": cfg.max_new_tokens,
        "seed": cfg.seed,
        "shuffle_dataset": False,
        "scale_rewards": "group",
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "use_cpu": cfg.device == "cpu",
        "bf16": cfg.dtype == "auto" and cfg.device.startswith("cuda"),
        "use_vllm": cfg.rollout_backend == "vllm",
    }
    if cfg.method in ("real", "grad"):
        fields.update(ral_loss=cfg.method, tau=cfg.tau)
    else:
        low, high = {
            "grpo": (cfg.clip_eps, cfg.clip_eps),
            "dapo": (cfg.dapo_clip_low, cfg.dapo_clip_high),
            "gspo": (cfg.gspo_clip_low, cfg.gspo_clip_high),
        }[cfg.method]
        fields.update(
            ral_loss=None,
            loss_type="dapo" if cfg.method == "dapo" else "grpo",
            importance_sampling_level="sequence" if cfg.method == "gspo" else "token",
            epsilon=low,
            epsilon_high=high,
        )
    if fields["use_vllm"]:
        fields.update(
            vllm_mode=vllm_mode,
            vllm_gpu_memory_utilization=cfg.gpu_memory_utilization,
            vllm_importance_sampling_correction=False,
        )
        if vllm_mode == "server" and vllm_server_base_url:
            fields["vllm_server_base_url"] = vllm_server_base_url
    return fields


# what the command sets beside the rule, for every run (logging, outputs, evaluation: ours)
def _housekeeping(cfg: Config, run_dir: Path, progress: bool) -> dict:
    return {
        "output_dir": str(run_dir / "trl"),
        "report_to": "none",
        "logging_steps": cfg.minibatches_per_step,  # one log per paper step
        "save_strategy": "no",  # our checkpoints (ckpt_<step>/) instead
        "eval_strategy": "no",  # our validation instead
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "log_completions": False,
        "ddp_timeout": BARRIER_TIMEOUT_S,
    }


def _rows_per_step_problems(cfg: Config, train_set: list) -> list[int]:
    """The train-set index of every prompt, step after step: our trainer's draws (``prompt_indices``)."""
    from ..trainer import prompt_indices

    return [
        int(i)
        for s in range(cfg.total_steps)
        for i in prompt_indices(cfg.seed, s, cfg.prompts_per_step, len(train_set))
    ]


class VerifierReward:
    """The reward function TRL calls (in each process's main thread): our verifier's 0/1 rewards of the
    local rollouts, and the batch statistics of our trainer's metrics, summed until the next log."""

    __name__ = "verifier"

    def __init__(self, problems: list, eos_ids: set[int], n: int):
        self.problems, self.eos_ids, self.n = problems, eos_ids, n
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}

    def __call__(self, prompts, completions, completion_ids, problem_index, **_) -> list[float]:
        from ..verifier import asks_for_box, score_completions

        problems = [self.problems[int(i)] for i in problem_index]
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        truncated = [not ids or ids[-1] not in self.eos_ids for ids in completion_ids]
        boxed = {"require_boxed": True} if asks_for_box(problems) else {}
        rewards, counts = score_completions(texts, [p.answer for p in problems], truncated, **boxed)
        labels = rewards.bool()
        stats = {"rows": len(texts), "correct": float(rewards.sum()), "truncated": float(sum(truncated))}
        stats.update({f"count/{k}": float(v) for k, v in counts.items()})
        if len(texts) % self.n == 0:  # TRL hands each process whole groups (checked again by the REAL loss)
            groups = labels.view(-1, self.n)
            stats.update(
                groups=float(groups.shape[0]),
                all_correct=float(groups.all(-1).sum()),
                all_wrong=float((~groups).all(-1).sum()),
            )
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        return rewards.tolist()


def _summed(accelerator, sums: dict[str, float], keys: list[str]) -> dict[str, float]:
    """``sums`` over every process (one fixed-size all-reduce; each process calls it at the same log)."""
    import torch

    local = torch.tensor([sums.get(k, 0.0) for k in keys], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local
    return dict(zip(keys, total.tolist()))


def batch_metrics(sums: dict[str, float], outcomes, repeats: int) -> dict[str, float]:
    """Our trainer's batch metrics from the summed verifier statistics of one paper step. ``repeats``:
    how often TRL's reward function saw the step's rollouts (1: once per generation batch).

    >>> batch_metrics({"rows": 8, "correct": 4, "truncated": 1, "groups": 2, "all_correct": 1, "all_wrong": 0,
    ...                "count/correct": 4, "count/wrong": 4}, ["correct", "wrong"], 1)["groups/one_label_frac"]
    0.5
    """
    rows = max(sums.get("rows", 0.0), 1.0)
    row = {
        "reward/mean": sums.get("correct", 0.0) / rows,
        "response/truncated_frac": sums.get("truncated", 0.0) / rows,
    }
    total = max(sum(sums.get(f"count/{k}", 0.0) for k in outcomes), 1.0)
    row.update({f"verify/{k}_frac": sums.get(f"count/{k}", 0.0) / total for k in outcomes})
    groups = sums.get("groups", 0.0)
    if groups:
        correct, wrong = sums.get("all_correct", 0.0) / groups, sums.get("all_wrong", 0.0) / groups
        row.update(
            {
                "groups/one_label_frac": correct + wrong,
                "groups/all_correct_frac": correct,
                "groups/all_wrong_frac": wrong,
                "groups/count": int(round(groups / repeats)),
            }
        )
    return row


def map_logs(logs: dict, method: str) -> dict:
    """TRL's log of one paper step in our names (:data:`METRIC_NAMES`; REAL/GRAD weights under
    ``weights/<method>/``; the rest as ``trl/<key>``). Values that are None are dropped.

    >>> map_logs({"loss": 0.5, "entropy": 1.2, "ral/weight/pos_max": 2.0, "reward": 0.25, "epoch": 1.0}, "real")
    {'train/loss': 0.5, 'policy/entropy': 1.2, 'weights/real/pos_max': 2.0, 'trl/reward': 0.25, 'trl/epoch': 1.0}
    """
    out = {}
    for key, value in logs.items():
        if value is None:
            continue
        if key in METRIC_NAMES:
            out[METRIC_NAMES[key]] = value
        elif key.startswith("ral/weight/"):
            out[f"weights/{method}/{key.removeprefix('ral/weight/')}"] = value
        else:
            out[f"trl/{key}"] = value
    return out


def _prepare_folder(run_dir: Path) -> None:
    """Refuse a finished run; clear an interrupted one (this command does not resume)."""
    from ..io import ensure_writable_dir

    if (run_dir / "final.json").exists():
        raise FileExistsError(f"{run_dir} already holds a finished run (final.json); choose another out= or delete it")
    ensure_writable_dir(run_dir, "run folder", "choose another out=")
    leftovers = [p for p in run_dir.iterdir() if p.name.startswith("ckpt_") or p.name in ("metrics.jsonl", "trl")]
    if leftovers:
        print(f"{run_dir} holds an interrupted TRL run: starting it over from step 0 (no resume)", flush=True)
        for p in leftovers:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def train_trl(
    cfg: Config,
    *,
    progress: bool = True,
    vllm_mode: str = "colocate",
    vllm_server_base_url: str = "",
    trl_overrides: dict | None = None,
) -> Path:
    """Train ``cfg`` with TRL (see the module docstring) in this process, one of ``WORLD_SIZE``
    (``accelerate launch``); returns the run folder. ``trl_overrides``: more GRPOConfig fields, for
    what the rule leaves to TRL (e.g. ``logging_first_step``); a field the rule sets is refused."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    from datasets import Dataset
    from transformers import TrainerCallback

    from ..checkpoint import checkpoint_dirs
    from ..data import load_split
    from ..io import JsonlWriter, atomic_write_json, package_versions
    from ..modeling import format_prompt, has_chat_template, load_policy
    from ..trainer import _evaluate
    from ..verifier import OUTCOMES
    from .trl import RewardsAsLabelsGRPOConfig, RewardsAsLabelsGRPOTrainer

    # as TrainingArguments(use_cpu=..., ddp_timeout=...) would make it (gloo on CPU), before the rule needs W
    state = PartialState(cpu=cfg.device == "cpu", timeout=timedelta(seconds=BARRIER_TIMEOUT_S))
    main = state.is_main_process
    torch.set_num_threads(cfg.num_threads)
    fields = trl_fields(cfg, state.num_processes, vllm_mode=vllm_mode, vllm_server_base_url=vllm_server_base_url)
    clash = sorted(set(trl_overrides or {}) & (set(fields) | {"output_dir"}))
    if clash:
        raise Unmappable(
            f"--trl {', '.join(clash)}: set by the mapping rule from the profile; change the profile field instead "
            "(python -m rewards_as_labels trl --help lists the rule)"
        )
    run_dir = trl_run_dir(cfg)
    if main:
        _prepare_folder(run_dir)
    state.wait_for_everyone()
    if cfg.rollout_backend == "vllm" and cfg.device == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.vllm_kv_cache_gb))

    train_set = load_split(cfg, "train")
    val_set = load_split(cfg, "validation")[: cfg.eval_prompts]
    model, tokenizer = load_policy(cfg, training=True)
    model.train()
    order = _rows_per_step_problems(cfg, train_set)
    if has_chat_template(tokenizer):  # TRL renders the template itself: the same turns format_prompt renders

        def prompt(p):
            turns = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
            return turns + [{"role": "user", "content": (cfg.prompt_template or "{prompt}").format(**_fields(p))}]
    else:

        def prompt(p):
            return format_prompt(tokenizer, p, cfg)

    dataset = Dataset.from_list([{"prompt": prompt(train_set[i]), "problem_index": i} for i in order])
    # a response that ends without one of these was truncated (reward 0, as in our trainer); a
    # generation config may name several EOS ids
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = {i for e in (tokenizer.eos_token_id, gen_eos) if e is not None for i in (e if isinstance(e, list) else [e])}
    reward = VerifierReward(train_set, eos, cfg.rollouts_per_prompt)
    args = RewardsAsLabelsGRPOConfig(**_housekeeping(cfg, run_dir, progress), **fields, **(trl_overrides or {}))

    M = cfg.minibatches_per_step
    if main:
        atomic_write_json(run_dir / "config.json", {**cfg.to_dict(), "engine": ENGINE})
        atomic_write_json(
            run_dir / "trl.json",
            {"engine": ENGINE, "num_processes": state.num_processes, "distributed_type": str(state.distributed_type),
             "mapped": fields, "trl_overrides": trl_overrides or {},
             "vllm_mode": vllm_mode if fields["use_vllm"] else None},
        )  # fmt: skip
        import accelerate

        atomic_write_json(run_dir / "versions.json", {**package_versions(), "accelerate": accelerate.__version__})
    metrics = JsonlWriter(run_dir / "metrics.jsonl", 0) if main else None
    pending: dict[int, dict] = {}  # paper step -> the validation made at its start

    class RunFolder(TrainerCallback):
        """Our run folder from TRL's loop: validation, metrics rows, checkpoints, final.json."""

        trainer = None
        step_start = time.perf_counter()

        def _net(self):
            return self.trainer.accelerator.unwrap_model(self.trainer.model)

        def validate(self, step: int) -> dict:
            """Our evaluation of the live policy, on the main process while the others wait."""
            out = {}
            if main and cfg.eval_every > 0:
                times: dict = {}
                out = _evaluate(cfg, self._net(), tokenizer, val_set, step, times, None, per_problem=True)
                out["time/eval"] = times.get("eval", 0.0)
            self.trainer.accelerator.wait_for_everyone()
            return out

        def save(self, done: int) -> None:
            """``ckpt_<done>/`` with ``model/`` and ``state.json``, published by one rename (every process
            takes part in gathering the weights; the main one writes)."""
            final = run_dir / f"ckpt_{done:06d}"
            staging = [str(final.with_name(f"{final.name}.tmp-{os.getpid()}"))]
            broadcast_object_list(staging)  # the main process's name, for every process
            staging = Path(staging[0])
            self.trainer.save_model(str(staging / "model"))
            self.trainer.accelerator.wait_for_everyone()
            if main:
                tokenizer.save_pretrained(staging / "model")
                atomic_write_json(staging / "state.json", {"next_step": done, "engine": ENGINE})
                if final.exists():
                    shutil.rmtree(final)
                os.replace(staging, final)
                keep = cfg.keep_checkpoints
                for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
                    shutil.rmtree(old, ignore_errors=True)
            self.trainer.accelerator.wait_for_everyone()

        def on_train_begin(self, args, state, control, **kwargs):
            if cfg.eval_every > 0:
                pending[0] = self.validate(0)
            self.step_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % M:
                return
            done = state.global_step // M
            if cfg.eval_every > 0 and done % cfg.eval_every == 0 and done < cfg.total_steps:
                pending[done] = self.validate(done)
            if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
                self.save(done)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if "loss" not in logs:  # TRL's end-of-training summary
                return
            keys = ["rows", "correct", "truncated", "groups", "all_correct", "all_wrong"]
            keys += [f"count/{k}" for k in OUTCOMES]
            sums = _summed(self.trainer.accelerator, reward.sums, keys)
            reward.reset()
            step = state.global_step // M - 1
            if not main:
                return
            row = {"step": step, "method": cfg.method, "seed": cfg.seed, "engine": ENGINE}
            row.update(pending.pop(step, {}))
            row.update(batch_metrics(sums, OUTCOMES, 1))
            row.update(map_logs(logs, cfg.method))
            if row.get("groups/one_label_frac") == 1.0:  # no mixed group: no weights (TRL logs 0, ours nothing)
                row = {k: v for k, v in row.items() if not k.startswith("weights/")}
            now = time.perf_counter()
            row["time/step"] = now - self.step_start
            self.step_start = now
            metrics.write(row)

    callback = RunFolder()
    trainer = RewardsAsLabelsGRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    callback.trainer = trainer
    zero3 = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    if cfg.eval_every > 0 and (zero3 or trainer.is_fsdp_enabled):
        raise Unmappable(
            f"eval_every={cfg.eval_every}: our validation generates on the main process alone, which parameters "
            "sharded by DeepSpeed ZeRO-3 or FSDP do not allow; set eval_every=0 and evaluate the checkpoints with "
            "make evaluate, or use multi_gpu / deepspeed_zero2"
        )
    trainer.train()

    final = callback.validate(cfg.total_steps) if cfg.eval_every > 0 else {}
    final.pop("time/eval", None)
    if main:
        summary = {"step": cfg.total_steps, "method": cfg.method, "seed": cfg.seed, "engine": ENGINE, **final}
        atomic_write_json(run_dir / "final.json", summary)
    trainer.accelerator.wait_for_everyone()
    return run_dir


def _fields(problem) -> dict:
    return {"prompt": problem.prompt, "question": problem.question}


def parse_trl_overrides(words: list[str]) -> dict:
    """``--trl KEY=VALUE`` words as GRPOConfig values (YAML scalars).

    >>> parse_trl_overrides(["logging_first_step=true", "save_total_limit=2"])
    {'logging_first_step': True, 'save_total_limit': 2}
    """
    import yaml

    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"--trl expects KEY=VALUE (a GRPOConfig field), got {word!r}")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def describe(cfg: Config, num_processes: int) -> str:
    """The mapped GRPOConfig fields of ``cfg``, one per line (``--dry-run``)."""
    fields = trl_fields(cfg, num_processes)
    return json.dumps(fields, indent=1, sort_keys=True)
