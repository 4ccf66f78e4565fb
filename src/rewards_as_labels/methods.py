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
    """Loss of one mini-batch for ``method`` (default ``cfg.method``) and, for the ratio-based
    methods, the ``cut`` mask of where the clip removed the gradient, as the loss computed it
    (``[B, T]`` for GRPO and DAPO, ``[B]`` for GSPO's sequence ratio; None for REAL and GRAD).

    >>> lp = torch.zeros(2, 3); mb = MiniBatch(lp, lp, torch.ones(2, 3).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
    >>> policy_loss(Config(), mb)  # REAL, on-policy: log(1 + 1) + log(1 + 1), one group
    (tensor(1.3863), None)
    >>> policy_loss(Config(), mb, "grpo")  # rho = 1: -mean(A) = 0, nothing cut
    (tensor(-0.), tensor([[False, False, False],
            [False, False, False]]))
    """
    method = method or cfg.method
    G, n = mb.rewards.shape
    if method == "real":
        s = O.sequence_scores(mb.logprobs, mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
        return O.real_loss(s, mb.rewards, cfg.tau), None
    if method == "grad":
        s = O.sequence_scores(mb.logprobs, mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
        return O.grad_loss(s, mb.rewards, cfg.tau), None
    if method == "grpo":
        return O.grpo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.clip_eps, return_cut=True)
    if method == "dapo":
        return O.dapo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.dapo_clip_low,
                           cfg.dapo_clip_high, return_cut=True)
    if method == "gspo":
        return O.gspo_loss(mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.gspo_clip_low,
                           cfg.gspo_clip_high, return_cut=True)
    raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def clip_fraction(cut: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of response tokens (``cut`` ``[B, T]``: GRPO, DAPO) or of sequences (``cut`` ``[B]``:
    GSPO) whose gradient the clip removed; ``mask`` ``[B, T]`` picks the response tokens.

    >>> clip_fraction(torch.tensor([[True, False, True]]), torch.tensor([[True, True, False]]))  # 1 of 2 tokens
    0.5
    """
    return (cut[mask] if cut.dim() == 2 else cut).float().mean().item()


# the per-rollout / per-token weight formulas that weight_stats summarises (weights/<formula>/...)
WEIGHT_FORMULAS = ("real", "grad", "grpo_token")


@torch.no_grad()
def _weights(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """|W| of every rollout / token of ``mb`` under eqs. (5), (6) and (2), and where each applies."""
    G, n = mb.rewards.shape
    labels = mb.rewards.bool()  # [G, n]
    s = O.sequence_scores(mb.logprobs.detach(), mb.old_logprobs, mb.mask).view(G, n)  # [G, n]
    mixed = O.mixed_groups(labels)[:, None].expand_as(labels)  # [G, n]
    log_ratio = (mb.logprobs.detach() - mb.old_logprobs).masked_fill(~mb.mask, 0.0)  # [B, T]
    grpo_cut = cut if cfg.method == "grpo" else None  # the loss's own mask when it is GRPO's clip
    return {
        "s": s, "labels": labels, "mixed": mixed, "log_ratio": log_ratio,
        "real": W.real_weights(s, labels, cfg.tau),  # [G, n]
        "grad": W.grad_weights(s, labels, cfg.tau),  # [G, n]
        "grpo_token": W.grpo_weights(log_ratio, mb.advantages, cfg.clip_eps, cut=grpo_cut),  # [B, T]
        "tok_pos": mb.mask & (mb.advantages[:, None] > 0),  # [B, T]
        "tok_neg": mb.mask & (mb.advantages[:, None] < 0),  # [B, T]
    }


def weight_stats(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None = None) -> dict[str, float]:
    """Gradient weights of this batch under every formula (eqs. 2, 5, 6), whatever method trains:
    mean and max over the positives and negatives of mixed groups (``weights/real/pos_mean`` ...;
    a side with no rollout is left out). ``cut``: the training loss's clip mask
    (:func:`policy_loss`), reused for the GRPO weights when the method is GRPO.

    >>> lp = torch.zeros(2, 3); mb = MiniBatch(lp, lp, torch.ones(2, 3).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
    >>> weight_stats(Config(), mb)["weights/real/pos_max"]  # on-policy: (1/tau) / (1 + |O+|) = 2 / 2
    1.0
    """
    w = _weights(cfg, mb, cut)
    stats: dict[str, float] = {}
    for name in ("real", "grad"):
        for side, sel in (("pos", w["labels"] & w["mixed"]), ("neg", ~w["labels"] & w["mixed"])):
            stats.update(_mean_max(f"weights/{name}/{side}", w[name][sel]))
    stats.update(_mean_max("weights/grpo_token/pos", w["grpo_token"][w["tok_pos"]]))
    stats.update(_mean_max("weights/grpo_token/neg", w["grpo_token"][w["tok_neg"]]))
    return stats


def weight_samples(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None = None) -> dict[str, list]:
    """Per-rollout (s, label, |W_real|, |W_grad|) of mixed groups and per-token (s_t, A, |W_grpo|)
    of non-zero-advantage tokens, as lists for ``weight_samples.jsonl`` and the empirical figure.
    Python lists of every token are slow to build: call it only for the batches that are written.

    >>> lp = torch.zeros(2, 1); mb = MiniBatch(lp, lp, torch.ones(2, 1).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
    >>> weight_samples(Config(), mb)["w_real"]
    [1.0, 1.0]
    """
    w = _weights(cfg, mb, cut)
    keep = w["mixed"].flatten()
    tokens = w["tok_pos"] | w["tok_neg"]
    return {
        "s": w["s"].flatten()[keep].tolist(),
        "label": w["labels"].flatten()[keep].int().tolist(),
        "w_real": w["real"].flatten()[keep].tolist(),
        "w_grad": w["grad"].flatten()[keep].tolist(),
        "s_token": w["log_ratio"][tokens].tolist(),
        "a_token": mb.advantages[:, None].expand_as(mb.mask)[tokens].tolist(),
        "w_grpo": w["grpo_token"][tokens].tolist(),
    }


def _mean_max(prefix: str, values: torch.Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {}
    return {f"{prefix}_mean": values.mean().item(), f"{prefix}_max": values.max().item()}
