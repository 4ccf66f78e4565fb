"""``make bench-trl``: our trainer against TRL's ``GRPOTrainer`` on the identical tiny setup.

    python -m rewards_as_labels.tools.bench_trl [--profile tiny] [--steps 20] [--rounds 3] [--threads 1]

Both sides get, from one temporary folder:
    * the same weights and tokenizer: the profile's warm-started model if it exists, else a freshly
      built tiny Qwen2 (``modeling.build_tiny_model``), saved once and loaded by both;
    * the same prompts in the same order: the ones our trainer draws at steps 0..N-1
      (``trainer.prompt_indices``), handed to TRL as an unshuffled data set (``shuffle_dataset=False``);
    * the same step: P prompts x n rollouts, ``max_new_tokens`` tokens, temperature 1, top_k 0,
      top_p 1, KL off (TRL ``beta=0``, our ``kl_coef=0``), the same AdamW settings, one optimiser
      step per generation batch (TRL's default; our ``minibatches_per_step=1``), the same
      verifier (ours, as TRL's reward function), GRPO's loss (TRL ``loss_type="grpo"``, ours
      ``method=grpo``; ``--method real`` times REAL instead), the same torch thread count.

Each round runs TRL then ours (A B A B ...), each in a fresh subprocess, so machine load hits
both alike and each peak RSS is that process's own (``getrusage(RUSAGE_SELF).ru_maxrss``).
A step's time is the wall time between consecutive step ends (TRL: ``on_step_end``; ours: the
metrics line), so it holds everything either trainer does per step, logging included; the
first step of each process (warm-up) has no predecessor and is not counted. The process CPU
time over the same interval is printed too: on a shared machine it moves far less with other
processes' load than wall time does. The last line is ``ours/trl step-time ratio: <float>``
(median wall step time over all counted steps, ours / TRL).

Where the time goes: after the timed run, each "ours" process also times the bare model work
(:func:`model_work_floor`: ``generate``, one forward with grad, its backward, clipping, one
fused AdamW step -- what any trainer built on these transformers modules does per step) and
prints it as a fraction of TRL's step and of ours. At 2 x 8 x 8 tokens that work is most of
either step, and it lies inside transformers and torch (module calls, attention, matrix
products), which both trainers share; it bounds the ratio from below: ours/TRL cannot fall
under floor/TRL without changing the model calls themselves (``torch.compile(model,
dynamic=True)`` cut a forward+backward here by only ~20%, after a 27 s compile).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..io import read_jsonl

OUR_PHASES = ("generate", "verify", "old_logprobs", "update")


# ----------------------------------------------------------------------------- shared setup
def _bench_config(args, folder: Path):
    from ..config import load_config

    overrides = {
        "data_dir": str(folder / "data"), "model": str(folder / "model"), "method": args.method,
        "seed": 0, "total_steps": args.steps, "prompts_per_step": args.prompts, "rollouts_per_prompt": args.rollouts,
        "minibatches_per_step": 1, "max_new_tokens": args.tokens, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
        "kl_coef": 0.0, "learning_rate": 3e-4, "lr_warmup_steps": 0, "micro_batch_size": 0,
        "eval_every": 0, "checkpoint_every": 10**9, "num_threads": args.threads,
        # small splits: the bench needs P * steps training prompts, not the profile's 40k SFT set
        "n_sft": 64, "n_train": max(512, args.prompts * args.steps), "n_validation": 16, "n_test": 16,
    }  # fmt: skip
    return load_config(profile=args.profile, overrides=overrides)


def prepare(args, folder: Path) -> None:
    """Write the data, the model both trainers load, and TRL's prompt list into ``folder``."""
    import torch

    from ..arithmetic import write_splits
    from ..config import load_config
    from ..data import load_split
    from ..modeling import build_tiny_model, build_tokenizer, load_policy
    from ..trainer import prompt_indices

    cfg = _bench_config(args, folder)
    write_splits(cfg)
    base = load_config(profile=args.profile)
    if (base.warmstart_dir / "model" / "config.json").is_file():
        model, tokenizer = load_policy(base)
        source = f"warm start {base.warmstart_dir / 'model'}"
    else:
        torch.manual_seed(0)
        tokenizer = build_tokenizer()
        model = build_tiny_model(base, tokenizer)
        source = "freshly built tiny Qwen2 (no warm start found)"
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    train = load_split(cfg, "train")
    rows = [
        train[i] for s in range(cfg.total_steps) for i in prompt_indices(cfg.seed, s, cfg.prompts_per_step, len(train))
    ]
    (folder / "prompts.json").write_text(json.dumps([{"prompt": p.prompt, "answer": p.answer} for p in rows]))
    params = sum(p.numel() for p in model.parameters())
    (folder / "model_info.txt").write_text(f"{source}, {params:,} parameters")


# ----------------------------------------------------------------------------- workers
def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(args, folder: Path, out: Path, t0: float) -> dict:
    from .. import trainer as trainer_mod

    ends: list[float] = []
    cpu: list[float] = []

    class TimedWriter(trainer_mod.JsonlWriter):  # step end = its metrics line
        def write(self, row):
            super().write(row)
            if self.path.name == "metrics.jsonl":
                ends.append(time.perf_counter())
                cpu.append(time.process_time())

    trainer_mod.JsonlWriter = TimedWriter
    cfg = _bench_config(args, folder)
    cfg.out = str(out)
    run_dir = trainer_mod.train(cfg, progress=False)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return {
        "step_s": np.diff(ends).tolist(),
        "cpu_s": np.diff(cpu).tolist(),
        "phases": {p: [r[f"time/{p}"] for r in rows[1:]] for p in OUR_PHASES},
        "metrics": sorted(set().union(*rows)),
        "to_first_step_s": ends[0] - t0,
        "peak_rss_mib": _peak_rss_mib(),
        "floor_s": model_work_floor(cfg),
    }


def model_work_floor(cfg) -> list[float]:
    """Seconds per step of the model work any GRPO-style trainer must do with these transformers
    modules, and nothing else: ``generate`` the batch, one forward with grad over prompt+response,
    its backward, gradient clipping and one fused AdamW step (no rewards, advantages, loss terms,
    metrics or logging). Same prompts, sampling and threads as the timed run; the first step is
    warm-up. A trainer making these same calls cannot step faster, so floor/TRL bounds the ratio."""
    import torch

    from ..backends import make_backend
    from ..config import derive_seed
    from ..data import load_split
    from ..modeling import format_prompt, load_policy
    from ..rollout import response_logprobs
    from ..trainer import prompt_indices

    model, tokenizer = load_policy(cfg, training=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, fused=True)
    backend = make_backend(cfg, model, tokenizer)
    train = load_split(cfg, "train")
    ends = []
    for step in range(cfg.total_steps):
        prompts = [format_prompt(tokenizer, train[i], cfg)
                   for i in prompt_indices(cfg.seed, step, cfg.prompts_per_step, len(train))]  # fmt: skip
        batch = backend.generate(prompts, cfg.rollouts_per_prompt, temperature=cfg.temperature,
                                 max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k, top_p=cfg.top_p,
                                 seed=derive_seed(cfg.seed, step))  # fmt: skip
        response_logprobs(model, batch, cfg.temperature).sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return np.diff(ends).tolist()


def run_trl(args, folder: Path, out: Path, t0: float) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from ..verifier import score_completions

    torch.set_num_threads(args.threads)
    cfg = _bench_config(args, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=torch.float32)
    dataset = Dataset.from_list(json.loads((folder / "prompts.json").read_text()))

    def reward(completions, answer, **_):  # our verifier, one float per completion
        return score_completions(list(completions), list(answer))[0].tolist()

    ends: list[float] = []
    cpu: list[float] = []
    phase: dict[str, list[float]] = {"generate_score": []}

    class StepEnds(TrainerCallback):
        def on_step_end(self, *_, **__):
            ends.append(time.perf_counter())
            cpu.append(time.process_time())

    trl_args = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
        disable_tqdm=True, seed=cfg.seed, max_steps=cfg.total_steps, shuffle_dataset=False,
        num_generations=cfg.rollouts_per_prompt,
        per_device_train_batch_size=cfg.prompts_per_step * cfg.rollouts_per_prompt,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
        beta=0.0, loss_type="grpo" if cfg.method == "grpo" else "dapo", epsilon=cfg.clip_eps,
        learning_rate=cfg.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=trl_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepEnds()],
    )
    inner = trainer._generate_and_score_completions

    def timed(*a, **k):
        s = time.perf_counter()
        result = inner(*a, **k)
        phase["generate_score"].append(time.perf_counter() - s)
        return result

    trainer._generate_and_score_completions = timed
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "step_s": np.diff(ends).tolist(),
        "cpu_s": np.diff(cpu).tolist(),
        "phases": {"generate_score": phase["generate_score"][1:]},
        "metrics": sorted(set().union(*logged)),
        "to_first_step_s": ends[0] - t0,
        "peak_rss_mib": _peak_rss_mib(),
    }


# ----------------------------------------------------------------------------- driver
def _worker(args) -> None:
    t0 = time.perf_counter()
    folder = Path(args.folder)
    out = folder / f"{args.worker}-{args.round}"
    result = (run_ours if args.worker == "ours" else run_trl)(args, folder, out, t0)
    (folder / f"{args.worker}-{args.round}.json").write_text(json.dumps(result))


def _launch(args, folder: Path, who: str, r: int) -> dict:
    cmd = [sys.executable, "-m", "rewards_as_labels.tools.bench_trl", "--worker", who, "--round", str(r),
           "--folder", str(folder), "--profile", args.profile, "--steps", str(args.steps),
           "--prompts", str(args.prompts), "--rollouts", str(args.rollouts), "--tokens", str(args.tokens),
           "--threads", str(args.threads), "--method", args.method]  # fmt: skip
    # the same thread settings for both; TRL/accelerate read no other knob on CPU
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench-trl: the {who} worker of round {r} failed (exit {proc.returncode}); output above")
    result = json.loads((folder / f"{who}-{r}.json").read_text())
    result["process_s"] = time.perf_counter() - t
    return result


def main(argv: list[str] | None = None) -> float | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="tiny", help="model size and warm start from this profile")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per process (first is warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="A B rounds, each in fresh subprocesses")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--tokens", type=int, default=8, help="max new tokens per rollout")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--method", default="grpo", choices=("grpo", "real"), help="our method (TRL runs its GRPO loss either way)"
    )
    p.add_argument("--worker", choices=("ours", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return None
    if args.steps < 3:
        p.error("--steps must be >= 3 (the first step is warm-up, and times are gaps between steps)")

    results: dict[str, list[dict]] = {"trl": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="ral-bench-trl-") as tmp:
        folder = Path(tmp)
        prepare(args, folder)
        info = (folder / "model_info.txt").read_text()
        for r in range(args.rounds):
            for who in ("trl", "ours"):
                results[who].append(_launch(args, folder, who, r))
                print(
                    f"round {r + 1}/{args.rounds} {who:<4}: median step {np.median(results[who][-1]['step_s']):.4f} s",
                    flush=True,
                )
    print(
        f"\nmodel: {info}; {args.prompts} prompts x {args.rollouts} rollouts x {args.tokens} tokens, "
        f"{args.threads} thread(s), KL off, one optimiser step per generation batch; ours: method={args.method}, "
        f"TRL: GRPOTrainer loss_type={'grpo' if args.method == 'grpo' else 'dapo'}"
    )
    print(f"{args.rounds} rounds x {args.steps - 1} timed steps per trainer, interleaved TRL/ours in fresh processes\n")
    header = (
        f"{'trainer':<8}{'wall med':>10}{'p10':>9}{'p90':>9}{'CPU med':>9}"
        f"{'to 1st step':>13}{'process':>9}{'peak RSS':>10}"
    )
    print(header + "   phase medians, wall (s)")
    wall, cpu = {}, {}
    for who in ("trl", "ours"):
        steps = np.concatenate([x["step_s"] for x in results[who]])
        wall[who] = float(np.median(steps))
        cpu[who] = float(np.median(np.concatenate([x["cpu_s"] for x in results[who]])))
        phases = {k: float(np.median(np.concatenate([x["phases"][k] for x in results[who]])))
                  for k in results[who][0]["phases"]}  # fmt: skip
        print(
            f"{who:<8}{wall[who]:>10.4f}{np.percentile(steps, 10):>9.4f}{np.percentile(steps, 90):>9.4f}"
            f"{cpu[who]:>9.4f}"
            f"{np.median([x['to_first_step_s'] for x in results[who]]):>12.1f}s"
            f"{np.median([x['process_s'] for x in results[who]]):>8.1f}s"
            f"{max(x['peak_rss_mib'] for x in results[who]):>6.0f} MiB   "
            + ", ".join(f"{k} {v:.4f}" for k, v in phases.items())
        )
    print(
        f"\nmetrics logged per run: ours {len(results['ours'][0]['metrics'])} keys, "
        f"TRL {len(results['trl'][0]['metrics'])} keys"
    )
    print(
        f"load average during the bench: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(CPU-time ratio, less sensitive to other processes: "
        f"{cpu['ours'] / cpu['trl']:.3f})"
    )
    floor = float(np.median(np.concatenate([x["floor_s"] for x in results["ours"]])))
    print(
        f"model-work floor (generate + forward + backward + clip + AdamW, in the ours processes): "
        f"{floor:.4f} s/step = {floor / wall['trl']:.3f} of TRL's step, {floor / wall['ours']:.3f} of ours; "
        "a trainer making these same model calls cannot get its ratio below floor/trl"
    )
    ratio = wall["ours"] / wall["trl"]
    print(f"ours/trl step-time ratio: {ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
