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

import math
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

    >>> lp = torch.zeros(2, 3)
    >>> mb = MiniBatch(lp, lp, torch.ones(2, 3).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
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
        return O.dapo_loss(
            mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.dapo_clip_low, cfg.dapo_clip_high, return_cut=True
        )
    if method == "gspo":
        return O.gspo_loss(
            mb.logprobs, mb.old_logprobs, mb.advantages, mb.mask, cfg.gspo_clip_low, cfg.gspo_clip_high, return_cut=True
        )
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
        "s": s,
        "labels": labels,
        "mixed": mixed,
        "log_ratio": log_ratio,
        "real": W.real_weights(s, labels, cfg.tau),  # [G, n]
        "grad": W.grad_weights(s, labels, cfg.tau),  # [G, n]
        # 0 on padding (where log_ratio is 0, the formula would give |A|): a rollout's sum is over its own tokens
        "grpo_token": W.grpo_weights(log_ratio, mb.advantages, cfg.clip_eps, cut=grpo_cut).masked_fill(
            ~mb.mask, 0.0
        ),  # [B, T]
        "tok_pos": mb.mask & (mb.advantages[:, None] > 0),  # [B, T]
        "tok_neg": mb.mask & (mb.advantages[:, None] < 0),  # [B, T]
    }


def weight_stats(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None = None) -> dict[str, float]:
    """Gradient weights of this batch under every formula (eqs. 2, 5, 6), whatever method trains:
    mean and max over the positives and negatives of mixed groups (``weights/real/pos_mean`` ...;
    a side with no rollout is left out). ``cut``: the training loss's clip mask
    (:func:`policy_loss`), reused for the GRPO weights when the method is GRPO.

    >>> lp = torch.zeros(2, 3)
    >>> mb = MiniBatch(lp, lp, torch.ones(2, 3).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
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


# the keys offpolicy_stats logs (offpolicy/...), each with how a step combines its mini-batches' values
OFFPOLICY_KEYS = {
    "offpolicy/s_abs_max": "max",
    "offpolicy/real/pos_corr_w_s": "mean",
    "offpolicy/grpo_token/pos_corr_w_s": "mean",
    "offpolicy/grpo_token/pos_zeroed_frac": "mean",
    "offpolicy/clip/pos_zeroed_frac": "mean",
    "offpolicy/real/neg_above1_share": "mean",
    "offpolicy/grpo_token/neg_above1_share": "mean",
    "offpolicy/real/max_w_times_tau": "max",
    "offpolicy/grpo_token/neg_top1pct_share": "mean",
    "offpolicy/grpo_token/pos_corr_w_s_within": "mean",
    "offpolicy/s_token_spread": "mean",
    "offpolicy/s_token_spread_ratio": "mean",
}
TOP_FRACTION = 0.01  # neg_top1pct_share: the share of GRPO's negative-token weight carried by the top 1% of tokens


@torch.no_grad()
def offpolicy_stats(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None = None) -> dict[str, float]:
    """The paper's mechanism in one *off-policy* mini-batch (s != 0), as scalars for the step's metrics line.

    Call it only for a step's later mini-batches: on the first (s = 0) every value below is trivial.
    Rollouts are those of mixed groups (one-label groups carry no weight); "positive"/"negative" is
    the reward label, and a token's side is the sign of its advantage.

    - ``offpolicy/s_abs_max``: the largest |s_i|, to read against tau.
    - ``offpolicy/<f>/pos_corr_w_s``: Pearson correlation between a positive rollout's weight and
      its s (``real``: |W| of eq. 5, falling in s; ``grpo_token``: the mean over the rollout's
      tokens of |A| e^{s_t} with clipped tokens at 0, rising until the clip cuts it); left out when
      fewer than 3 positives or a constant.
    - ``offpolicy/grpo_token/pos_zeroed_frac``: fraction of positive-advantage tokens that GRPO's
      clip (eps = clip_eps) zeroes at these ratios, whatever trains (GRPO: its own loss's clip).
    - ``offpolicy/clip/pos_zeroed_frac``: the same with the training loss's own clip (GRPO, DAPO:
      token mask; GSPO: sequence mask); absent for REAL and GRAD, which have no clip.
    - ``offpolicy/<f>/neg_above1_share``: share of the total gradient weight (positives and
      negatives) carried by negatives whose ratio is above 1 (``real``: s_i > 0; ``grpo_token``:
      log-ratio of the token > 0) -- GRPO's "domination".
    - ``offpolicy/real/max_w_times_tau``: REAL's largest |W| times tau; the paper's bound says < 1.
    - ``offpolicy/grpo_token/neg_top1pct_share``: among negative-advantage tokens, the share of their
      total GRPO weight |A| e^{s_t} carried by the top 1% of them (:func:`top_share`: the largest
      ceil(N/100) of N tokens, so with fewer than 100 tokens the single largest) -- GRPO's domination.
      Equal weights give ceil(N/100)/N (0.01 from N = 100 on); one token carrying everything gives 1.
    - ``offpolicy/grpo_token/pos_corr_w_s_within``: Pearson correlation, over positive tokens, of a
      token's GRPO weight and its s_t, both taken *within* its rollout (minus the rollout's mean
      weight and minus s_i): misassignment inside a response, without the differences between
      responses; left out when fewer than 3 tokens or no token differs from its rollout's mean.
    - ``offpolicy/s_token_spread``: the mean over rollouts of the standard deviation (ddof 0) of
      s_t around the rollout's s_i -- what REAL's sequence score averages away (0 for 1-token answers).
    - ``offpolicy/s_token_spread_ratio``: that spread divided by the mean |s_i| of the same rollouts:
      above 1, tokens inside a rollout move apart more than whole rollouts move from 0.

    One group, three positives at s = 0.15, 0.05, -0.2 (one token each; none beyond GRPO's clip 0.2)
    and one negative at s = 0.4 (ratio e^0.4 > 1):

    >>> lp = torch.tensor([[0.15], [0.05], [-0.2], [0.4]]); old = torch.zeros(4, 1); mask = torch.ones(4, 1).bool()
    >>> mb = MiniBatch(lp, old, mask, torch.tensor([[1., 1., 1., 0.]]), torch.tensor([.5, .5, .5, -1.5]))
    >>> st = offpolicy_stats(Config(), mb)
    >>> st["offpolicy/real/pos_corr_w_s"] < 0 < st["offpolicy/grpo_token/pos_corr_w_s"]
    True
    >>> st["offpolicy/grpo_token/pos_zeroed_frac"]
    0.0
    >>> # 1.5 e^0.4 / (1.5 e^0.4 + 0.5 (e^0.15 + e^0.05 + e^-0.2))
    >>> round(st["offpolicy/grpo_token/neg_above1_share"], 3)
    0.596
    """
    w = _weights(cfg, mb, cut)
    G, n = mb.rewards.shape
    pos, neg = w["labels"] & w["mixed"], ~w["labels"] & w["mixed"]  # [G, n]
    tok_pos, tok_neg = w["tok_pos"], w["tok_neg"]  # [B, T]
    w_tok = w["grpo_token"]  # [B, T]
    lengths = mb.mask.sum(-1).clamp(min=1)  # [B]
    w_grpo_rollout = (w_tok.sum(-1) / lengths).view(G, n)  # [G, n] mean token weight of each rollout
    stats = {"offpolicy/s_abs_max": w["s"][w["mixed"]].abs().max().item()} if w["mixed"].any() else {}
    for name, values in (("real", w["real"]), ("grpo_token", w_grpo_rollout)):
        corr = _pearson(values[pos], w["s"][pos])
        if corr is not None:
            stats[f"offpolicy/{name}/pos_corr_w_s"] = corr
    if tok_pos.any():
        stats["offpolicy/grpo_token/pos_zeroed_frac"] = (w_tok[tok_pos] == 0).float().mean().item()
        if cut is not None:
            cut_tok = cut if cut.dim() == 2 else cut[:, None].expand_as(mb.mask)  # GSPO: the sequence's cut
            stats["offpolicy/clip/pos_zeroed_frac"] = cut_tok[tok_pos].float().mean().item()
    total_real = w["real"][w["mixed"]].sum()
    if total_real > 0:
        stats["offpolicy/real/neg_above1_share"] = (w["real"][neg & (w["s"] > 0)].sum() / total_real).item()
        stats["offpolicy/real/max_w_times_tau"] = (w["real"].max() * cfg.tau).item()
    total_tok = w_tok[tok_pos | tok_neg].sum()
    if total_tok > 0:
        stats["offpolicy/grpo_token/neg_above1_share"] = (
            w_tok[tok_neg & (w["log_ratio"] > 0)].sum() / total_tok
        ).item()
    top = top_share(w_tok[tok_neg])
    if top is not None:
        stats["offpolicy/grpo_token/neg_top1pct_share"] = top
    # within a rollout: each token's weight and s_t minus its rollout's mean (s_i is the mean of its s_t)
    row_mean_w = (w_tok.sum(-1) / lengths)[:, None]  # [B, 1]
    dev_s = (w["log_ratio"] - w["s"].flatten()[:, None]).masked_fill(~mb.mask, 0.0)  # [B, T]
    corr = _pearson((w_tok - row_mean_w)[tok_pos], dev_s[tok_pos])
    if corr is not None:
        stats["offpolicy/grpo_token/pos_corr_w_s_within"] = corr
    mixed_rows = w["mixed"].flatten()  # [B]
    if mixed_rows.any():
        spread = (dev_s.square().sum(-1) / lengths).sqrt()[mixed_rows].mean()
        stats["offpolicy/s_token_spread"] = spread.item()
        s_abs = w["s"].flatten()[mixed_rows].abs().mean()
        if s_abs > 0:
            stats["offpolicy/s_token_spread_ratio"] = (spread / s_abs).item()
    return stats


def top_share(weights: torch.Tensor, fraction: float = TOP_FRACTION) -> float | None:
    """Share of ``weights.sum()`` carried by the largest ``ceil(fraction * N)`` of the N weights (at
    least one: with fewer than 1/fraction weights it is the largest one's share); None when there is
    no weight or they sum to 0. Equal weights give ceil(fraction * N) / N.

    >>> top_share(torch.tensor([5.0, 1.0, 1.0, 1.0])), top_share(torch.ones(200))  # the top 1 of 4; 2 of 200
    (0.625, 0.01)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = weights.flatten().double()
    total = flat.sum()
    if flat.numel() == 0 or not total > 0:
        return None
    k = math.ceil(round(fraction * flat.numel(), 9))  # round: 0.01 * 300 is 3.0000000000000004, whose ceil is 4
    return (flat.topk(k).values.sum() / total).item()


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Pearson correlation of two 1-d tensors; None when fewer than 3 values or either is constant."""
    if x.numel() < 3:
        return None
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denom = (x.square().sum() * y.square().sum()).sqrt()
    return (x @ y / denom).item() if denom > 0 else None


def weight_samples(cfg: Config, mb: MiniBatch, cut: torch.Tensor | None = None) -> dict[str, list]:
    """Per-rollout (s, label, |W_real|, |W_grad|, index, length) of mixed groups and per-token
    (s_t, A, |W_grpo|, rollout index) of non-zero-advantage tokens, as lists for
    ``weight_samples.jsonl`` and the empirical figures. ``rollout`` / ``token_rollout`` are the
    rollout's row in the mini-batch, one indexing for both, so tokens join their rollout (every
    sampled token's rollout is a sampled rollout: only mixed groups have A != 0); ``length`` counts
    its response tokens. Tokens come rollout by rollout, in order. Python lists of every token are
    slow to build: call it only for the batches that are written.

    >>> lp = torch.zeros(2, 1)
    >>> mb = MiniBatch(lp, lp, torch.ones(2, 1).bool(), torch.tensor([[1., 0.]]), torch.tensor([1., -1.]))
    >>> ws = weight_samples(Config(), mb); ws["w_real"], ws["rollout"], ws["length"], ws["token_rollout"]
    ([1.0, 1.0], [0, 1], [1, 1], [0, 1])
    """
    w = _weights(cfg, mb, cut)
    keep = w["mixed"].flatten()
    tokens = w["tok_pos"] | w["tok_neg"]
    rows = torch.arange(mb.mask.shape[0])  # [B]
    return {
        "s": w["s"].flatten()[keep].tolist(),
        "label": w["labels"].flatten()[keep].int().tolist(),
        "w_real": w["real"].flatten()[keep].tolist(),
        "w_grad": w["grad"].flatten()[keep].tolist(),
        "rollout": rows[keep].tolist(),
        "length": mb.mask.sum(-1)[keep].tolist(),
        "s_token": w["log_ratio"][tokens].tolist(),
        "a_token": mb.advantages[:, None].expand_as(mb.mask)[tokens].tolist(),
        "w_grpo": w["grpo_token"][tokens].tolist(),
        "token_rollout": rows[:, None].expand_as(mb.mask)[tokens].tolist(),
    }


def _mean_max(prefix: str, values: torch.Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {}
    return {f"{prefix}_mean": values.mean().item(), f"{prefix}_max": values.max().item()}
