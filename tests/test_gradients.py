"""Closed-form gradient weights (eqs. 2, 5, 6) against autograd in float64, the chain rule
through the length normalisation of eq. (3), textbook reference implementations of every
loss, and the paper's qualitative claims about the weights (bounds, monotonicity, clip).

Sign convention: ``*_weights`` are magnitudes. Gradient descent raises positives' scores,
so dL/ds = -w for positives and +w for negatives.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from rewards_as_labels.gradients import grad_weights, grpo_weights, real_context_constants, real_weights
from rewards_as_labels.objectives import (
    dapo_loss,
    grad_loss,
    group_advantages,
    grpo_loss,
    gspo_loss,
    kl_penalty,
    real_loss,
    sequence_scores,
)
from rewards_as_labels.toy import ragged_logprobs

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
SEEDS = [0, 1, 2]
TAUS = [0.05, 0.5, 5.0]


def random_batch(G=6, n=5, T=9, seed=0, scale=0.3):
    """Ragged float64 token batch (``toy.ragged_logprobs``, scores ~ N(0, scale^2)) with label patterns:
    group 0 all-correct, 1 all-wrong, 2 a single positive, 3 a single negative, the rest random-but-mixed.
    Padding holds nan/-inf."""
    g = torch.Generator().manual_seed(seed)
    B = G * n
    rewards = (torch.rand(G, n, generator=g) < 0.5).to(F64)  # [G, n]
    rewards[4:, 0], rewards[4:, 1] = 1.0, 0.0
    rewards[0], rewards[1] = 1.0, 0.0
    rewards[2], rewards[2, 0] = 0.0, 1.0
    rewards[3], rewards[3, 0] = 1.0, 0.0
    new, old, mask = ragged_logprobs(
        scale * torch.randn(B, generator=g, dtype=F64), torch.full((B,), scale, dtype=F64), T, g
    )
    return new.requires_grad_(), old, mask, rewards


def chain(d_scores, mask):
    """Eq. (3)'s chain rule: dL/dlogp_t = dL/ds_i * mask_t / |o_i|, ``[B, T]``."""
    mask = mask.to(F64)
    return d_scores.reshape(-1, 1) * mask / mask.sum(-1, keepdim=True)


def signed(weights, rewards):
    """dL/ds from a magnitude: -w for positives, +w for negatives."""
    return torch.where(rewards.bool(), -weights, weights)


# ============================================================================ REAL, eqs. (3)-(5)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", TAUS)
def test_real_loss_autograd_matches_eq5(seed, tau):
    lp, old, mask, rewards = random_batch(seed=seed)
    G, n = rewards.shape
    scores = sequence_scores(lp, old, mask).view(G, n)
    scores.retain_grad()
    real_loss(scores, rewards, tau).backward()
    # batch loss = sum of groups / G  ->  dL/ds * G = -/+ |W_REAL|
    assert_close(scores.grad * G, signed(real_weights(scores.detach(), rewards, tau), rewards), **TIGHT)
    assert_close(lp.grad, chain(scores.grad, mask), **TIGHT)
    assert (lp.grad[~mask] == 0).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", TAUS)
def test_real_weights_match_eq5_written_out(seed, tau):
    # eq. (5) literally, with C+/C- built by a python loop over the group
    _, _, _, rewards = random_batch(seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    scores = torch.randn(rewards.shape, generator=g, dtype=F64) * 2 * tau
    want = torch.zeros_like(scores)
    c_plus_want, c_minus_want = torch.zeros_like(scores), torch.zeros_like(scores)
    for gi in range(scores.shape[0]):
        z, lab = (scores[gi] / tau).tolist(), rewards[gi].bool().tolist()
        for k in range(len(z)):
            c_plus = 1 + sum(math.exp(-z[i]) for i in range(len(z)) if lab[i] and i != k)
            c_minus = 1 + sum(math.exp(z[j]) for j in range(len(z)) if not lab[j] and j != k)
            c_plus_want[gi, k], c_minus_want[gi, k] = c_plus, c_minus
            if all(lab) or not any(lab):
                continue
            if lab[k]:
                want[gi, k] = (1 / tau) / (1 + c_plus * math.exp(z[k]))
            else:
                want[gi, k] = (1 / tau) / (1 + c_minus * math.exp(-z[k]))
    assert_close(real_weights(scores, rewards, tau), want, **TIGHT)
    c_plus, c_minus = real_context_constants(scores, rewards, tau)
    assert_close(c_plus, c_plus_want, **TIGHT)
    assert_close(c_minus, c_minus_want, **TIGHT)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", TAUS)
def test_real_loss_matches_eq4_written_out(seed, tau):
    _, _, _, rewards = random_batch(seed=seed)
    g = torch.Generator().manual_seed(200 + seed)
    scores = torch.randn(rewards.shape, generator=g, dtype=F64) * tau
    total = 0.0
    for s, r in zip(scores.tolist(), rewards.bool().tolist()):
        if all(r) or not any(r):
            continue
        total += math.log(1 + sum(math.exp(-si / tau) for si, ri in zip(s, r) if ri))
        total += math.log(1 + sum(math.exp(sj / tau) for sj, rj in zip(s, r) if not rj))
    assert_close(real_loss(scores, rewards, tau), torch.tensor(total / scores.shape[0], dtype=F64), **TIGHT)


# ============================================================================ GRAD, eq. (6)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", TAUS)
def test_grad_loss_autograd_matches_eq6(seed, tau):
    lp, old, mask, rewards = random_batch(seed=seed)
    G, n = rewards.shape
    scores = sequence_scores(lp, old, mask).view(G, n)
    scores.retain_grad()
    grad_loss(scores, rewards, tau).backward()
    mixed = rewards.bool().any(-1) & ~rewards.bool().all(-1)  # [G]
    n_mixed = int(mixed.sum()) * n  # rollouts in mixed groups
    assert_close(scores.grad * n_mixed, signed(grad_weights(scores.detach(), rewards, tau), rewards), **TIGHT)
    assert_close(lp.grad, chain(scores.grad, mask), **TIGHT)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tau", TAUS)
def test_grad_loss_matches_bce_written_out(seed, tau):
    _, _, _, rewards = random_batch(seed=seed)
    g = torch.Generator().manual_seed(300 + seed)
    scores = torch.randn(rewards.shape, generator=g, dtype=F64) * tau
    terms = []
    for s, r in zip(scores.tolist(), rewards.bool().tolist()):
        if all(r) or not any(r):
            continue
        # BCE(z, 1) = log(1 + e^{-z}), BCE(z, 0) = log(1 + e^{z})
        terms += [math.log1p(math.exp(-si / tau)) if ri else math.log1p(math.exp(si / tau)) for si, ri in zip(s, r)]
    assert_close(grad_loss(scores, rewards, tau), torch.tensor(sum(terms) / len(terms), dtype=F64), **TIGHT)


# ============================================================================ GRPO / DAPO / GSPO, eq. (1)-(2)
def textbook_surrogate(log_ratio, adv, eps_low, eps_high):
    """min(rho A, clip(rho, 1-eps_low, 1+eps_high) A), literally (finite inputs only)."""
    rho = log_ratio.exp()
    return torch.minimum(rho * adv, rho.clamp(1 - eps_low, 1 + eps_high) * adv)


def ppo_batch(seed, scale=0.3):
    lp, old, mask, rewards = random_batch(seed=seed, scale=scale)
    adv = group_advantages(rewards).flatten()  # [B]
    log_ratio = torch.where(mask, lp.detach() - old, torch.zeros((), dtype=F64))  # [B, T], 0 on pad
    return lp, old, mask, adv, log_ratio


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip_eps", [0.1, 0.2])
def test_grpo_loss_autograd_matches_eq2(seed, clip_eps):
    lp, old, mask, adv, log_ratio = ppo_batch(seed)
    B = lp.shape[0]
    grpo_loss(lp, old, adv, mask, clip_eps).backward()
    lengths = mask.sum(-1, keepdim=True).to(F64)  # [B, 1]
    want = -torch.sign(adv)[:, None] * grpo_weights(log_ratio, adv, clip_eps)  # [B, T]
    assert_close((lp.grad * lengths * B)[mask], want[mask], **TIGHT)
    assert (lp.grad[~mask] == 0).all()
    # the batch does exercise both branches
    cut = (lp.grad == 0) & mask & (adv[:, None] != 0)
    assert cut.any() and ((lp.grad != 0) & mask).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_loss_matches_eq1_written_out(seed):
    lp, old, mask, adv, log_ratio = ppo_batch(seed)
    obj = torch.where(mask, textbook_surrogate(log_ratio, adv[:, None], 0.2, 0.2), torch.zeros((), dtype=F64))
    want = -(obj.sum(-1) / mask.sum(-1)).mean()
    assert_close(grpo_loss(lp, old, adv, mask), want, **TIGHT)


@pytest.mark.parametrize("seed", SEEDS)
def test_dapo_loss_autograd_and_value(seed):
    lp, old, mask, adv, log_ratio = ppo_batch(seed)
    loss = dapo_loss(lp, old, adv, mask)  # clip_low .2, clip_high .28
    n_tokens = mask.sum()
    obj = torch.where(mask, textbook_surrogate(log_ratio, adv[:, None], 0.2, 0.28), torch.zeros((), dtype=F64))
    assert_close(loss, -obj.sum() / n_tokens, **TIGHT)
    loss.backward()
    a = adv[:, None].expand_as(log_ratio)
    cut = ((a > 0) & (log_ratio.exp() > 1.28)) | ((a < 0) & (log_ratio.exp() < 0.8))  # asymmetric clip
    want = torch.where(mask & ~cut, -a * log_ratio.exp() / n_tokens, torch.zeros((), dtype=F64))
    assert_close(lp.grad, want, **TIGHT)
    assert (cut & mask).any() and (~cut & mask & (a != 0)).any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("clip", [(3e-4, 4e-4), (0.2, 0.2)], ids=["paper-clip", "wide-clip"])
def test_gspo_loss_autograd_through_sequence_ratio(seed, clip):
    lo, hi = clip
    # scale so that the paper's tiny clip leaves some sequences unclipped
    lp, old, mask, adv, log_ratio = ppo_batch(seed, scale=3e-4 if lo < 1e-3 else 0.3)
    B = lp.shape[0]
    loss = gspo_loss(lp, old, adv, mask, lo, hi)
    s = sequence_scores(lp.detach(), old, mask)  # [B], eq. (3)
    assert_close(loss, -textbook_surrogate(s, adv, lo, hi).mean(), **TIGHT)
    loss.backward()
    rho = s.exp()
    cut = ((adv > 0) & (rho > 1 + hi)) | ((adv < 0) & (rho < 1 - lo))  # [B]
    d_scores = torch.where(cut, torch.zeros((), dtype=F64), -adv * rho / B)  # dL/ds_i
    assert_close(lp.grad, chain(d_scores, mask), **TIGHT)
    assert ((~cut) & (adv != 0)).any(), "no unclipped sequence: the test would be vacuous"


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_penalty_autograd(seed):
    lp, ref, mask, _ = random_batch(seed=seed)
    B = lp.shape[0]
    kl_penalty(lp, ref, mask).backward()
    delta = torch.where(mask, ref - lp.detach(), torch.zeros((), dtype=F64))
    # d/dlogp (e^{d} - d - 1) with d = ref - logp: 1 - e^{d}; token mean then batch mean
    want = torch.where(mask, (1 - delta.exp()), torch.zeros((), dtype=F64)) / mask.sum(-1, keepdim=True) / B
    assert_close(lp.grad, want, **TIGHT)


# ============================================================================ properties of the weights
@pytest.mark.parametrize("tau", [0.05, 0.3, 1.0, 5.0])
@pytest.mark.parametrize("fn", [real_weights, grad_weights], ids=["real", "grad"])
def test_weights_bounded_by_inverse_tau(fn, tau):
    g = torch.Generator().manual_seed(7)
    rewards = (torch.rand(50, 8, generator=g) < 0.5).to(F64)
    z = torch.randn(50, 8, generator=g, dtype=F64) * torch.logspace(-2, 3, 50, dtype=F64)[:, None]
    w = fn(z * tau, rewards, tau)
    assert torch.isfinite(w).all()
    assert (w >= 0).all() and (w <= 1 / tau).all()
    assert w.max() > 0.99 / tau  # the bound is attained (wrong-side extremes), so it is tight


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("fn", [real_weights, grad_weights], ids=["real", "grad"])
@pytest.mark.parametrize("k", [0, 2], ids=["positive", "negative"])
def test_weights_monotonic_in_own_score(fn, tau, k):
    # vary s_k over a grid, others fixed: positive weights fall, negative weights rise
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=F64).expand(201, 4)
    scores = torch.tensor([0.2, -0.1, 0.3, -0.4], dtype=F64).repeat(201, 1)  # [201, 4]
    scores[:, k] = torch.linspace(-4 * tau, 4 * tau, 201, dtype=F64)
    w = fn(scores, rewards, tau)[:, k]
    steps = w.diff()
    if k == 0:
        assert (steps < 0).all()
    else:
        assert (steps > 0).all()


@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
def test_grad_weights_are_real_formula_with_unit_context(tau):
    g = torch.Generator().manual_seed(9)
    rewards = (torch.rand(10, 6, generator=g) < 0.5).to(F64)
    rewards[:, 0], rewards[:, 1] = 1.0, 0.0
    z = torch.randn(10, 6, generator=g, dtype=F64) * 3
    # eq. (5) with C+ = C- = 1
    want = torch.where(rewards.bool(), (1 / tau) / (1 + z.exp()), (1 / tau) / (1 + (-z).exp()))
    assert_close(grad_weights(z * tau, rewards, tau), want, **TIGHT)
    # ...and REAL with more than one rollout per label differs from it (the context matters)
    assert not torch.allclose(real_weights(z * tau, rewards, tau), want)


@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("n_pos", [1, 2, 5, 7])
def test_on_policy_real_weights(tau, n_pos):
    # all s = 0: every positive gets (1/tau)/(1 + |O+|), every negative (1/tau)/(1 + |O-|)
    n = 8
    rewards = torch.tensor([[1.0] * n_pos + [0.0] * (n - n_pos)], dtype=F64)
    w = real_weights(torch.zeros(1, n, dtype=F64), rewards, tau)
    assert_close(w[0, :n_pos], torch.full((n_pos,), (1 / tau) / (1 + n_pos), dtype=F64), **TIGHT)
    assert_close(w[0, n_pos:], torch.full((n - n_pos,), (1 / tau) / (1 + n - n_pos), dtype=F64), **TIGHT)


def test_grpo_negative_weights_grow_without_bound():
    # |W| = |A| e^{s} for A < 0: no clip cuts it as s grows (gradient domination)
    s = torch.tensor([[0.0, 1.0, 10.0, 100.0, 700.0]], dtype=F64)
    w = grpo_weights(s, torch.tensor([-0.5], dtype=F64))
    assert_close(w, 0.5 * s.exp(), **TIGHT)
    assert (w.diff() > 0).all()
    assert w[0, 2] > 1 / 0.05  # beyond any REAL/GRAD weight, whatever tau in [0.05, 5]
    assert w[0, -1] > 1e300


@pytest.mark.parametrize("clip_eps", [0.1, 0.2, 0.28])
@pytest.mark.parametrize("a", [1.5, -0.5])
def test_grpo_weights_zero_exactly_where_clip_cuts(clip_eps, a):
    s = torch.linspace(-1.0, 1.0, 2001, dtype=F64)[None, :]  # [1, 2001]
    adv = torch.tensor([a], dtype=F64)
    w = grpo_weights(s, adv, clip_eps)
    cut = s > math.log1p(clip_eps) if a > 0 else s < math.log1p(-clip_eps)
    assert cut.any() and (~cut).any()
    assert (w[cut] == 0).all()
    assert_close(w[~cut], abs(a) * s[~cut].exp(), **TIGHT)
    # and autograd agrees on where the gradient vanishes
    lp = s.clone().requires_grad_()
    grpo_loss(lp, torch.zeros_like(s), adv, torch.ones_like(s), clip_eps).backward()
    assert torch.equal(lp.grad == 0, cut)


def test_grpo_positive_misassignment():
    # A > 0: an unlikely token (s << 0) gets a tiny weight, the REAL weight of the same score is ~1/tau
    s = torch.tensor([[-5.0, 0.0, 0.15]], dtype=F64)
    w = grpo_weights(s, torch.tensor([1.0], dtype=F64))
    assert_close(w, s.exp(), **TIGHT)
    assert w[0, 0] < 0.01
    real = real_weights(torch.tensor([[-5.0, 0.0]], dtype=F64), torch.tensor([[1.0, 0.0]], dtype=F64), 0.5)
    assert real[0, 0] > 0.99 * 2


def test_grpo_weights_zero_advantage_is_zero_even_for_huge_ratio():
    w = grpo_weights(torch.tensor([[1e4, 0.0, -1e4]], dtype=F64), torch.tensor([0.0], dtype=F64))
    assert torch.equal(w, torch.zeros_like(w))
