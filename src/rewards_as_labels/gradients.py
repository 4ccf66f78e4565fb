"""Closed-form gradient weights |dL/ds| derived in the paper (eqs. 2, 5, 6).

Each function returns the *magnitude* of the gradient of one group's (or one rollout's,
or one token's) loss term with respect to its score, before any batch normalisation:

    * ``real_weights``: |dL_g/ds_k| for eq. (4) of group g       -> eq. (5)
    * ``grad_weights``: |d BCE_k/ds_k| of rollout k's own term    -> eq. (6)
    * ``grpo_weights``: |d(rho_t A)/ds_t| = |A| e^{s_t} or 0      -> eq. (2)

The batch losses in :mod:`rewards_as_labels.objectives` divide these by G (REAL), by the
number of mixed-group rollouts (GRAD) or by |o_i| * B (GRPO); the tests and
``notebooks/02_autograd_verification.ipynb`` check every one against autograd in float64.
Signs: for positives the loss *decreases* with s (gradient descent raises s), for negatives
it increases (descent lowers s).
"""

from __future__ import annotations

import torch

from .objectives import _check_tau, check_group_inputs, clipped_surrogate, mixed_groups

__all__ = ["real_context_constants", "real_weights", "grad_weights", "grpo_weights"]


def _log_leave_one_out(values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """log(1 + sum_{j in members, j != k} e^{values_j}) for every k, as ``[G, n]``.

    Vectorised leave-one-out logsumexp over an ``[G, n, n]`` table (fine for n <= a few hundred).
    """
    G, n = values.shape
    eye = torch.eye(n, dtype=torch.bool)  # [n, n]
    include = members[:, None, :] & ~eye  # [G, k, j]: j counts for k
    table = torch.where(include, values[:, None, :].expand(G, n, n), torch.tensor(float("-inf"), dtype=values.dtype))
    anchor = torch.zeros(G, n, 1, dtype=values.dtype)  # the "1 +" term
    return torch.logsumexp(torch.cat([anchor, table], -1), -1)  # [G, n]


def _log_context_constants(scores, rewards, tau):
    labels = check_group_inputs(scores, rewards)
    z = scores / _check_tau(tau)  # [G, n]
    log_c_plus = _log_leave_one_out(-z, labels)  # log C+_k = log(1 + sum_{i in O+, i!=k} e^{-z_i})
    log_c_minus = _log_leave_one_out(z, ~labels)  # log C-_k = log(1 + sum_{j in O-, j!=k} e^{z_j})
    return labels, z, log_c_plus, log_c_minus


def real_context_constants(scores: torch.Tensor, rewards: torch.Tensor, tau: float = 0.5):
    """The context constants of eq. (5), each ``[G, n]``:

        C+_k = 1 + sum_{i in O+, i != k} e^{-s_i/tau},   C-_k = 1 + sum_{j in O-, j != k} e^{s_j/tau}

    Both are returned for every k (C+ is the one that matters for positives, C- for
    negatives). They overflow to ``inf`` for extreme scores; the weights below work in log
    space and do not.

    >>> # group (+, +, -) on-policy: each positive sees one other positive, C+ = 1 + e^0 = 2;
    >>> # the negative sees no other negative, C- = 1 (the other entries are the unused constants)
    >>> cp, cm = real_context_constants(torch.zeros(1, 3), torch.tensor([[1, 1, 0]]))
    >>> cp, cm
    (tensor([[2., 2., 3.]]), tensor([[2., 2., 1.]]))
    """
    _, _, log_c_plus, log_c_minus = _log_context_constants(scores, rewards, tau)
    return log_c_plus.exp(), log_c_minus.exp()


def real_weights(scores: torch.Tensor, rewards: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Eq. (5): |dL_REAL,g / ds_k| per rollout, ``[G, n]``; 0 in one-label groups.

        positives: (1/tau) / (1 + C+ e^{s_k/tau}) = (1/tau) sigmoid(-(s_k/tau + log C+))
        negatives: (1/tau) / (1 + C- e^{-s_k/tau}) = (1/tau) sigmoid(s_k/tau - log C-)

    >>> # on-policy, 2 positives + 1 negative, tau = .5: positives 2/(1+2), negative 2/(1+1)
    >>> real_weights(torch.zeros(1, 3), torch.tensor([[1, 1, 0]]), tau=0.5)
    tensor([[0.6667, 0.6667, 1.0000]])
    """
    labels, z, log_c_plus, log_c_minus = _log_context_constants(scores, rewards, tau)
    pos = torch.sigmoid(-(z + log_c_plus))  # [G, n]
    neg = torch.sigmoid(z - log_c_minus)  # [G, n]
    w = torch.where(labels, pos, neg) / tau
    return torch.where(mixed_groups(labels)[:, None], w, torch.zeros_like(w))


def grad_weights(scores: torch.Tensor, rewards: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Eq. (6): |d BCE(s_k/tau, r_k) / ds_k| per rollout before averaging, ``[G, n]``.

    (1/tau) sigmoid(-s_k/tau) for positives, (1/tau) sigmoid(s_k/tau) for negatives -- eq. (5)
    with C+ = C- = 1. 0 in one-label groups.

    >>> grad_weights(torch.zeros(1, 2), torch.tensor([[1, 0]]), tau=0.5)  # 2 * 1/2
    tensor([[1., 1.]])
    """
    labels = check_group_inputs(scores, rewards)
    z = scores / _check_tau(tau)
    w = torch.sigmoid(torch.where(labels, -z, z)) / tau  # [G, n]
    return torch.where(mixed_groups(labels)[:, None], w, torch.zeros_like(w))


def grpo_weights(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2, cut: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. (2): |W_GRPO| = |A_i| e^{s_t} where the unclipped branch is active, else 0.

    ``log_ratio`` is ``[B, T]`` (or any shape whose first dim is B); ``advantages`` is ``[B]``,
    broadcast over tokens. Unbounded for negatives as s grows (gradient domination).
    ``cut``: the clip mask of these tokens when the caller has it already (``grpo_loss(...,
    return_cut=True)``); otherwise it is computed here.

    >>> grpo_weights(torch.tensor([[0.0, 1.0]]), torch.tensor([-2.0]))  # 2*e^0, 2*e^1
    tensor([[2.0000, 5.4366]])
    >>> grpo_weights(torch.tensor([[0.0, 1.0]]), torch.tensor([2.0]))  # e^1 > 1.2: clipped
    tensor([[2., 0.]])
    """
    adv = advantages.to(log_ratio.dtype).reshape(-1, *([1] * (log_ratio.dim() - 1)))  # [B, 1...]
    if cut is None:
        _, cut = clipped_surrogate(log_ratio, adv, clip_eps, clip_eps)
    w = adv.abs() * torch.exp(log_ratio)
    return torch.where(cut | (adv == 0), torch.zeros_like(w), w)  # A = 0: weight 0, not 0 * inf = nan
