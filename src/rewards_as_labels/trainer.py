"""One RLVR training loop for REAL, GRAD, GRPO, DAPO and GSPO.

Per step (paper's recipe, CPU-sized by the config):
    1. sample P prompts (deterministic in (seed, step): an epoch-wise permutation of the split)
    2. generate n rollouts per prompt in one batched call (rollout backend)
    3. verify -> binary rewards; group advantages (for the ratio-based methods)
    4. old log-probs (and entropy) of the sampling policy by one forward pass of the
       training model -- the quantity the ratio / score is taken against; the first mini-batch's
       rows, when it is one pass, by the forward with graph that its update then reuses
    5. ``for mb in minibatches(rollouts, cfg): update(model, optimizer, scheduler, mb, cfg, step)``:
       M optimiser mini-batches of whole groups; the first is on-policy (s = 0), later ones are
       off-policy (s != 0), as the paper's 4 mini-batches
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

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import objectives as O
from .backends import make_backend
from .checkpoint import checkpoint_state, latest_checkpoint, load_trainer_state, save_checkpoint
from .config import Config, derive_seed
from .data import load_split
from .evaluation import evaluate_policy
from .io import JsonlWriter, atomic_write_json, ensure_writable_dir, package_versions
from .methods import (
    OFFPOLICY_KEYS,
    WEIGHT_FORMULAS,
    MiniBatch,
    clip_fraction,
    offpolicy_stats,
    policy_loss,
    weight_samples,
    weight_stats,
)
from .modeling import format_prompt, load_policy
from .progress import progress_bar
from .rollout import RolloutBatch, response_logprobs
from .verifier import asks_for_box, score_completions


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient; the last good checkpoint is left in place."""


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


# ----------------------------------------------------------------------------- batches
@dataclass
class Rollouts:
    """One step's rollouts and what the losses take from them, prompt-major (B = P * n rows)."""

    batch: RolloutBatch  # tokens and masks, [B, ...]
    rewards: torch.Tensor  # [P, n] binary labels
    advantages: torch.Tensor  # [B] GRPO advantages
    old_logprobs: torch.Tensor  # [B, T] under the sampling policy
    ref_logprobs: torch.Tensor | None  # [B, T] under the frozen reference (KL), or None

    def groups(self, g: slice) -> Rollouts:
        """The rollouts of groups ``g.start .. g.stop - 1``."""
        rows = slice(g.start * self.batch.n, g.stop * self.batch.n)
        ref = self.ref_logprobs[rows] if self.ref_logprobs is not None else None
        return Rollouts(self.batch.select(rows), self.rewards[g], self.advantages[rows], self.old_logprobs[rows], ref)


def minibatches(rollouts: Rollouts, cfg: Config) -> Iterator[Rollouts]:
    """The step's ``minibatches_per_step`` optimiser mini-batches of whole groups, in order."""
    per = cfg.prompts_per_step // cfg.minibatches_per_step
    for start in range(0, cfg.prompts_per_step, per):
        yield rollouts.groups(slice(start, start + per))


def micro_batches(rows: int, micro: int) -> list[slice]:
    """Row slices of ``micro`` rows covering ``rows`` (one slice when ``micro`` is 0 or >= rows).

    >>> micro_batches(8, 3), micro_batches(8, 0)
    ([slice(0, 3, None), slice(3, 6, None), slice(6, 8, None)], [slice(0, 8, None)])
    """
    micro = micro if 0 < micro < rows else rows
    return [slice(i, min(i + micro, rows)) for i in range(0, rows, micro)]


@torch.no_grad()
def logprobs_no_grad(model, batch, cfg: Config, with_entropy: bool = False):
    """Response log-probs (and entropy) of ``batch`` in micro-batches of ``cfg.micro_batch_size`` rows."""
    parts = [
        response_logprobs(model, batch.select(c), cfg.temperature, with_entropy=with_entropy)
        for c in micro_batches(batch.batch_size, cfg.micro_batch_size)
    ]
    if with_entropy:
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])  # [B, T] each
    return torch.cat(parts)  # [B, T]


# ----------------------------------------------------------------------------- old log-probs
class OldLogprobs(NamedTuple):
    """The sampling policy's view of one step's rollouts (:func:`old_logprobs`)."""

    logprobs: torch.Tensor  # [B, T] pi_old, detached
    entropy: torch.Tensor  # [B, T] detached
    first_forward: torch.Tensor | None  # [b, T] the first mini-batch's rows with their graph, or None


def old_logprobs(model, batch: RolloutBatch, cfg: Config) -> OldLogprobs:
    """Log-probs and entropy of the step's rollouts under the sampling policy (the current weights).

    The step's first mini-batch is on-policy: pi_old is its update's own forward (s = 0 in value, TRL's
    default too). When that mini-batch is one pass (one micro-batch), its rows' forward runs once, here,
    and keeps its graph for the update (``first_forward``); only the later mini-batches' rows get a
    forward without graph (row by row the same numbers: a row's log-probs do not depend on its batch).
    Otherwise every row gets a forward without graph and ``first_forward`` is None.
    """
    first_rows = cfg.prompts_per_step // cfg.minibatches_per_step * cfg.rollouts_per_prompt
    if len(micro_batches(first_rows, cfg.micro_batch_size)) > 1:
        return OldLogprobs(*logprobs_no_grad(model, batch, cfg, with_entropy=True), first_forward=None)  # [B, T] each
    first, rest = slice(0, first_rows), slice(first_rows, batch.batch_size)
    fresh, entropy = response_logprobs(model, batch.select(first), cfg.temperature, with_entropy=True)  # [b, T] each
    logprobs, entropy = fresh.detach(), entropy.detach()  # [b, T] each
    if first_rows < batch.batch_size:  # the later mini-batches' rows
        rest_lp, rest_entropy = logprobs_no_grad(model, batch.select(rest), cfg, with_entropy=True)  # [B - b, T] each
        logprobs, entropy = torch.cat([logprobs, rest_lp]), torch.cat([entropy, rest_entropy])  # [B, T] each
    return OldLogprobs(logprobs, entropy, first_forward=fresh)


# ----------------------------------------------------------------------------- one optimiser step
class LossTerms(NamedTuple):
    """What one evaluation of a mini-batch's loss gives (the ``loss_fn`` of :func:`update`)."""

    loss: torch.Tensor  # scalar, the method's loss plus its KL term
    cut: torch.Tensor | None  # the clip mask of the ratio-based methods, else None
    kl: torch.Tensor | None  # scalar KL to the reference, or None without one
    inputs: MiniBatch  # what the loss saw


class UpdateResult(NamedTuple):
    """One optimiser step's statistics, and what its loss saw (for :func:`~.methods.weight_samples`)."""

    stats: dict[str, float]
    inputs: MiniBatch  # log-probs detached
    cut: torch.Tensor | None


def backward_in_micro_batches(
    model,
    mb: Rollouts,
    cfg: Config,
    loss_fn: Callable[[torch.Tensor], LossTerms],
    *,
    logprobs=None,
    detached_logprobs=None,
) -> LossTerms:
    """Accumulate the gradient of ``loss_fn(log-probs of mb)`` over micro-batches of
    ``cfg.micro_batch_size`` rows; returns ``loss_fn``'s terms of the whole mini-batch (loss detached).

    Each of the three ways gives the one-pass gradient (tests/test_micro_batches.py checks each in
    float64): one pass (:func:`_backward_one_pass`), micro-batches of whole groups
    (:func:`_backward_whole_groups`), micro-batches that split a group (:func:`_backward_split_groups`).
    ``logprobs``: the mini-batch's forward with graph when the caller made it already (one pass only);
    ``detached_logprobs``: its log-probs under the current weights when the caller knows them (split groups).
    """
    chunks = micro_batches(mb.batch.batch_size, cfg.micro_batch_size)
    if len(chunks) == 1:
        out = _backward_one_pass(model, mb, cfg, loss_fn, logprobs)
    elif cfg.micro_batch_size % mb.batch.n == 0:
        out = _backward_whole_groups(model, mb, cfg, loss_fn, chunks)
    else:
        out = _backward_split_groups(model, mb, cfg, loss_fn, chunks, detached_logprobs)
    return out._replace(loss=out.loss.detach())


def _backward_one_pass(model, mb: Rollouts, cfg: Config, loss_fn, logprobs) -> LossTerms:
    """One forward with its graph (``logprobs`` when the caller made it already), one backward."""
    out = loss_fn(logprobs if logprobs is not None else response_logprobs(model, mb.batch, cfg.temperature))  # [b, T]
    out.loss.backward()
    return out


def _backward_whole_groups(model, mb: Rollouts, cfg: Config, loss_fn, chunks: list[slice]) -> LossTerms:
    """Micro-batches of whole groups. Every loss here is a sum of per-group, per-rollout or per-token
    terms over a normaliser that the mini-batch's labels and mask fix (G groups, mixed-group rollouts,
    B rollouts, tokens), so the gradient a row gets does not depend on the other groups' log-probs. Each
    pass evaluates the *mini-batch's* loss with its own rows from the graph and the other rows held
    constant (rows not yet passed hold the old log-probs as stand-ins): gradient accumulation with the
    mini-batch's normaliser, with no extra forward. The last pass sees every row's own log-probs, so its
    terms are the mini-batch's."""
    seen = mb.old_logprobs  # [b, T]; stand-ins until a row's own pass
    for c in chunks:
        live = response_logprobs(model, mb.batch.select(c), cfg.temperature)  # [c, T], graph kept
        out = loss_fn(torch.cat([seen[: c.start], live, seen[c.stop :]]))  # [b, T] -> loss of the mini-batch
        out.loss.backward()  # reaches only this micro-batch's rows
        seen = torch.cat([seen[: c.start], live.detach(), seen[c.stop :]])
    return out


def _backward_split_groups(model, mb: Rollouts, cfg: Config, loss_fn, chunks: list[slice], known=None) -> LossTerms:
    """Micro-batches that split a group. REAL couples each rollout to the rest of its group (C+-, eq. 5),
    so dL/dlogp needs all of the mini-batch's log-probs first. They come from ``known`` when the caller
    has them (the step's first mini-batch: no update yet, so they are its old log-probs) or from a
    forward without graph; the loss's gradient with respect to them is taken once, and each
    micro-batch's forward is back-propagated with its slice of it (chain rule)."""
    known = known if known is not None else logprobs_no_grad(model, mb.batch, cfg)  # [b, T]
    leaf = known.detach().requires_grad_()  # [b, T]
    out = loss_fn(leaf)
    (d_logprobs,) = torch.autograd.grad(out.loss, leaf)  # [b, T]
    for c in chunks:
        response_logprobs(model, mb.batch.select(c), cfg.temperature).backward(d_logprobs[c])
    return out


def _stop_if_diverged(value: torch.Tensor, what: str, step: int, cfg: Config) -> None:
    """Raise :class:`TrainingDiverged` before the optimiser step when ``value`` (loss, gradient norm) is not finite."""
    if not torch.isfinite(value).all():
        raise TrainingDiverged(
            f"non-finite {what} at step {step} (method {cfg.method}); the run stopped before this "
            f"update, and its last good checkpoint, {latest_checkpoint(cfg.run_dir) or 'none yet'}, is intact"
        )


class GradClip:
    """The gradient-norm clip of ``cfg.grad_clip`` (see :class:`~.config.Config`), applied in place.

    ``fixed``: the release's clip at ``max_grad_norm``. ``off``: never. ``relative``: the run's first
    ``grad_clip_window`` updates go unclipped, and their median pre-clip norm times ``grad_clip_relative``
    is the threshold from then on, so the clip binds on each method's own outliers, not on its scale
    (REAL's loss divides by groups and GRPO's by rollouts, so their norms differ ~4x at one lr).
    ``norms`` (the calibration window) is checkpoint state: a resumed run keeps its threshold.

    >>> clip = GradClip(Config(grad_clip="relative", grad_clip_window=2, grad_clip_relative=2.0))
    >>> clip.threshold, clip.record(3.0), clip.record(5.0), clip.threshold
    (inf, None, None, 8.0)
    """

    def __init__(self, cfg: Config, norms: list[float] | None = None):
        self.cfg = cfg
        self.norms = list(norms or [])

    @property
    def threshold(self) -> float:
        """The norm above which gradients are scaled down now (``inf``: no clipping)."""
        cfg = self.cfg
        if cfg.grad_clip == "fixed":
            return cfg.max_grad_norm
        if cfg.grad_clip == "off" or len(self.norms) < cfg.grad_clip_window:
            return math.inf
        return cfg.grad_clip_relative * float(np.median(self.norms))

    def record(self, norm: float) -> None:
        """Keep a pre-clip norm while the relative mode's calibration window is open."""
        if self.cfg.grad_clip == "relative" and len(self.norms) < self.cfg.grad_clip_window:
            self.norms.append(norm)

    def __call__(self, parameters) -> tuple[torch.Tensor, float]:
        """Clip ``parameters``' gradients; returns ``(pre-clip norm, threshold used)``."""
        threshold = self.threshold
        norm = torch.nn.utils.clip_grad_norm_(parameters, threshold)  # inf: the norm only (scale 1)
        self.record(norm.item())
        return norm, threshold


def update(
    model,
    optimizer,
    scheduler,
    mb: Rollouts,
    cfg: Config,
    step: int,
    *,
    first: bool = False,
    logprobs=None,
    clip: GradClip | None = None,
) -> UpdateResult:
    """One optimiser step on mini-batch ``mb``; returns its statistics and what its loss saw (log-probs
    detached; the clip mask) for :func:`~.methods.weight_samples`.

    ``first``: the step's first mini-batch, whose log-probs under the current weights are its old
    log-probs. ``logprobs``: its on-policy forward pass already made (graph kept), or None.
    ``clip``: the run's :class:`GradClip` (None: a fresh one of ``cfg``).
    """

    def loss_fn(lp) -> LossTerms:  # [b, T] -> the mini-batch's loss terms
        inputs = MiniBatch(lp, mb.old_logprobs, mb.batch.response_mask, mb.rewards, mb.advantages)
        loss, cut = policy_loss(cfg, inputs)
        kl = O.kl_penalty(lp, mb.ref_logprobs, inputs.mask) if mb.ref_logprobs is not None else None
        if kl is not None:
            loss = loss + cfg.resolved_kl_coef * kl
        _stop_if_diverged(loss.detach(), "loss", step, cfg)
        return LossTerms(loss, cut, kl, inputs)

    optimizer.zero_grad(set_to_none=True)
    terms = backward_in_micro_batches(
        model, mb, cfg, loss_fn, logprobs=logprobs, detached_logprobs=mb.old_logprobs if first else None
    )
    loss, cut, kl = terms.loss, terms.cut, terms.kl
    grad_norm, threshold = (clip or GradClip(cfg))(model.parameters())
    _stop_if_diverged(grad_norm, "gradient norm", step, cfg)
    optimizer.step()
    scheduler.step()
    inputs = replace(terms.inputs, logprobs=terms.inputs.logprobs.detach())
    stats = {
        "train/loss": loss.item(),
        "train/grad_norm": grad_norm.item(),
        "train/grad_norm_max": grad_norm.item(),
        "train/clip_bound_frac": float(grad_norm.item() > threshold),
    }
    if math.isfinite(threshold):
        stats["train/clip_threshold"] = threshold
    if kl is not None:
        stats["train/kl"] = kl.item()
    if cut is not None:
        stats["train/clip_fraction"] = clip_fraction(cut, inputs.mask)
    if not first:  # off-policy (s != 0): the mechanism the paper is about; on the first mini-batch it is trivial
        stats.update(offpolicy_stats(cfg, inputs, cut))
    return UpdateResult({**stats, **weight_stats(cfg, inputs, cut)}, inputs, cut)


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


# How the M mini-batch values of a statistic become the step's one logged value. A statistic that
# a mini-batch lacks (a weight side with no rollout in it) is reduced over the mini-batches that have it.
STEP_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "train/loss": _mean,
    "train/grad_norm": _mean,
    "train/kl": _mean,
    "train/clip_fraction": _mean,
    "train/grad_norm_max": max,  # the largest mini-batch's (pre-clip) norm: a spike a mean would hide
    "train/clip_bound_frac": _mean,
    "train/clip_threshold": _mean,  # how often the gradient clip scaled an update down
    **{name: {"mean": _mean, "max": max}[how] for name, how in OFFPOLICY_KEYS.items()},  # off-policy mini-batches only
    **{f"weights/{f}/{side}_mean": _mean for f in WEIGHT_FORMULAS for side in ("pos", "neg")},
    **{f"weights/{f}/{side}_max": max for f in WEIGHT_FORMULAS for side in ("pos", "neg")},
}


def reduce_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """One value per statistic from the step's mini-batches, by :data:`STEP_REDUCERS`.

    >>> reduce_stats([{"train/loss": 1.0, "weights/real/pos_max": 2.0},
    ...               {"train/loss": 2.0, "weights/real/pos_max": 1.0}])
    {'train/loss': 1.5, 'weights/real/pos_max': 2.0}
    """
    names = dict.fromkeys(name for s in stats for name in s)
    return {name: STEP_REDUCERS[name]([s[name] for s in stats if name in s]) for name in names}


# ----------------------------------------------------------------------------- the loop
def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) RL training as configured; returns the run folder."""
    torch.set_num_threads(cfg.num_threads)
    run_dir = cfg.run_dir
    ensure_writable_dir(run_dir, "run folder", "choose another --out")

    ckpt = latest_checkpoint(run_dir) if resume else None
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    model, tokenizer = load_policy(cfg, path=ckpt / "model" if ckpt else None, training=True)
    model.train()
    ref_model = None
    if cfg.resolved_kl_coef > 0:
        ref_model, _ = load_policy(cfg)  # the frozen initial policy, also on resume
        ref_model.eval().requires_grad_(False)

    optimizer = torch.optim.AdamW(  # fused: one kernel for all tensors (TRL's default too); 3x faster on the tiny model
        model.parameters(),
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
        fused=model.device.type in ("cpu", "cuda"),
    )
    warmup = max(cfg.lr_warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) if warmup else 1.0)
    start_step = load_trainer_state(ckpt, optimizer, scheduler) if ckpt else 0
    clip = GradClip(cfg, checkpoint_state(ckpt).get("grad_clip_norms") if ckpt else None)

    atomic_write_json(run_dir / "config.json", cfg.to_dict())
    atomic_write_json(run_dir / "versions.json", package_versions())
    train_set = load_split(cfg, "train")
    val_set = load_split(cfg, "validation")[: cfg.eval_prompts]
    # every prompt the backend will sample: vLLM sizes its engine's context from the longest
    backend = make_backend(
        cfg, model, tokenizer, prompts=[format_prompt(tokenizer, p, cfg) for p in train_set + val_set]
    )
    metrics = JsonlWriter(run_dir / "metrics.jsonl", start_step)
    weight_log = JsonlWriter(run_dir / "weight_samples.jsonl", start_step)

    P, n = cfg.prompts_per_step, cfg.rollouts_per_prompt
    bar = progress_bar(
        range(start_step, cfg.total_steps),
        initial=start_step,
        total=cfg.total_steps,
        desc=f"{cfg.method} s{cfg.seed}",
        disable=not progress,
        dynamic_ncols=True,
    )
    for step in bar:
        times: dict[str, float] = {}
        row: dict = {"step": step, "method": cfg.method, "seed": cfg.seed}
        eval_now = cfg.eval_every > 0 and step % cfg.eval_every == 0
        if eval_now:
            row.update(_evaluate(cfg, model, tokenizer, val_set, step, times, backend, per_problem=True))

        problems = [train_set[i] for i in prompt_indices(cfg.seed, step, P, len(train_set))]
        with _timed(times, "generate"):
            batch = backend.generate(
                [format_prompt(tokenizer, p, cfg) for p in problems],
                n,
                temperature=cfg.temperature,
                max_new_tokens=cfg.max_new_tokens,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                seed=derive_seed(cfg.seed, step),
            )
        with _timed(times, "verify"):
            golds = [p.answer for p in problems for _ in range(n)]
            boxed = {"require_boxed": True} if asks_for_box(problems) else {}  # hub maths: only \boxed{} counts
            rewards, counts = score_completions(batch.texts, golds, batch.truncated.tolist(), **boxed)
            rewards = rewards.view(P, n)  # [P, n]
            advantages = O.group_advantages(rewards).flatten()  # [P*n]
        with _timed(times, "old_logprobs"):
            old = old_logprobs(model, batch, cfg)
            ref_lp = logprobs_no_grad(ref_model, batch, cfg) if ref_model is not None else None  # [B, T]

        row.update(_batch_metrics(rewards.bool(), batch.response_mask, old.entropy, batch, counts))
        if batch.sampling_logprobs is not None:  # sampler vs trainer: a missed weight sync shows here
            gap = (batch.sampling_logprobs - old.logprobs).abs().max().item()  # both 0 off-mask
            row["rollout/logprob_max_abs_diff"] = gap

        rollouts = Rollouts(batch, rewards, advantages, old.logprobs, ref_lp)
        stats = []
        with _timed(times, "update"):
            for m, mb in enumerate(minibatches(rollouts, cfg)):
                last = update(
                    model,
                    optimizer,
                    scheduler,
                    mb,
                    cfg,
                    step,
                    first=m == 0,
                    logprobs=old.first_forward if m == 0 else None,
                    clip=clip,
                )
                stats.append(last.stats)
        with _timed(times, "sync"):
            backend.sync_weights(model)  # a no-op for HF; vLLM reloads the weights in place
        if hasattr(backend, "last_sync_max_abs_diff"):  # vLLM: the synced weights read back (0 = landed)
            row["rollout/sync_max_abs_diff"] = backend.last_sync_max_abs_diff
        row.update(reduce_stats(stats))
        row["train/lr"] = scheduler.get_last_lr()[0]
        row.update({f"time/{k}": v for k, v in times.items()})
        row["time/generate_tokens_per_s"] = float(batch.response_mask.sum()) / max(times["generate"], 1e-9)
        metrics.write(row)
        if eval_now:  # the last (most off-policy) mini-batch of the step; its samples are built only here
            weight_log.write({"step": step, "method": cfg.method, **weight_samples(cfg, last.inputs, last.cut)})
        bar.set_postfix(
            reward=f"{row['reward/mean']:.3f}", **({"val": f"{row['eval/pass@1']:.3f}"} if "eval/pass@1" in row else {})
        )

        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.total_steps:
            save_checkpoint(
                run_dir,
                done,
                model,
                tokenizer,
                optimizer,
                scheduler,
                cfg.keep_checkpoints,
                extra={"grad_clip_norms": clip.norms},
            )

    final = (
        _evaluate(cfg, model, tokenizer, val_set, cfg.total_steps, {}, backend, per_problem=True)
        if cfg.eval_every > 0
        else {}
    )
    summary = {"step": cfg.total_steps, "method": cfg.method, "seed": cfg.seed, **final}
    atomic_write_json(run_dir / "final.json", summary)
    return run_dir


def _evaluate(cfg, model, tokenizer, problems, step, times, backend=None, per_problem: bool = False) -> dict:
    """Validation metrics as ``eval/*``; ``per_problem`` adds each problem's correct-sample count and id
    (every evaluation keeps them, so that runs can be compared problem by problem over their last
    evaluations: ``results.last_evals``, ``sweep.paired_cells``)."""
    with _timed(times, "eval"):
        model.eval()
        res = evaluate_policy(
            model,
            tokenizer,
            problems,
            samples=cfg.eval_samples,
            temperature=cfg.eval_temperature,
            max_new_tokens=cfg.max_new_tokens,
            seed=derive_seed(cfg.seed, "eval", step),
            cfg=cfg,
            backend=backend,
        )
        model.train()
    keep = ("per_problem_correct", "problem_ids") if per_problem else ()
    return {f"eval/{k}": v for k, v in res.items() if isinstance(v, (int, float)) or k in keep}


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
