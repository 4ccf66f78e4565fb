"""The method switch (``methods.policy_loss``) and the gradient-weight diagnostics
(``weight_stats``, ``weight_samples``) on hand-made batches, values worked out in comments."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from rewards_as_labels.config import METHODS, Config
from rewards_as_labels.methods import MiniBatch, clip_fraction, policy_loss, weight_samples, weight_stats
from rewards_as_labels.objectives import clipped_surrogate, group_advantages

F64 = torch.float64
L = math.log1p(math.exp(-0.2))  # log(1 + e^{-0.2})


def pair(s: float = 0.1) -> MiniBatch:
    """One group (+, -) of one-token rollouts with s = (+s, -s), A = (+1, -1)."""
    old = torch.tensor([[-1.0], [-2.0]], dtype=F64)
    lp = (old + torch.tensor([[s], [-s]], dtype=F64)).requires_grad_()
    return MiniBatch(
        lp,
        old,
        torch.ones(2, 1, dtype=torch.bool),
        torch.tensor([[1.0, 0.0]], dtype=F64),
        torch.tensor([1.0, -1.0], dtype=F64),
    )


# tau = .5 -> z = s/tau = (.2, -.2); GRPO/DAPO clip: rho = e^{+-.1} in (.8, 1.2), nothing cut;
# GSPO's clip (1 - 3e-4, 1 + 4e-4) cuts both: objectives 1.0004 and -.9997
HAND = {
    "real": 2 * L,  # log(1 + e^{-.2}) + log(1 + e^{-.2}), one group
    "grad": L,  # BCE(.2, 1) = BCE(-.2, 0) = log(1 + e^{-.2}); mean of the two
    "grpo": -math.sinh(0.1),  # -(e^{.1} - e^{-.1}) / 2, one token per sequence
    "dapo": -math.sinh(0.1),  # token mean over the 2 tokens: the same here
    "gspo": -(1.0004 - 0.9997) / 2,
}
CUT = {"real": None, "grad": None, "grpo": [[False], [False]], "dapo": [[False], [False]], "gspo": [True, True]}


@pytest.mark.parametrize("method", METHODS)
def test_policy_loss_hand_values_and_cut(method):
    loss, cut = policy_loss(Config(tau=0.5), pair(), method)
    assert_close(loss, torch.tensor(HAND[method], dtype=F64), rtol=1e-12, atol=1e-15)
    assert (cut.tolist() if cut is not None else None) == CUT[method]


def test_policy_loss_defaults_to_the_configured_method():
    mb = pair()
    assert policy_loss(Config(method="grad"), mb)[0] == policy_loss(Config(), mb, "grad")[0]


def test_policy_loss_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'ppo'; valid methods: real, grad, grpo, dapo, gspo"):
        policy_loss(Config(), pair(), "ppo")


@pytest.mark.parametrize("method", ["grpo", "dapo", "gspo"])
def test_policy_loss_cut_is_the_clip_of_its_own_ratios(method):
    # far off-policy (s = +-.5): the clip cuts; the returned mask is what clipped_surrogate says
    cfg = Config()
    mb = pair(0.5)
    _, cut = policy_loss(cfg, mb, method)
    low, high = {
        "grpo": (cfg.clip_eps, cfg.clip_eps),
        "dapo": (cfg.dapo_clip_low, cfg.dapo_clip_high),
        "gspo": (cfg.gspo_clip_low, cfg.gspo_clip_high),
    }[method]
    log_ratio = (mb.logprobs - mb.old_logprobs).detach()  # [B, T]; GSPO's sequence score is the same here (T = 1)
    _, want = clipped_surrogate(
        log_ratio if method != "gspo" else log_ratio[:, 0],
        mb.advantages[:, None] if method != "gspo" else mb.advantages,
        low,
        high,
    )
    assert torch.equal(cut, want) and cut.any()
    # A = +1 with rho = e^{.5} > 1 + eps and A = -1 with rho = e^{-.5} < 1 - eps: both cut
    assert clip_fraction(cut, mb.mask) == 1.0


def test_clip_fraction_counts_response_tokens_only():
    cut = torch.tensor([[True, False, True], [False, False, True]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert clip_fraction(cut, mask) == pytest.approx(2 / 5)  # (1 of 2) + (1 of 3) response tokens (float32 mean)
    assert clip_fraction(torch.tensor([True, False, False, False]), mask) == 0.25  # GSPO: per sequence


def group_batch(rewards, s=None) -> MiniBatch:
    """One-token rollouts with scores ``s`` (default on-policy) and GRPO advantages of ``rewards``."""
    rewards = torch.tensor(rewards, dtype=F64)
    B = rewards.numel()
    old = torch.full((B, 1), -1.0, dtype=F64)
    lp = old + (torch.zeros(B, 1, dtype=F64) if s is None else torch.tensor(s, dtype=F64)[:, None])
    return MiniBatch(lp, old, torch.ones(B, 1, dtype=torch.bool), rewards, group_advantages(rewards).flatten())


def test_weight_stats_on_policy_hand():
    # group (+, +, -), s = 0, tau = .5: REAL positives (1/.5)/(1 + 2) = 2/3, the negative (1/.5)/(1 + 1) = 1;
    # GRAD (1/.5) sigmoid(0) = 1 for all; GRPO |A| e^0: A = (r - 2/3) / (std + 1e-6), std = sqrt(1/3)
    # -> positives (1/3)/sqrt(1/3) = .57735, the negative (2/3)/sqrt(1/3) = 1.1547.
    # An all-correct group is left out of every statistic (no signal, A = 0).
    stats = weight_stats(Config(tau=0.5), group_batch([[1, 1, 0], [1, 1, 1]]))
    want = {
        "weights/real/pos": 2 / 3,
        "weights/real/neg": 1.0,
        "weights/grad/pos": 1.0,
        "weights/grad/neg": 1.0,
        "weights/grpo_token/pos": 1 / math.sqrt(3),
        "weights/grpo_token/neg": 2 / math.sqrt(3),
    }
    assert set(stats) == {f"{k}_{m}" for k in want for m in ("mean", "max")}
    for key, value in want.items():
        assert stats[f"{key}_mean"] == pytest.approx(value, rel=1e-5) and stats[f"{key}_max"] == pytest.approx(
            value, rel=1e-5
        )


def test_weight_stats_without_mixed_groups_is_empty():
    assert weight_stats(Config(), group_batch([[1, 1], [0, 0]])) == {}


def test_weight_stats_reuses_the_grpo_loss_mask():
    # off-policy so that GRPO's clip cuts some tokens: the mask the loss returns gives the same weights
    mb = group_batch([[1, 0, 0, 1]], s=[0.5, 0.05, -0.5, -0.05])
    cfg = Config(method="grpo")
    _, cut = policy_loss(cfg, mb)
    assert cut.any() and not cut.all()
    assert weight_stats(cfg, mb, cut) == weight_stats(cfg, mb)
    # A = +-sqrt(3)/2 (mean .5, std 1/sqrt(3)); positives: s = .5 cut (> log 1.2), s = -.05 -> e^{-.05} sqrt(3)/2
    assert weight_stats(cfg, mb)["weights/grpo_token/pos_max"] == pytest.approx(
        math.exp(-0.05) * math.sqrt(3) / 2, rel=1e-5
    )


def test_weight_samples_match_the_stats():
    mb = group_batch([[1, 0, 0, 1], [1, 1, 1, 1]], s=[0.3, -0.2, 0.1, 0.0, 0.5, 0.5, 0.5, 0.5])
    cfg = Config()
    samples, stats = weight_samples(cfg, mb), weight_stats(cfg, mb)
    assert len(samples["s"]) == 4  # the mixed group's rollouts only
    assert samples["label"] == [1, 0, 0, 1] and samples["s"] == pytest.approx([0.3, -0.2, 0.1, 0.0])
    assert max(w for w, y in zip(samples["w_real"], samples["label"]) if y) == stats["weights/real/pos_max"]
    assert max(w for w, y in zip(samples["w_grad"], samples["label"]) if not y) == stats["weights/grad/neg_max"]
    assert len(samples["s_token"]) == len(samples["a_token"]) == len(samples["w_grpo"]) == 4  # A = 0 tokens left out
    assert max(samples["w_grpo"]) == max(stats["weights/grpo_token/pos_max"], stats["weights/grpo_token/neg_max"])
