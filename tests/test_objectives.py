"""Values of the objectives in ``rewards_as_labels.objectives``: hand-computed cases, edge
cases parametrised over methods, and the error raised by every bad input.

Closed-form gradients against autograd live in ``test_gradients.py``; hypothesis
properties in ``test_properties.py``. Everything runs in float64 unless a test says otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from rewards_as_labels.config import METHODS, Config
from rewards_as_labels.gradients import grad_weights, real_context_constants, real_weights
from rewards_as_labels.methods import MiniBatch, policy_loss
from rewards_as_labels.objectives import (
    clipped_surrogate,
    dapo_loss,
    grad_loss,
    group_advantages,
    grpo_loss,
    gspo_loss,
    kl_penalty,
    mixed_groups,
    real_loss,
    sequence_scores,
)
from rewards_as_labels.toy import ragged_logprobs

F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
LOG = math.log
PPO_LOSSES = {"grpo": grpo_loss, "dapo": dapo_loss, "gspo": gspo_loss}


def t(x, dtype=F64, **kw):
    return torch.tensor(x, dtype=dtype, **kw)


def method_loss(method, logprobs, old_logprobs, mask, rewards, tau=0.5):
    """The trainer's loss of a batch for ``method`` (``methods.policy_loss``, default clip ranges)."""
    advantages = group_advantages(rewards.to(logprobs.dtype)).flatten()  # [B]
    loss, _ = policy_loss(Config(tau=tau), MiniBatch(logprobs, old_logprobs, mask, rewards, advantages), method)
    return loss


def token_batch(rewards, T=5, seed=0, scale=0.3, dtype=F64):
    """Random ragged token batch for ``rewards`` [G, n] (``toy.ragged_logprobs``): scores ~ N(0, scale^2)."""
    g = torch.Generator().manual_seed(seed)
    B = rewards.numel()
    new, old, mask = ragged_logprobs(
        scale * torch.randn(B, generator=g, dtype=F64), torch.full((B,), scale, dtype=F64), T, g, dtype
    )
    return new.requires_grad_(), old, mask


# ============================================================================ hand-computed values
def test_sequence_scores_hand():
    # row 0: ratios (-1 - -1.5, -2 - -2.5, 0 - -1) = (.5, .5, 1) over |o| = 3 -> 2/3; the pad holds nan
    # row 1: one token, -0.2 - 0 = -0.2
    lp = t([[-1.0, -2.0, 0.0, float("nan")], [-0.2, 7.0, 7.0, 7.0]])
    old = t([[-1.5, -2.5, -1.0, float("-inf")], [0.0, float("inf"), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    assert_close(sequence_scores(lp, old, mask), t([2 / 3, -0.2]), **TIGHT)


def test_real_loss_hand_on_policy_plus_plus_minus():
    # one group (+, +, -), all s = 0, tau = .5:
    #   log(1 + e^0 + e^0) + log(1 + e^0) = log 3 + log 2; G = 1
    assert_close(real_loss(torch.zeros(1, 3, dtype=F64), t([[1, 1, 0]]), 0.5), t(LOG(3) + LOG(2)), **TIGHT)
    # add an all-correct group: it contributes 0 but still counts in G = 2
    scores = torch.zeros(2, 3, dtype=F64)
    assert_close(real_loss(scores, t([[1, 1, 0], [1, 1, 1]]), 0.5), t((LOG(3) + LOG(2)) / 2), **TIGHT)


def test_real_loss_hand_off_policy():
    # group (+, -, -), s = (.5, -.5, .5), tau = .5 -> z = (1, -1, 1)
    #   positive term log(1 + e^{-1}); negative term log(1 + e^{-1} + e^{1})
    got = real_loss(t([[0.5, -0.5, 0.5]]), t([[1, 0, 0]]), 0.5)
    assert_close(got, t(LOG(1 + math.exp(-1)) + LOG(1 + math.exp(-1) + math.exp(1))), **TIGHT)
    # tau = 2 -> z = (.25, -.25, .25)
    got = real_loss(t([[0.5, -0.5, 0.5]]), t([[1, 0, 0]]), 2.0)
    assert_close(got, t(LOG(1 + math.exp(-0.25)) + LOG(1 + math.exp(-0.25) + math.exp(0.25))), **TIGHT)


def test_real_weights_hand_on_policy():
    # (+, +, -) on-policy, tau = .5: C+ = 1 + e^0 = 2 for each positive -> (1/.5) / (1 + 2) = 2/3;
    # the negative has C- = 1 -> (1/.5) / (1 + 1) = 1
    assert_close(real_weights(torch.zeros(1, 3, dtype=F64), t([[1, 1, 0]]), 0.5), t([[2 / 3, 2 / 3, 1.0]]), **TIGHT)
    c_plus, c_minus = real_context_constants(torch.zeros(1, 3, dtype=F64), t([[1, 1, 0]]), 0.5)
    assert_close(c_plus[0, :2], t([2.0, 2.0]), **TIGHT)
    assert_close(c_minus[0, 2], t(1.0), **TIGHT)


def test_real_weights_hand_off_policy():
    # (+, +, -), s = (.5, 0, .25), tau = .5 -> z = (1, 0, .5)
    #   k=0: C+ = 1 + e^{-0}  = 2           -> 2 / (1 + 2 e^{1})
    #   k=1: C+ = 1 + e^{-1}                -> 2 / (1 + (1 + e^{-1}) e^{0})
    #   k=2: C- = 1 (no other negative)     -> 2 / (1 + e^{-.5})
    e = math.exp
    want = t([[2 / (1 + 2 * e(1)), 2 / (2 + e(-1)), 2 / (1 + e(-0.5))]])
    assert_close(real_weights(t([[0.5, 0.0, 0.25]]), t([[1, 1, 0]]), 0.5), want, **TIGHT)
    c_plus, c_minus = real_context_constants(t([[0.5, 0.0, 0.25]]), t([[1, 1, 0]]), 0.5)
    assert_close(c_plus[0, :2], t([2.0, 1 + e(-1)]), **TIGHT)
    assert_close(c_minus[0, 2], t(1.0), **TIGHT)


def test_grad_loss_hand():
    # on-policy: BCE at logit 0 is log 2 for every rollout of a mixed group
    assert_close(grad_loss(torch.zeros(1, 3, dtype=F64), t([[1, 1, 0]]), 0.5), t(LOG(2)), **TIGHT)
    # an all-wrong group neither adds a term nor counts in the mean
    assert_close(grad_loss(torch.zeros(2, 3, dtype=F64), t([[1, 1, 0], [0, 0, 0]]), 0.5), t(LOG(2)), **TIGHT)
    # s = (.5, -.5), labels (+, -), tau = .5 -> z = (1, -1):
    #   positive log(1 + e^{-1}), negative log(1 + e^{-1}); mean log(1 + e^{-1})
    assert_close(grad_loss(t([[0.5, -0.5]]), t([[1, 0]]), 0.5), t(LOG(1 + math.exp(-1))), **TIGHT)
    # unequal terms: z = (2, 1) -> (log(1 + e^{-2}) + log(1 + e^{1})) / 2
    got = grad_loss(t([[1.0, 0.5]]), t([[1, 0]]), 0.5)
    assert_close(got, t((LOG(1 + math.exp(-2)) + LOG(1 + math.exp(1))) / 2), **TIGHT)


def test_grad_weights_hand():
    # on-policy: (1/.5) sigmoid(0) = 1 for every rollout; z = (1, 1) -> 2 sigmoid(-1), 2 sigmoid(1)
    assert_close(grad_weights(torch.zeros(1, 2, dtype=F64), t([[1, 0]]), 0.5), t([[1.0, 1.0]]), **TIGHT)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert_close(grad_weights(t([[0.5, 0.5]]), t([[1, 0]]), 0.5), t([[2 * sig(-1), 2 * sig(1)]]), **TIGHT)


def test_group_advantages_hand():
    # [1, 0, 0, 0]: mean .25, unbiased std sqrt((.75^2 + 3 * .25^2) / 3) = sqrt(.25) = .5
    #   -> (.75, -.25, -.25, -.25) / .5 = (1.5, -.5, -.5, -.5)
    assert_close(group_advantages(t([[1.0, 0, 0, 0]]), eps=0.0), t([[1.5, -0.5, -0.5, -0.5]]), **TIGHT)
    # the default eps = 1e-6 sits in the denominator
    assert_close(group_advantages(t([[1.0, 0, 0, 0]])), t([[0.75, -0.25, -0.25, -0.25]]) / (0.5 + 1e-6), **TIGHT)
    # [1, 1, 0, 0]: mean .5, unbiased std sqrt(4 * .25 / 3) = 1/sqrt(3) -> +-sqrt(3)/2
    h = math.sqrt(3) / 2
    assert_close(group_advantages(t([[1.0, 1, 0, 0]]), eps=0.0), t([[h, h, -h, -h]]), **TIGHT)
    # one-label groups: std 0 -> advantage exactly 0 (no nan thanks to eps)
    assert_close(group_advantages(t([[1.0, 1, 1], [0, 0, 0]])), torch.zeros(2, 3, dtype=F64), rtol=0, atol=0)


def test_grpo_clipped_tokens_hand():
    # clip eps .2; one positive (A = +1) and one negative (A = -1) rollout, two tokens each
    #   A=+1: rho 1.5 > 1.2 -> clipped, objective 1.2 (no gradient); rho .5 -> unclipped, .5
    #         sequence mean (1.2 + .5)/2 = .85
    #   A=-1: rho .5 < .8 -> clipped, objective -.8 (no gradient); rho 1.5 -> unclipped, -1.5
    #         sequence mean (-.8 - 1.5)/2 = -1.15
    #   loss = -mean(.85, -1.15) = .15
    lp = t([[LOG(1.5), LOG(0.5)], [LOG(0.5), LOG(1.5)]], requires_grad=True)
    old = torch.zeros(2, 2, dtype=F64)
    loss = grpo_loss(lp, old, t([1.0, -1.0]), torch.ones(2, 2), clip_eps=0.2)
    assert_close(loss, t(0.15), **TIGHT)
    loss.backward()
    # d loss/d lp_t = -A rho_t / (|o_i| B) on unclipped tokens: -(.5)/4 and +(1.5)/4
    assert_close(lp.grad, t([[0.0, -0.125], [0.0, 0.375]]), **TIGHT)
    _, cut = clipped_surrogate(lp.detach(), t([[1.0], [-1.0]]), 0.2, 0.2)
    assert cut.tolist() == [[True, False], [True, False]]


def test_dapo_asymmetric_clip_hand():
    # clip_low .2, clip_high .28: a positive token at rho 1.25 survives (GRPO's 1.2 would cut it),
    # one at rho 1.3 is cut; a negative token at rho .75 is cut (< .8), at rho 1.25 survives.
    #   objectives: A=+1: (1.25, 1.28 const); A=-1: (-.8 const, -1.25); token mean over 4 tokens
    #   loss = -(1.25 + 1.28 - .8 - 1.25)/4 = -.12
    lp = t([[LOG(1.25), LOG(1.3)], [LOG(0.75), LOG(1.25)]], requires_grad=True)
    old = torch.zeros(2, 2, dtype=F64)
    loss = dapo_loss(lp, old, t([1.0, -1.0]), torch.ones(2, 2))
    assert_close(loss, t(-0.12), **TIGHT)
    loss.backward()
    # -A rho / (total tokens = 4) on surviving tokens
    assert_close(lp.grad, t([[-1.25 / 4, 0.0], [0.0, 1.25 / 4]]), **TIGHT)
    # GRPO's symmetric clip cuts the rho = 1.25 positive token
    lp2 = lp.detach().clone().requires_grad_()
    grpo_loss(lp2, old, t([1.0, -1.0]), torch.ones(2, 2)).backward()
    assert lp2.grad[0, 0] == 0


def test_dapo_token_mean_vs_grpo_sequence_mean_hand():
    # on-policy, A = (1, -.5), lengths 3 and 1:
    #   DAPO token mean: -(3 * 1 + 1 * -.5) / 4 = -.625; GRPO sequence mean: -(1 - .5)/2 = -.25
    lp = torch.zeros(2, 3, dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = t([1.0, -0.5])
    assert_close(dapo_loss(lp, lp, adv, mask), t(-0.625), **TIGHT)
    assert_close(grpo_loss(lp, lp, adv, mask), t(-0.25), **TIGHT)


def test_gspo_hand():
    # sequence ratio e^{s_i} with s_i the length-normalised log-ratio; clip (1 - 3e-4, 1 + 4e-4)
    #   row 0, A=+1: s = (1e-4 + 3e-4)/2 = 2e-4 -> e^{2e-4} < 1.0004, unclipped
    #   row 1, A=+1: s = 1e-3 -> clipped at 1.0004 (constant)
    #   row 2, A=-1: s = -1e-3 -> clipped at .9997 -> objective -.9997
    lp = t([[1e-4, 3e-4], [1e-3, 1e-3], [-1e-3, -1e-3]], requires_grad=True)
    old = torch.zeros(3, 2, dtype=F64)
    loss = gspo_loss(lp, old, t([1.0, 1.0, -1.0]), torch.ones(3, 2))
    assert_close(loss, t(-(math.exp(2e-4) + 1.0004 - 0.9997) / 3), **TIGHT)
    loss.backward()
    # only row 0 has a gradient: -(1/B) A e^{s} * (1/|o|) per token
    row0 = -math.exp(2e-4) / 3 / 2
    assert_close(lp.grad, t([[row0, row0], [0.0, 0.0], [0.0, 0.0]]), **TIGHT)


def test_gspo_asymmetric_clip_hand():
    # clip (1 - 3e-4, 1 + 4e-4) is asymmetric: at |s| = 3.5e-4
    #   A=+1, s = +3.5e-4: rho = 1.00035 < 1.0004 -> unclipped, gradient -(1/B) e^{s} / |o|
    #   A=-1, s = -3.5e-4: rho = 0.99965 < 0.9997 -> clipped, objective -.9997, no gradient
    lp = t([[3.5e-4], [-3.5e-4]], requires_grad=True)
    loss = gspo_loss(lp, torch.zeros(2, 1, dtype=F64), t([1.0, -1.0]), torch.ones(2, 1))
    assert_close(loss, t(-(math.exp(3.5e-4) - 0.9997) / 2), **TIGHT)
    loss.backward()
    assert_close(lp.grad, t([[-math.exp(3.5e-4) / 2], [0.0]]), **TIGHT)


def test_kl_penalty_hand():
    # k3 estimator e^{d} - d - 1 with d = ref - logp, token mean per sequence, then mean:
    #   row 0: d = (log 2, 0)       -> (2 - log 2 - 1 + 0)/2 = (1 - log 2)/2
    #   row 1: d = (-log 2), 1 tok  -> .5 + log 2 - 1 = log 2 - .5  (the pad holds nan)
    lp = t([[0.0, -1.0], [0.0, float("nan")]])
    ref = t([[LOG(2), -1.0], [-LOG(2), 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    want = ((1 - LOG(2)) / 2 + (LOG(2) - 0.5)) / 2
    assert_close(kl_penalty(lp, ref, mask), t(want), **TIGHT)
    # zero exactly when the policy equals the reference, positive otherwise
    assert kl_penalty(ref, ref, torch.ones(2, 2)) == 0
    assert kl_penalty(ref + 0.1, ref, torch.ones(2, 2)) > 0


def test_mixed_groups_hand():
    labels = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 1]]).bool()
    assert mixed_groups(labels).tolist() == [False, False, True, True]


def test_clip_fraction_from_cut():
    # A>0 cut above log(1.2); A<0 cut below log(.8); A = 0 never cut
    log_ratio = t([[0.5, 0.0, -0.5], [0.5, 0.0, -0.5], [9.0, 0.0, -9.0]])
    _, cut = clipped_surrogate(log_ratio, t([[1.0], [-1.0], [0.0]]), 0.2, 0.2)
    assert cut.tolist() == [[True, False, False], [False, False, True], [False, False, False]]
    assert cut.double().mean() == 2 / 9


# ============================================================================ edge cases over methods
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("label", [0, 1], ids=["all-wrong", "all-correct"])
def test_one_label_batch_is_zero_with_graph(method, label):
    rewards = torch.full((3, 4), float(label), dtype=F64)
    lp, old, mask = token_batch(rewards, seed=label)
    loss = method_loss(method, lp, old, mask, rewards)
    assert loss.requires_grad, "a batch without signal must still be differentiable"
    assert loss.item() == 0.0
    loss.backward()
    assert lp.grad is not None
    assert torch.equal(lp.grad, torch.zeros_like(lp.grad))


@pytest.mark.parametrize("method", METHODS)
def test_one_label_groups_get_no_gradient_in_mixed_batch(method):
    # group 0 all-correct, group 1 all-wrong, group 2 mixed
    rewards = t([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1]])
    lp, old, mask = token_batch(rewards, seed=3, scale=0.05)
    loss = method_loss(method, lp, old, mask, rewards)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.equal(lp.grad[:8], torch.zeros_like(lp.grad[:8]))
    if method != "gspo":  # GSPO's (3e-4, 4e-4) clip may cut every rollout of the mixed group
        assert (lp.grad[8:][mask[8:]] != 0).any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pattern", [[1, 0, 0, 0], [1, 1, 1, 0]], ids=["single-positive", "single-negative"])
def test_single_positive_or_negative_group(method, pattern):
    rewards = t([pattern])
    lp, old, mask = token_batch(rewards, seed=5, scale=0.01)
    loss = method_loss(method, lp, old, mask, rewards)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
    # gradient descent raises the positives' log-probs and lowers the negatives'
    # (GSPO's tiny clip can cut a rollout entirely, so only require the sign where nonzero)
    direction = -lp.grad.where(mask, torch.zeros_like(lp.grad)).sum(-1)  # [B]: the descent step
    labels = rewards.flatten().bool()
    assert (direction[labels] >= 0).all() and (direction[~labels] <= 0).all()
    if method != "gspo":
        assert (direction[labels] > 0).all() and (direction[~labels] < 0).all()


def test_single_positive_real_weight_equals_grad_weight():
    # a lone positive has C+ = 1, so its REAL weight is the GRAD weight (and likewise a lone negative)
    scores = t([[0.3, -0.2, 0.7, 0.1], [0.3, -0.2, 0.7, 0.1]])
    rewards = t([[1, 0, 0, 0], [1, 1, 1, 0]])
    assert_close(real_weights(scores, rewards)[0, 0], grad_weights(scores, rewards)[0, 0], **TIGHT)
    assert_close(real_weights(scores, rewards)[1, 3], grad_weights(scores, rewards)[1, 3], **TIGHT)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("fn", [real_loss, grad_loss], ids=["real", "grad"])
def test_extreme_scores_finite_losses(fn, tau, dtype):
    # |s/tau| = 1e3 on both sides of both labels
    z = t([[1e3, -1e3, 1e3, -1e3], [1e3, -1e3, 0.0, 5.0]], dtype)
    scores = (z * tau).requires_grad_()
    rewards = t([[1, 1, 0, 0], [0, 1, 1, 0]], dtype)
    loss = fn(scores, rewards, tau)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(scores.grad).all(), scores.grad


@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
def test_extreme_scores_loss_values(tau):
    # a positive at s/tau = -1e3 and a negative at +1e3: each log-term is log(1 + e^{1e3}) ~ 1e3
    scores = t([[-1e3, 1e3]]) * tau
    rewards = t([[1, 0]])
    assert_close(real_loss(scores, rewards, tau), t(2e3), rtol=1e-12, atol=0)
    assert_close(grad_loss(scores, rewards, tau), t(1e3), rtol=1e-12, atol=0)
    # ...and their weights saturate at the bound 1/tau
    assert_close(real_weights(scores, rewards, tau), t([[1 / tau, 1 / tau]]), **TIGHT)
    assert_close(grad_weights(scores, rewards, tau), t([[1 / tau, 1 / tau]]), **TIGHT)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tau", [0.05, 0.5, 5.0])
@pytest.mark.parametrize("fn", [real_weights, grad_weights], ids=["real", "grad"])
def test_extreme_scores_finite_weights(fn, tau, dtype):
    z = t([[1e3, -1e3, 1e3, -1e3, 0.0], [1e3, 1e3, -1e3, -1e3, 1e3]], dtype)
    rewards = t([[1, 1, 0, 0, 1], [1, 1, 0, 0, 0]], dtype)
    w = fn(z * tau, rewards, tau)
    assert torch.isfinite(w).all(), w
    assert (w >= 0).all() and (w <= 1 / tau * (1 + 1e-6)).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", ["grpo", "dapo", "gspo"])
def test_ppo_family_huge_log_ratio_on_clipped_token(method, dtype):
    # A > 0 with log-ratio +1e4 and A < 0 with -1e4: both are cut by the clip, so nothing
    # may evaluate e^{1e4} on a path that reaches the loss or its gradient (no 0 * inf = nan)
    lp = t([[1e4, 0.01, 0.0], [-1e4, -0.01, 0.0]], dtype, requires_grad=True)
    old = torch.zeros(2, 3, dtype=dtype)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    loss = PPO_LOSSES[method](lp, old, t([1.0, -1.0], dtype), mask)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(lp.grad).all(), lp.grad
    if method != "gspo":  # per token: the cut token gets exactly 0, its neighbour does not
        assert lp.grad[0, 0] == 0 and lp.grad[1, 0] == 0
        assert lp.grad[0, 1] != 0 and lp.grad[1, 1] != 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0, 5.0])
@pytest.mark.parametrize("n", [2, 3, 8, 64])
def test_group_sizes_and_taus_finite(method, tau, n):
    g = torch.Generator().manual_seed(n)
    rewards = (torch.rand(3, n, generator=g) < 0.5).double()
    rewards[:, 0], rewards[:, 1] = 1.0, 0.0  # every group mixed
    lp, old, mask = token_batch(rewards, T=6, seed=n)
    loss = method_loss(method, lp, old, mask, rewards, tau)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
    assert (lp.grad[~mask] == 0).all()


@pytest.mark.parametrize("method", [*METHODS, "kl"])
def test_padding_garbage_does_not_matter(method):
    # the same batch with clean (0) or poisoned (nan / -inf / +inf) padding gives bit-identical
    # losses and gradients, and the padding gets exactly zero gradient
    rewards = t([[1, 0, 0], [1, 1, 0]])
    lp, old, mask = token_batch(rewards, T=7, seed=11)
    clean_lp = torch.where(mask, lp.detach(), t(0.0)).requires_grad_()
    clean_old = torch.where(mask, old, t(0.0))
    dirty_old = torch.where(mask, old, t(float("inf")) * (torch.arange(7) % 2 * 2 - 1))  # +-inf
    results = []
    for x, o in [(clean_lp, clean_old), (lp, old), (lp, dirty_old)]:
        if x.grad is not None:
            x.grad = None
        if method == "kl":
            loss = kl_penalty(x, o, mask)
        else:
            loss = method_loss(method, x, o, mask, rewards)
        loss.backward()
        results.append((loss.detach(), x.grad.clone()))
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert torch.equal(grad, results[0][1])
        assert (grad[~mask] == 0).all()


def test_sequence_scores_padding_nan_and_ragged():
    lp = t([[-1.0, float("nan"), float("-inf")], [-0.5, -0.25, float("nan")], [0.1, 0.2, 0.3]])
    old = t([[-2.0, float("-inf"), float("nan")], [-1.0, -0.5, 1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    # 1/1, (.5 + .25)/2, (.1 + .2 + .3)/3
    assert_close(sequence_scores(lp, old, mask), t([1.0, 0.375, 0.2]), **TIGHT)


# ============================================================================ bad inputs
def _good_scores():
    return torch.zeros(2, 3, dtype=F64), t([[1, 0, 0], [1, 1, 1]])


GROUP_FNS = {
    "real_loss": real_loss,
    "grad_loss": grad_loss,
    "real_weights": real_weights,
    "grad_weights": grad_weights,
    "real_context_constants": real_context_constants,
}
group_fns = pytest.mark.parametrize("fn", list(GROUP_FNS.values()), ids=list(GROUP_FNS))


@group_fns
@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0, float("nan")])
def test_non_binary_rewards_raise(fn, bad):
    scores, rewards = _good_scores()
    rewards[0, 1] = bad
    with pytest.raises(ValueError, match="rewards must be 0/1"):
        fn(scores, rewards, 0.5)


@group_fns
def test_integer_reward_two_raises(fn):
    with pytest.raises(ValueError, match="rewards must be 0/1"):
        fn(torch.zeros(1, 2, dtype=F64), torch.tensor([[2, 0]]), 0.5)


@group_fns
@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf"), float("-inf")])
def test_bad_tau_raises(fn, tau):
    scores, rewards = _good_scores()
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        fn(scores, rewards, tau)


@group_fns
def test_scores_rewards_shape_mismatch_raises(fn):
    with pytest.raises(ValueError, match=r"scores and rewards must both be \[G, n\]"):
        fn(torch.zeros(2, 3, dtype=F64), torch.zeros(3, 2, dtype=F64), 0.5)


@group_fns
def test_one_dimensional_scores_raise(fn):
    with pytest.raises(ValueError, match=r"must both be \[G, n\].*\(6,\)"):
        fn(torch.zeros(6, dtype=F64), t([1, 0, 0, 1, 1, 0]), 0.5)


@group_fns
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_raise(fn, bad):
    scores, rewards = _good_scores()
    scores[1, 2] = bad
    with pytest.raises(ValueError, match="scores holds non-finite values"):
        fn(scores, rewards, 0.5)


def _token_call(name, lp, old, mask, adv=None):
    adv = torch.zeros(lp.shape[0], dtype=lp.dtype) if adv is None else adv
    if name == "sequence_scores":
        return sequence_scores(lp, old, mask)
    if name == "kl_penalty":
        return kl_penalty(lp, old, mask)
    return PPO_LOSSES[name](lp, old, adv, mask)


TOKEN_FNS = ["sequence_scores", "grpo", "dapo", "gspo", "kl_penalty"]


@pytest.mark.parametrize("name", TOKEN_FNS)
def test_mask_with_all_zero_row_raises(name):
    lp = torch.zeros(3, 4, dtype=F64)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"mask has all-zero rows \[1\]"):
        _token_call(name, lp, lp, mask)


@pytest.mark.parametrize("name", TOKEN_FNS)
def test_mask_shape_mismatch_raises(name):
    lp = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"mask shape \(3, 5\) does not match"):
        _token_call(name, lp, lp, torch.ones(3, 5))


@pytest.mark.parametrize("name", ["sequence_scores", "grpo", "dapo", "gspo", "kl_penalty"])
@pytest.mark.parametrize("which", ["logprobs", "old_logprobs"])
@pytest.mark.parametrize("bad", [float("nan"), float("-inf")])
def test_non_finite_logprobs_at_masked_positions_raise(name, which, bad):
    lp, old = torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64)
    (lp if which == "logprobs" else old)[1, 1] = bad  # inside the mask
    match = "holds non-finite values"
    with pytest.raises(ValueError, match=match):
        _token_call(name, lp, old, torch.tensor([[1, 0, 0], [1, 1, 0]]))


@pytest.mark.parametrize("name", ["sequence_scores", "grpo", "dapo", "gspo", "kl_penalty"])
def test_logprob_shape_mismatch_raises(name):
    with pytest.raises(ValueError, match="differ"):
        _token_call(name, torch.zeros(2, 3, dtype=F64), torch.zeros(1, 3, dtype=F64), torch.ones(2, 3))


@pytest.mark.parametrize("name", ["grpo", "dapo", "gspo"])
@pytest.mark.parametrize("shape", [(3,), (2, 1), (2, 3), ()])
def test_advantages_wrong_shape_raise(name, shape):
    lp = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"advantages must be \[B\]=2"):
        _token_call(name, lp, lp, torch.ones(2, 3), adv=torch.zeros(shape, dtype=F64))


@pytest.mark.parametrize("name", ["grpo", "dapo", "gspo"])
def test_non_finite_advantages_raise(name):
    lp = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="advantages holds non-finite"):
        _token_call(name, lp, lp, torch.ones(2, 3), adv=t([1.0, float("nan")]))


@pytest.mark.parametrize("shape", [(3, 1), (4,), (1,)])
def test_group_advantages_needs_two_rollouts(shape):
    with pytest.raises(ValueError, match=r"n >= 2"):
        group_advantages(torch.ones(shape, dtype=F64))
