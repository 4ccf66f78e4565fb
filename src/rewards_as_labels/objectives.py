"""The paper's objectives, one pure function per equation (numbers as in ``docs/paper.md``).

Conventions
    * ``scores``, ``rewards``: ``[G, n]`` -- G groups (prompts), n rollouts each, prompt-major.
    * token tensors (``logprobs``, ``old_logprobs``, ``mask``): ``[B, T]`` with ``B = G * n``.
    * rewards are binary labels (bool, or float/int holding only 0 and 1).
    * every function returns a *loss to minimise* (``loss = -objective`` for the PPO family).

How this departs from the paper's released code, and why
    1) REAL / GRAD see a group only through its scores: one-label groups contribute exactly 0
       but stay in the graph, so ``backward()`` works on any batch.
    2) The batch REAL loss divides by *all* groups G (one-label ones included), as the paper's
       batch loss does; GRAD averages over the rollouts of mixed groups only.
    3) PPO-family losses select the clipped branch with an explicit mask instead of
       ``min(rho*A, clip(rho)*A)``: identical value and gradient, but a cut token never
       evaluates ``exp`` of a huge log-ratio, so extreme ratios give no ``0 * inf = nan``.
       GRPO's *unclipped* negative branch is genuinely unbounded (the paper's "gradient
       domination"), so ``|A| e^{s}`` can overflow there -- that is the method, not a bug.
    4) DAPO = clip-higher + batch token-mean only (no dynamic sampling, no overlong shaping).
    5) GRAD's average runs over the mixed-group rollouts of the whole optimiser mini-batch. The
       released code averages over those of each micro-batch of 4 prompts (then rescales), so
       there a mixed group alone in its micro-batch weighs several times more than here. Ours
       does not depend on how a mini-batch is split over micro-batches or GPUs.
    6) GRPO's KL (:func:`kl_penalty`) is a token mean per sequence, then a mean over
       sequences, unclamped. The released code takes a token mean over each micro-batch and
       clamps the k3 term to [-10, 10]; at the paper's coefficient (0.001) the clamp only acts
       on a policy far from its reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "sequence_scores",
    "group_advantages",
    "real_loss",
    "grad_loss",
    "grpo_loss",
    "dapo_loss",
    "gspo_loss",
    "kl_penalty",
    "clipped_surrogate",
    "mixed_groups",
    "check_group_inputs",
]


# ----------------------------------------------------------------------------- input checks
def _check_finite_inputs(name: str, x: torch.Tensor, where: torch.Tensor | None = None) -> None:
    values = x if where is None else x[where]
    if not torch.isfinite(values).all():
        bad = (~torch.isfinite(x)).nonzero()[:3].tolist() if where is None else "masked positions"
        raise ValueError(f"{name} holds non-finite values (first at {bad}); check the log-prob computation")


def _check_tau(tau: float) -> float:
    if isinstance(tau, torch.Tensor):
        tau = float(tau)
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return float(tau)


def _check_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match log-prob shape {tuple(like.shape)}")
    mask = mask.to(torch.bool)
    empty = (~mask.any(-1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"mask has all-zero rows {empty[:5].tolist()}: every rollout needs at least one "
            "response token (drop empty responses before computing the loss)"
        )
    return mask


def check_group_inputs(scores: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Validate ``[G, n]`` scores/rewards and return the rewards as a bool label tensor."""
    if scores.dim() != 2 or scores.shape != rewards.shape:
        raise ValueError(
            f"scores and rewards must both be [G, n]; got scores {tuple(scores.shape)} and "
            f"rewards {tuple(rewards.shape)} (reshape flat rollouts with .view(G, n))"
        )
    if rewards.dtype != torch.bool:
        binary = (rewards == 0) | (rewards == 1)
        if not binary.all():
            bad = rewards[~binary][:3].tolist()
            raise ValueError(f"rewards must be 0/1 labels, got values {bad}; binarise them first (r > 0.5)")
    _check_finite_inputs("scores", scores)
    return rewards.to(torch.bool)


def mixed_groups(labels: torch.Tensor) -> torch.Tensor:
    """``[G]`` bool: groups holding both labels (the only ones that carry signal).

    >>> mixed_groups(torch.tensor([[1, 1], [0, 0], [1, 0]]).bool())
    tensor([False, False,  True])
    """
    return labels.any(-1) & (~labels).any(-1)


# ----------------------------------------------------------------------------- eq. (3)
def sequence_scores(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. (3): s_i = (1/|o_i|) sum_t (log pi_theta(o_i,t) - log pi_old(o_i,t)).

    >>> lp = torch.tensor([[-1.0, -2.0, 0.0]]); old = torch.tensor([[-1.5, -2.0, 9.0]])
    >>> sequence_scores(lp, old, torch.tensor([[1, 1, 0]]))  # (0.5 + 0) / 2, pad ignored
    tensor([0.2500])
    """
    if logprobs.shape != old_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and old_logprobs {tuple(old_logprobs.shape)} differ in shape"
        )
    mask = _check_mask(mask, logprobs)  # [B, T]
    _check_finite_inputs("logprobs", logprobs, mask)
    _check_finite_inputs("old_logprobs", old_logprobs, mask)
    # where() (not multiply) so that padding holding -inf/nan cannot poison the sum
    log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros((), dtype=logprobs.dtype))  # [B, T]
    return log_ratio.sum(-1) / mask.sum(-1)  # [B]


# ----------------------------------------------------------------------------- GRPO advantages
def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's A_i = (r_i - mean(r)) / (std(r) + eps) per group, unbiased std.

    >>> group_advantages(torch.tensor([[1., 0., 0., 0.]]))  # mean .25, std .5
    tensor([[ 1.5000, -0.5000, -0.5000, -0.5000]])
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [G, n] with n >= 2, got shape {tuple(rewards.shape)}")
    _check_finite_inputs("rewards", rewards.float())
    r = rewards.to(torch.get_default_dtype() if not rewards.is_floating_point() else rewards.dtype)
    return (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + eps)  # [G, n]


# ----------------------------------------------------------------------------- eq. (4): REAL
def real_loss(scores: torch.Tensor, rewards: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Eq. (4), summed over groups and divided by the number of groups G.

        L_g = log(1 + sum_{i in O+} e^{-s_i/tau}) + log(1 + sum_{j in O-} e^{s_j/tau})

    computed as two logsumexps with an anchor logit 0 (the "1 +"). One-label groups give 0.

    >>> # one mixed group, on-policy: log(1 + 1) + log(1 + 1)
    >>> real_loss(torch.zeros(1, 2), torch.tensor([[1., 0.]]))
    tensor(1.3863)
    """
    labels = check_group_inputs(scores, rewards)  # [G, n] bool
    tau = _check_tau(tau)
    z = scores / tau  # [G, n] logits
    neg_inf = torch.tensor(float("-inf"), dtype=z.dtype)
    anchor = torch.zeros_like(z[:, :1])  # [G, 1]
    pos_term = torch.logsumexp(torch.cat([anchor, torch.where(labels, -z, neg_inf)], -1), -1)  # [G]
    neg_term = torch.logsumexp(torch.cat([anchor, torch.where(labels, neg_inf, z)], -1), -1)  # [G]
    per_group = torch.where(mixed_groups(labels), pos_term + neg_term, torch.zeros_like(pos_term))  # [G]
    return per_group.sum() / scores.shape[0]


# ----------------------------------------------------------------------------- GRAD (vanilla BCE)
def grad_loss(scores: torch.Tensor, rewards: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """GRAD: binary cross-entropy on the logit s_i/tau with label r_i, averaged over the
    rollouts of groups holding both labels (0, with a graph, when no group does).

    >>> # s = 0 gives BCE log 2 for each rollout
    >>> grad_loss(torch.zeros(1, 2), torch.tensor([[1., 0.]]))
    tensor(0.6931)
    """
    labels = check_group_inputs(scores, rewards)
    tau = _check_tau(tau)
    per_rollout = F.binary_cross_entropy_with_logits(scores / tau, labels.to(scores.dtype), reduction="none")
    keep = mixed_groups(labels)[:, None].expand_as(labels)  # [G, n]
    total = torch.where(keep, per_rollout, torch.zeros_like(per_rollout)).sum()
    return total / keep.sum().clamp(min=1)


# ----------------------------------------------------------------------------- eq. (1) family
def clipped_surrogate(
    log_ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element PPO objective min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), rho = e^{log_ratio}.

    Returns ``(objective, cut)``; ``cut`` marks where the clip removes the gradient
    (A > 0 and rho > 1+eps_high, or A < 0 and rho < 1-eps_low); its mean is the clip fraction.
    """
    advantages = advantages.to(log_ratio.dtype).expand_as(log_ratio)
    cut = ((advantages > 0) & (log_ratio > math.log1p(eps_high))) | (
        (advantages < 0) & (log_ratio < math.log1p(-eps_low))
    )
    constant = cut | (advantages == 0)  # no gradient flows here
    bound = torch.full_like(log_ratio, 1.0 + eps_high).where(advantages > 0, 1.0 - eps_low)  # no float32 detour
    # exp only of log-ratios that survive the clip: no inf on cut tokens, so no 0 * inf
    ratio = torch.exp(torch.where(constant, torch.zeros_like(log_ratio), log_ratio))
    objective = torch.where(constant, bound * advantages, ratio * advantages)
    return objective, cut


def _token_inputs(logprobs, old_logprobs, advantages, mask):
    if logprobs.shape != old_logprobs.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and old_logprobs {tuple(old_logprobs.shape)} differ")
    mask = _check_mask(mask, logprobs)
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be [B]={logprobs.shape[0]}, got {tuple(advantages.shape)}")
    _check_finite_inputs("logprobs", logprobs, mask)
    _check_finite_inputs("old_logprobs", old_logprobs, mask)
    _check_finite_inputs("advantages", advantages)
    log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros((), dtype=logprobs.dtype))  # [B, T]
    return log_ratio, advantages[:, None], mask


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    return_cut: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Eq. (1) as a loss: -mean_i (1/|o_i|) sum_t min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i).

    ``advantages`` is ``[B]`` (one per rollout). Token mean inside a sequence, then mean
    over sequences. ``return_cut=True`` also returns the ``[B, T]`` mask of where the clip
    removed the gradient (see :func:`clipped_surrogate`), so that no caller recomputes it.

    >>> # on-policy (rho = 1): loss = -mean(A)
    >>> lp = torch.zeros(2, 3)
    >>> grpo_loss(lp, lp, torch.tensor([1.0, -0.5]), torch.ones(2, 3))
    tensor(-0.2500)
    """
    log_ratio, adv, mask = _token_inputs(logprobs, old_logprobs, advantages, mask)
    objective, cut = clipped_surrogate(log_ratio, adv, clip_eps, clip_eps)  # [B, T] each
    per_seq = torch.where(mask, objective, torch.zeros_like(objective)).sum(-1) / mask.sum(-1)  # [B]
    loss = -per_seq.mean()  # we minimise
    return (loss, cut) if return_cut else loss


def dapo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    return_cut: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """DAPO: GRPO's surrogate with clip-higher (1-clip_low, 1+clip_high) and token-mean over
    the whole batch (every token of every sequence weighs the same), as a loss.
    ``return_cut=True`` also returns the ``[B, T]`` clip mask, as :func:`grpo_loss`.

    >>> lp = torch.zeros(2, 3)
    >>> dapo_loss(lp, lp, torch.tensor([1.0, -0.5]), torch.tensor([[1, 1, 1], [1, 0, 0]]))  # -(3 - .5)/4
    tensor(-0.6250)
    """
    log_ratio, adv, mask = _token_inputs(logprobs, old_logprobs, advantages, mask)
    objective, cut = clipped_surrogate(log_ratio, adv, clip_low, clip_high)  # [B, T] each
    loss = -torch.where(mask, objective, torch.zeros_like(objective)).sum() / mask.sum()
    return (loss, cut) if return_cut else loss


def gspo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    return_cut: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """GSPO: sequence-level ratio rho_i = exp(s_i) with s_i from eq. (3), clipped to
    (1-clip_low, 1+clip_high), mean over sequences, as a loss.
    ``return_cut=True`` also returns the ``[B]`` mask of the sequences the clip cut.

    >>> lp = torch.zeros(2, 3)
    >>> gspo_loss(lp, lp, torch.tensor([1.0, -0.5]), torch.ones(2, 3))
    tensor(-0.2500)
    """
    _token_inputs(logprobs, old_logprobs, advantages, mask)  # validation only
    s = sequence_scores(logprobs, old_logprobs, mask)  # [B]
    objective, cut = clipped_surrogate(s, advantages, clip_low, clip_high)  # [B] each
    loss = -objective.mean()
    return (loss, cut) if return_cut else loss


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Low-variance (k3) KL estimate to a frozen reference, token mean per sequence then mean:
    KL ~ e^{ref - logp} - (ref - logp) - 1 >= 0 (Schulman's estimator, as in GRPO).

    >>> kl_penalty(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2))
    tensor(0.)
    """
    if ref_logprobs.shape != logprobs.shape:
        raise ValueError(
            f"ref_logprobs {tuple(ref_logprobs.shape)} and logprobs {tuple(logprobs.shape)} differ in shape"
        )
    mask = _check_mask(mask, logprobs)
    _check_finite_inputs("logprobs", logprobs, mask)
    _check_finite_inputs("ref_logprobs", ref_logprobs, mask)
    delta = torch.where(mask, ref_logprobs - logprobs, torch.zeros((), dtype=logprobs.dtype))  # [B, T]
    per_token = torch.expm1(delta) - delta  # [B, T]; 0 on padding
    return (per_token.sum(-1) / mask.sum(-1)).mean()
