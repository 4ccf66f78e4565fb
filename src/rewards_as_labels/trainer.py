"""One RLVR training loop for REAL, GRAD, GRPO, DAPO and GSPO.

Per step (paper's recipe, CPU-sized by the config):
    1. sample P prompts (deterministic in (seed, step): an epoch-wise permutation of the split)
    2. generate n rollouts per prompt in one batched call (rollout backend)
    3. verify -> binary rewards; group advantages (for the ratio-based methods)
    4. old log-probs (and entropy) of the sampling policy by one forward pass of the
       training model -- the quantity the ratio / score is taken against
    5. M optimiser mini-batches of whole groups over the rollout batch; the first is
       on-policy (s = 0), later ones are off-policy (s != 0), as the paper's 4 mini-batches
    6. metrics line, held-out evaluation every ``eval_every`` steps, checkpoint every
       ``checkpoint_every`` steps

How this departs from the paper's released (verl) code:
    1) no dynamic batch sizes, sequence packing or multi-GPU sharding: one process, one device;
    2) DAPO without dynamic sampling or overlong shaping (clip-higher + token mean only);
    3) REAL/GRAD take no KL and no entropy bonus (as the paper); GRPO's KL (k3, coefficient
       0.001) is to the frozen warm-started policy;
    4) seeds derive from (seed, step) so that a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import objectives as O
from .checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from .config import Config
from .evaluation import evaluate_policy
from .io import JsonlWriter, atomic_write_json, ensure_writable_dir, package_versions
from .methods import MiniBatch, policy_loss, weight_diagnostics
from .modeling import format_prompt, load_policy
from .rollout import make_backend, response_logprobs
from .data import load_split
from .verifier import asks_for_box, score_completions


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient; the last good checkpoint is left in place."""


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from (seed, step, ...) -- stable across runs and resumes."""
    ss = np.random.SeedSequence([p if isinstance(p, int) else sum(map(ord, p)) for p in parts])
    return int(ss.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def prompt_indices(seed: int, step: int, per_step: int, n_items: int) -> np.ndarray:
    """Indices of the prompts of ``step``: consecutive slices of per-epoch permutations.

    The data position is ``step * per_step``, so resuming needs only the step.
    """
    start = step * per_step
    out = []
    while len(out) < per_step:
        epoch, offset = divmod(start + len(out), n_items)
        perm = np.random.default_rng([seed, epoch]).permutation(n_items)
        out.extend(perm[offset : offset + per_step - len(out)].tolist())
    return np.asarray(out)


@contextmanager
def _timed(times: dict, key: str):
    t0 = time.perf_counter()
    yield
    times[key] = times.get(key, 0.0) + time.perf_counter() - t0


def _chunks(rows: int, micro: int) -> list[slice]:
    micro = micro if 0 < micro < rows else rows
    return [slice(i, min(i + micro, rows)) for i in range(0, rows, micro)]


@torch.no_grad()
def logprobs_no_grad(model, batch, cfg: Config, with_entropy: bool = False):
    """Response log-probs (and entropy) of ``batch`` in micro-batches of ``cfg.micro_batch_size`` rows."""
    parts = [response_logprobs(model, batch.select(c), cfg.temperature, with_entropy=with_entropy)
             for c in _chunks(batch.batch_size, cfg.micro_batch_size)]
    if with_entropy:
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])  # [B, T] each
    return torch.cat(parts)  # [B, T]


def backward_in_micro_batches(model, batch, cfg: Config, loss_fn, logprobs=None):
    """Accumulate the gradient of ``loss_fn(logprobs)`` over micro-batches of ``cfg.micro_batch_size`` rows.

    Exact for every method, group coupling included: the loss is built once on the log-probs
    of the whole mini-batch (a forward pass without a graph), its gradient with respect to
    those log-probs is taken, and each micro-batch's forward pass is then back-propagated
    with its slice of that gradient (chain rule). Costs one extra forward pass; micro-batches
    need not hold whole groups. ``micro_batch_size = 0`` means one pass over the mini-batch.
    Returns ``loss_fn``'s outputs (the loss detached). ``logprobs``: this batch's log-probs
    from a forward pass with its graph kept (one pass only), instead of a new forward.
    """
    chunks = _chunks(batch.batch_size, cfg.micro_batch_size)
    if len(chunks) == 1:
        out = loss_fn(logprobs if logprobs is not None else response_logprobs(model, batch, cfg.temperature))  # [b, T] -> loss, ...
        out[0].backward()
        return (out[0].detach(), *out[1:])
    leaf = logprobs_no_grad(model, batch, cfg).requires_grad_()  # [b, T]
    out = loss_fn(leaf)
    (d_logprobs,) = torch.autograd.grad(out[0], leaf)  # [b, T]
    for c in chunks:
        response_logprobs(model, batch.select(c), cfg.temperature).backward(d_logprobs[c])
    return (out[0].detach(), *out[1:])


def _check_finite(value: torch.Tensor, what: str, step: int, cfg: Config) -> None:
    if not torch.isfinite(value).all():
        raise TrainingDiverged(
            f"non-finite {what} at step {step} (method {cfg.method}); the run stopped before this "
            f"update, and its last good checkpoint, {latest_checkpoint(cfg.run_dir) or 'none yet'}, is intact"
        )


def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) RL training as configured; returns the run folder."""
    torch.set_num_threads(cfg.num_threads)
    run_dir = cfg.run_dir
    ensure_writable_dir(run_dir, "run folder", "choose another --out")

    ckpt = latest_checkpoint(run_dir) if resume else None
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    model, tokenizer = load_policy(cfg, path=ckpt / "model" if ckpt else None, training=True)
    model.train()
    ref_model = None
    if cfg.resolved_kl_coef > 0:
        ref_model, _ = load_policy(cfg)  # the frozen initial policy, also on resume
        ref_model.eval().requires_grad_(False)

    optimizer = torch.optim.AdamW(  # fused: one kernel for all tensors (TRL's default too); 3x faster on the tiny model
        model.parameters(), lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay,
        fused=model.device.type in ("cpu", "cuda"),
    )
    warmup = max(cfg.lr_warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) if warmup else 1.0)
    start_step = load_trainer_state(ckpt, optimizer, scheduler) if ckpt else 0

    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    atomic_write_json(run_dir / "versions.json", package_versions())
    train_set = load_split(cfg, "train")
    val_set = load_split(cfg, "validation")[: cfg.eval_prompts]
    # every prompt the backend will sample: vLLM sizes its engine's context from the longest
    backend = make_backend(cfg, model, tokenizer, prompts=[format_prompt(tokenizer, p, cfg) for p in train_set + val_set])
    metrics = JsonlWriter(run_dir / "metrics.jsonl", start_step)
    weight_samples = JsonlWriter(run_dir / "weight_samples.jsonl", start_step)

    P, n, M = cfg.prompts_per_step, cfg.rollouts_per_prompt, cfg.minibatches_per_step
    # one mini-batch in one pass is on-policy: pi_old is the update's own forward (s = 0 in value, TRL's
    # default too), so that forward runs once, in the old_logprobs phase, and keeps its graph for the update
    on_policy = M == 1 and len(_chunks(P * n, cfg.micro_batch_size)) == 1
    bar = tqdm(range(start_step, cfg.total_steps), initial=start_step, total=cfg.total_steps,
               desc=f"{cfg.method} s{cfg.seed}", disable=not progress, dynamic_ncols=True)
    for step in bar:
        times: dict[str, float] = {}
        row: dict = {"step": step, "method": cfg.method, "seed": cfg.seed}
        eval_now = cfg.eval_every > 0 and step % cfg.eval_every == 0
        if eval_now:
            row.update(_evaluate(cfg, model, tokenizer, val_set, step, times, backend))

        problems = [train_set[i] for i in prompt_indices(cfg.seed, step, P, len(train_set))]
        with _timed(times, "generate"):
            batch = backend.generate(
                [format_prompt(tokenizer, p, cfg) for p in problems], n, temperature=cfg.temperature,
                max_new_tokens=cfg.max_new_tokens, top_k=cfg.top_k, top_p=cfg.top_p, seed=derive_seed(cfg.seed, step),
            )
        with _timed(times, "verify"):
            golds = [p.answer for p in problems for _ in range(n)]
            boxed = {"require_boxed": True} if asks_for_box(problems) else {}  # hub maths: only \boxed{} counts
            rewards, counts = score_completions(batch.texts, golds, batch.truncated.tolist(), **boxed)
            rewards = rewards.view(P, n)  # [P, n]
            advantages = O.group_advantages(rewards).flatten()  # [P*n]
        with _timed(times, "old_logprobs"):
            fresh = None  # on-policy: the forward with grad that the update reuses
            if on_policy:
                fresh, entropy = response_logprobs(model, batch, cfg.temperature, with_entropy=True)  # [B, T] each
                old_lp = fresh.detach()
            else:
                old_lp, entropy = logprobs_no_grad(model, batch, cfg, with_entropy=True)  # [B, T] each
            ref_lp = logprobs_no_grad(ref_model, batch, cfg) if ref_model is not None else None  # [B, T]

        mask = batch.response_mask  # [B, T]
        labels = rewards.bool()
        row.update(_batch_metrics(labels, mask, entropy, batch, counts))
        if batch.sampling_logprobs is not None:  # sampler vs trainer: a missed weight sync shows here
            row["rollout/logprob_max_abs_diff"] = (batch.sampling_logprobs - old_lp).abs().max().item()  # both 0 off-mask

        per_mb = P // M
        sums: dict[str, list[float]] = {}
        with _timed(times, "update"):
            for m in range(M):
                rows = slice(m * per_mb * n, (m + 1) * per_mb * n)
                stats, samples = _minibatch_update(
                    cfg, step, model, optimizer, scheduler, batch.select(rows),
                    old_lp[rows], rewards[m * per_mb : (m + 1) * per_mb], advantages[rows],
                    ref_lp[rows] if ref_lp is not None else None, fresh,
                )
                for k, v in stats.items():
                    sums.setdefault(k, []).append(v)
        with _timed(times, "sync"):
            backend.sync_weights(model)  # a no-op for HF; vLLM reloads the weights in place
        if hasattr(backend, "last_sync_max_abs_diff"):  # vLLM: the synced weights read back (0 = landed)
            row["rollout/sync_max_abs_diff"] = backend.last_sync_max_abs_diff
        for k, v in sums.items():
            row[k] = max(v) if k.endswith("_max") else float(np.mean(v))
        row["train/lr"] = scheduler.get_last_lr()[0]
        row.update({f"time/{k}": v for k, v in times.items()})
        row["time/generate_tokens_per_s"] = float(mask.sum()) / max(times["generate"], 1e-9)
        metrics.write(row)
        if eval_now:  # last (most off-policy) mini-batch of the step
            weight_samples.write({"step": step, "method": cfg.method, **samples})
        bar.set_postfix(reward=f"{row['reward/mean']:.3f}", **({"val": f"{row['eval/pass@1']:.3f}"} if "eval/pass@1" in row else {}))

        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
            save_checkpoint(run_dir, done, model, tokenizer, optimizer, scheduler, cfg.keep_checkpoints)

    final = _evaluate(cfg, model, tokenizer, val_set, cfg.total_steps, {}, backend) if cfg.eval_every > 0 else {}
    summary = {"step": cfg.total_steps, "method": cfg.method, "seed": cfg.seed, **final}
    atomic_write_json(run_dir / "final.json", summary)
    return run_dir


def _minibatch_update(cfg, step, model, optimizer, scheduler, sub, old_lp, rewards, advantages, ref_lp, logprobs):
    """One optimiser step on a mini-batch of whole groups; returns (metrics, weight samples).

    ``logprobs``: the on-policy forward pass already made (graph kept), or None for a new one.
    """
    kl_coef = cfg.resolved_kl_coef

    def loss_fn(lp):  # [b, T] -> loss, cut, kl, mini-batch
        mb = MiniBatch(lp, old_lp, sub.response_mask, rewards, advantages)
        loss, cut = policy_loss(cfg, mb)
        kl = O.kl_penalty(lp, ref_lp, sub.response_mask) if ref_lp is not None else None
        if kl is not None:
            loss = loss + kl_coef * kl
        _check_finite(loss.detach(), "loss", step, cfg)
        return loss, cut, kl, mb

    optimizer.zero_grad(set_to_none=True)
    loss, cut, kl, mb = backward_in_micro_batches(model, sub, cfg, loss_fn, logprobs)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    _check_finite(grad_norm, "gradient norm", step, cfg)
    optimizer.step()
    scheduler.step()
    stats = {"train/loss": loss.item(), "train/grad_norm": grad_norm.item()}
    if kl is not None:
        stats["train/kl"] = kl.item()
    if cut is not None:
        stats["train/clip_fraction"] = cut.float().mean().item()
    weights, samples = weight_diagnostics(cfg, mb)
    return {**stats, **weights}, samples


def _evaluate(cfg, model, tokenizer, problems, step, times, backend=None) -> dict:
    with _timed(times, "eval"):
        model.eval()
        res = evaluate_policy(
            model, tokenizer, problems, samples=cfg.eval_samples, temperature=cfg.eval_temperature,
            max_new_tokens=cfg.max_new_tokens, seed=derive_seed(cfg.seed, "eval", step), cfg=cfg, backend=backend,
        )
        model.train()
    return {f"eval/{k}": v for k, v in res.items() if isinstance(v, (int, float))}


def _batch_metrics(labels, mask, entropy, batch, counts) -> dict:
    G = labels.shape[0]
    all_correct = labels.all(-1)
    all_wrong = (~labels).all(-1)
    lengths = mask.sum(-1).float()  # [B]
    row = {
        "reward/mean": labels.float().mean().item(),
        "groups/one_label_frac": (all_correct | all_wrong).float().mean().item(),
        "groups/all_correct_frac": all_correct.float().mean().item(),
        "groups/all_wrong_frac": all_wrong.float().mean().item(),
        "policy/entropy": (entropy[mask].mean().item()),
        "response/length_mean": lengths.mean().item(),
        "response/truncated_frac": batch.truncated.float().mean().item(),
    }
    total = max(sum(counts.values()), 1)
    row.update({f"verify/{k}_frac": v / total for k, v in counts.items()})
    row["groups/count"] = G
    return row
