"""Random toy token batches for the verification notebook and the tests (nothing here trains).

One builder, :func:`ragged_logprobs`: token log-probabilities of the sampling policy and of the
trained policy for B rollouts of ragged lengths, whose eq. (3) score ``s_i`` is chosen by the
caller, with garbage in the padding (nan, -inf) that every loss must ignore.
"""

from __future__ import annotations

import torch

__all__ = ["ragged_logprobs"]


def ragged_logprobs(
    target: torch.Tensor, spread: torch.Tensor, T: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logprobs, old_logprobs, mask)``, ``[B, T]`` each, for B = ``len(target)`` rollouts.

    Lengths are uniform in 1..T (``mask``); old log-probs uniform in (-8, 0); the new ones are
    ``old + target_i + noise`` with per-rollout noise of standard deviation ``spread_i`` centred
    to a masked mean of 0, so that eq. (3) gives ``s_i = target_i`` exactly (up to round-off).
    Padding holds nan (new) and -inf (old). Drawn in float64 from ``generator``, then cast to ``dtype``.

    >>> g = torch.Generator().manual_seed(0)
    >>> scores = torch.tensor([0.5, -1.0], dtype=torch.float64)
    >>> new, old, mask = ragged_logprobs(scores, torch.ones(2, dtype=torch.float64), 4, g)
    >>> from rewards_as_labels.objectives import sequence_scores
    >>> sequence_scores(new, old, mask).round(decimals=6), bool(new[~mask].isnan().all())
    (tensor([ 0.5000, -1.0000], dtype=torch.float64), True)
    """
    B = target.shape[0]
    lengths = torch.randint(1, T + 1, (B,), generator=generator)  # [B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    old = -8 * torch.rand(B, T, generator=generator, dtype=torch.float64)  # [B, T]
    noise = spread[:, None] * torch.randn(B, T, generator=generator, dtype=torch.float64)  # [B, T]
    noise = torch.where(mask, noise - (noise * mask).sum(-1, keepdim=True) / lengths[:, None], 0.0)  # masked mean 0
    new = old + target[:, None] + noise  # [B, T]
    new = torch.where(mask, new, float("nan")).to(dtype)  # padding garbage the losses must ignore
    old = torch.where(mask, old, float("-inf")).to(dtype)
    return new, old, mask
