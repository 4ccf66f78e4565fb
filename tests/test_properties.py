"""Hypothesis properties of REAL and GRAD over random groups: any group count G in 1..6,
group size n in 2..16, any label pattern (one-label groups included), tau in [0.05, 5] and
scores up to |s/tau| = 1e3. Losses and gradients stay finite, weights stay in [0, 1/tau],
and the closed forms (eqs. 5, 6) equal autograd in float64.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from rewards_as_labels.gradients import grad_weights, real_weights
from rewards_as_labels.objectives import grad_loss, real_loss, sequence_scores

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
# derandomize: the same examples on every run, so CI cannot flake; database off for the same reason
PROFILE = settings(max_examples=50, deadline=None, derandomize=True, database=None)

LOSSES = {"real": (real_loss, real_weights), "grad": (grad_loss, grad_weights)}
logits = st.one_of(  # z = s / tau: mostly moderate, with the extremes and exact zeros over-weighted
    st.floats(-8.0, 8.0),
    st.floats(-1e3, 1e3),
    st.sampled_from([0.0, 1e3, -1e3, 700.0, -700.0, 40.0, -40.0]),
)


def label_row(n):
    pattern = st.sampled_from(["all-correct", "all-wrong", "one-positive", "one-negative", "random"])
    return pattern.flatmap(
        lambda p: (
            st.just([True] * n)
            if p == "all-correct"
            else st.just([False] * n)
            if p == "all-wrong"
            else st.permutations([True] + [False] * (n - 1))
            if p == "one-positive"
            else st.permutations([False] + [True] * (n - 1))
            if p == "one-negative"
            else st.lists(st.booleans(), min_size=n, max_size=n)
        )
    )


@st.composite
def groups(draw):
    """(scores [G, n] float64, rewards [G, n] float64, tau)."""
    G = draw(st.integers(1, 6))
    n = draw(st.integers(2, 16))
    tau = draw(st.floats(0.05, 5.0))
    labels = [draw(label_row(n)) for _ in range(G)]
    z = draw(st.lists(st.lists(logits, min_size=n, max_size=n), min_size=G, max_size=G))
    scores = torch.tensor(z, dtype=F64) * tau
    return scores, torch.tensor(labels, dtype=F64), tau


def mixed_rollouts(rewards):
    labels = rewards.bool()
    return int((labels.any(-1) & (~labels).any(-1)).sum()) * rewards.shape[1]


@pytest.mark.parametrize("method", list(LOSSES))
@PROFILE
@given(batch=groups())
def test_finite_loss_and_gradients(method, batch):
    scores, rewards, tau = batch
    loss_fn, weight_fn = LOSSES[method]
    scores = scores.clone().requires_grad_()
    loss = loss_fn(scores, rewards, tau)
    loss.backward()
    assert torch.isfinite(loss) and loss >= 0
    assert scores.grad is not None and torch.isfinite(scores.grad).all()
    w = weight_fn(scores.detach(), rewards, tau)
    assert torch.isfinite(w).all()
    assert (w >= 0).all() and (w <= 1 / tau).all()


@pytest.mark.parametrize("method", list(LOSSES))
@PROFILE
@given(batch=groups())
def test_closed_form_equals_autograd(method, batch):
    scores, rewards, tau = batch
    event(f"max |s/tau| >= 700: {bool((scores / tau).abs().max() >= 700)}")  # --hypothesis-show-statistics
    event(f"has a mixed group: {mixed_rollouts(rewards) > 0}")
    loss_fn, weight_fn = LOSSES[method]
    scores = scores.clone().requires_grad_()
    loss_fn(scores, rewards, tau).backward()
    # REAL divides by all groups G; GRAD by the rollouts of mixed groups (1 if none)
    norm = scores.shape[0] if method == "real" else max(mixed_rollouts(rewards), 1)
    w = weight_fn(scores.detach(), rewards, tau)
    assert_close(scores.grad * norm, torch.where(rewards.bool(), -w, w), **TIGHT)


@pytest.mark.parametrize("method", list(LOSSES))
@PROFILE
@given(batch=groups(), data=st.data())
def test_closed_form_through_token_logprobs(method, batch, data):
    # token log-probs with ragged lengths whose mean log-ratio is the drawn score:
    # the chain dL/dlogp_t = dL/ds_i * mask_t / |o_i| must hold exactly
    scores, rewards, tau = batch
    G, n = rewards.shape
    T = 6
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, T), min_size=G * n, max_size=G * n)))  # [B]
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    old = torch.where(mask, torch.full((G * n, T), -1.0, dtype=F64), torch.tensor(float("nan"), dtype=F64))
    lp = torch.where(mask, old + scores.reshape(-1, 1), torch.tensor(float("-inf"), dtype=F64)).requires_grad_()
    s = sequence_scores(lp, old, mask).view(G, n)
    assert_close(s, scores, rtol=1e-12, atol=1e-12 * tau)
    loss_fn, weight_fn = LOSSES[method]
    loss_fn(s, rewards, tau).backward()
    norm = G if method == "real" else max(mixed_rollouts(rewards), 1)
    w = weight_fn(s.detach(), rewards, tau)
    d_scores = torch.where(rewards.bool(), -w, w).reshape(-1, 1) / norm  # [B, 1]
    assert torch.isfinite(lp.grad).all()
    assert_close(lp.grad, d_scores * mask / lengths[:, None], **TIGHT)


@PROFILE
@given(batch=groups())
def test_grad_is_real_with_unit_context_and_real_never_exceeds_it(batch):
    # C+ >= 1 and C- >= 1, so REAL's weight is at most GRAD's; equal for a lone positive/negative
    scores, rewards, tau = batch
    w_real, w_grad = real_weights(scores, rewards, tau), grad_weights(scores, rewards, tau)
    assert (w_real <= w_grad * (1 + 1e-12) + 1e-300).all()
    labels = rewards.bool()
    lone = torch.where(labels, labels.sum(-1, keepdim=True) == 1, (~labels).sum(-1, keepdim=True) == 1)
    assert_close(w_real[lone], w_grad[lone], **TIGHT)
