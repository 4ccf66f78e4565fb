"""The method switch: which objective a mini-batch is trained with, and the diagnostics
that make the paper's claims visible in real training (gradient weights per rollout).

The five methods differ only in the loss of one mini-batch; sampling, verification,
old log-probs and the optimiser are shared (see :mod:`rewards_as_labels.trainer`).

    real  eq. (4), tau                          -- group-coupled classification
    grad  BCE on s/tau with reward labels       -- eq. (4) without group coupling (C+- = 1)
    grpo  eq. (1), clip_eps, + KL (paper)       -- token ratios, group-normalised advantages
    dapo  clip-higher, batch token mean
    gspo  sequence ratio exp(s_i), tight clip
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import gradients as W
from . import objectives as O
from .config import METHODS, Config


@dataclass
class MiniBatch:
    """One optimiser mini-batch of whole groups (prompt-major).

    logprobs, old_logprobs, mask: [B, T]; rewards: [G, n]; advantages: [B]; B = G * n.
    """

    logprobs: torch.Tensor
    old_logprobs: torch.Tensor
    mask: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor


def policy_loss(cfg: Config, mb: MiniBatch, method: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss of one mini-batch for ``method`` (default ``cfg.method``) and, for the
    ratio-based methods, the ``cut`` mask of where the clip removed the gradient."""
    method = method or cfg.method
    G, n = mb.rewards.shape
    if method == "real":
        s = O.sequence_scores(mb.logprobs, mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
        return O.real_loss(s, mb.rewards, cfg.tau), None
    if method == "grad":
        s = O.sequence_scores(mb.logprobs, mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
        return O.grad_loss(s, mb.rewards, cfg.tau), None
    if method == "grpo":
        loss = O.grpo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.clip_eps)
        return loss, _cut(mb, cfg.clip_eps, cfg.clip_eps)
    if method == "dapo":
        loss = O.dapo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.dapo_clip_low, cfg.dapo_clip_high)
        return loss, _cut(mb, cfg.dapo_clip_low, cfg.dapo_clip_high)
    if method == "gspo":
        loss = O.gspo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.gspo_clip_low, cfg.gspo_clip_high)
        s = O.sequence_scores(mb.logprobs.detach(), mb.old_logprobs, mb.mask)  # [B]
        _, cut = O.clipped_surrogate(s, mb.advantages, cfg.gspo_clip_low, cfg.gspo_clip_high)
        return loss, cut
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def _cut(mb: MiniBatch, low: float, high: float) -> torch.Tensor:
    log_ratio = (mb.logprobs.detach() - mb.old_logprobs)[mb.mask]  # [tokens]
    adv = mb.advantages[:, None].expand_as(mb.mask)[mb.mask]  # [tokens]
    return O.clipped_surrogate(log_ratio, adv, low, high)[1]


@torch.no_grad()
def weight_diagnostics(cfg: Config, mb: MiniBatch) -> tuple[dict[str, float], dict[str, list]]:
    """Gradient weights of this batch under every formula (eqs. 2, 5, 6), whatever method trains.

    Returns ``(stats, samples)``: ``stats`` holds mean/max over positives and negatives of
    mixed groups (``weights/real/pos_mean`` ...), ``samples`` the per-rollout (s, label,
    |W_real|, |W_grad|) and per-token (s_t, A, |W_grpo|) values for the empirical figure.
    """
    G, n = mb.rewards.shape
    labels = mb.rewards.bool()  # [G, n]
    s = O.sequence_scores(mb.logprobs.detach(), mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
    mixed = O.mixed_groups(labels)[:, None].expand_as(labels)  # [G, n]
    per_rollout = {"real": W.real_weights(s, labels, cfg.tau), "grad": W.grad_weights(s, labels, cfg.tau)}
    log_ratio = (mb.logprobs.detach() - mb.old_logprobs).masked_fill(~mb.mask, 0.0)  # [B, T]
    w_tok = W.grpo_weights(log_ratio, mb.advantages, cfg.clip_eps)  # [B, T]
    tok_pos = mb.mask & (mb.advantages[:, None] > 0)  # [B, T]
    tok_neg = mb.mask & (mb.advantages[:, None] < 0)
    stats: dict[str, float] = {}
    for name, w in per_rollout.items():
        for side, sel in (("pos", labels & mixed), ("neg", ~labels & mixed)):
            stats.update(_mean_max(f"weights/{name}/{side}", w[sel]))
    stats.update(_mean_max("weights/grpo_token/pos", w_tok[tok_pos]))
    stats.update(_mean_max("weights/grpo_token/neg", w_tok[tok_neg]))
    keep = mixed.flatten()
    samples = {
        "s": s.flatten()[keep].tolist(),
        "label": labels.flatten()[keep].int().tolist(),
        "w_real": per_rollout["real"].flatten()[keep].tolist(),
        "w_grad": per_rollout["grad"].flatten()[keep].tolist(),
        "s_token": log_ratio[tok_pos | tok_neg].tolist(),
        "a_token": mb.advantages[:, None].expand_as(mb.mask)[tok_pos | tok_neg].tolist(),
        "w_grpo": w_tok[tok_pos | tok_neg].tolist(),
    }
    return stats, samples


def _mean_max(prefix: str, values: torch.Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {}
    return {f"{prefix}_mean": values.mean().item(), f"{prefix}_max": values.max().item()}
