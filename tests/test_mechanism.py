"""The per-token mechanism metrics (methods.offpolicy_stats, weight_samples) and their readers (mechanism.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rewards_as_labels import mechanism as MX
from rewards_as_labels.config import Config
from rewards_as_labels.methods import (
    OFFPOLICY_KEYS,
    MiniBatch,
    offpolicy_stats,
    top_share,
    weight_samples,
)
from rewards_as_labels.trainer import STEP_REDUCERS

# One group of 4 rollouts, padded to T = 3 (padding holds 9.0, which must be ignored); old log-probs 0, so s_t is
# the log-prob itself. Advantages +-1 as given (offpolicy_stats takes them from the mini-batch).
#   r0 positive, 3 tokens, s_t = (0.1, -0.1, 0.3):  s_0 = 0.1,  s_t - s_0 = (0, -0.2, 0.2)
#   r1 positive, 2 tokens, s_t = (0.0, -0.4):       s_1 = -0.2, s_t - s_1 = (0.2, -0.2)
#   r2 negative, 1 token,  s_t = (0.5):             s_2 = 0.5,  s_t - s_2 = (0)
#   r3 negative, 3 tokens, s_t = (-0.1, 0.2, -0.1): s_3 = 0,    s_t - s_3 = (-0.1, 0.2, -0.1)
# GRPO token weights |A| e^{s_t}, clip 0.2: a positive token with e^{s_t} > 1.2 (s_t = 0.3) is cut to 0; a negative
# one is cut only below e^{s_t} < 0.8 (none here).
LP = [[0.1, -0.1, 0.3], [0.0, -0.4, 9.0], [0.5, 9.0, 9.0], [-0.1, 0.2, -0.1]]
LENGTHS = [3, 2, 1, 3]


def hand_made_batch() -> MiniBatch:
    lp = torch.tensor(LP, dtype=torch.float64)
    mask = torch.arange(3)[None, :] < torch.tensor(LENGTHS)[:, None]
    return MiniBatch(
        lp,
        torch.zeros_like(lp),
        mask,
        torch.tensor([[1.0, 1.0, 0.0, 0.0]]),
        torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64),
    )


def test_new_offpolicy_stats_on_a_hand_made_batch():
    st = offpolicy_stats(Config(), hand_made_batch())
    e = math.exp
    # spread: std (ddof 0) of s_t - s_i per rollout, then the mean over the 4 rollouts
    #   r0 sqrt((0 + .04 + .04) / 3), r1 sqrt((.04 + .04) / 2) = .2, r2 0, r3 sqrt((.01 + .04 + .01) / 3)
    spreads = [math.sqrt(0.08 / 3), 0.2, 0.0, math.sqrt(0.06 / 3)]
    assert st["offpolicy/s_token_spread"] == pytest.approx(sum(spreads) / 4)  # 0.12618
    # ratio: over the mean |s_i| = (0.1 + 0.2 + 0.5 + 0) / 4 = 0.2
    assert st["offpolicy/s_token_spread_ratio"] == pytest.approx(sum(spreads) / 4 / 0.2)
    # domination: 4 negative tokens, weights e^0.5, e^-0.1, e^0.2, e^-0.1; the top 1% is the top ceil(0.04) = 1 token
    neg = [e(0.5), e(-0.1), e(0.2), e(-0.1)]
    assert st["offpolicy/grpo_token/neg_top1pct_share"] == pytest.approx(e(0.5) / sum(neg))  # 0.3523
    # within-rollout correlation over the 5 positive tokens:
    #   r0 weights (e^.1, e^-.1, 0 cut) minus their mean; r1 weights (1, e^-.4) minus their mean; s_t - s_i as above
    w0, w1 = np.array([e(0.1), e(-0.1), 0.0]), np.array([1.0, e(-0.4)])
    dw = np.concatenate([w0 - w0.mean(), w1 - w1.mean()])
    ds = np.array([0.0, -0.2, 0.2, 0.2, -0.2])
    want = dw @ ds / math.sqrt((dw @ dw) * (ds @ ds))  # -0.3326: the cut token has the highest s_t and weight 0
    assert st["offpolicy/grpo_token/pos_corr_w_s_within"] == pytest.approx(want)
    # the existing key is kept: 1 of the 5 positive tokens zeroed by the clip
    assert st["offpolicy/grpo_token/pos_zeroed_frac"] == pytest.approx(1 / 5)


def test_new_keys_are_declared_and_reduced():
    for key in (
        "offpolicy/grpo_token/neg_top1pct_share",
        "offpolicy/s_token_spread",
        "offpolicy/s_token_spread_ratio",
        "offpolicy/grpo_token/pos_corr_w_s_within",
        "offpolicy/grpo_token/pos_zeroed_frac",
    ):
        assert key in OFFPOLICY_KEYS and key in STEP_REDUCERS
    assert set(offpolicy_stats(Config(), hand_made_batch())) <= set(OFFPOLICY_KEYS)


def test_within_correlation_ignores_differences_between_rollouts():
    """Two positive rollouts whose weight rises with s_t inside each, but the one at higher s has the smaller |A|:
    pooled over tokens the correlation is negative, within rollouts positive (no token is clipped)."""
    lp = torch.tensor([[0.10, 0.15], [-0.5, -0.45]], dtype=torch.float64)  # s_t - s_i = (-0.025, 0.025) in both
    adv = torch.tensor([0.2, 2.0], dtype=torch.float64)
    # labels (1, 0) make the group mixed; the advantages as given make both rollouts' tokens positive
    mb = MiniBatch(lp, torch.zeros_like(lp), torch.ones(2, 2, dtype=torch.bool), torch.tensor([[1.0, 0.0]]), adv)
    w = (adv[:, None] * lp.exp()).flatten().numpy()  # 0.22, 0.23, 1.21, 1.28
    assert np.corrcoef(w, lp.flatten().numpy())[0, 1] < 0  # pooled: the between-rollout difference wins
    st = offpolicy_stats(Config(), mb)
    # within: weight deviations (-a, a, -b, b), s deviations (-c, c, -c, c) -> (a + b) / sqrt(2 (a^2 + b^2)) = 0.822
    a, b = 0.2 * (math.exp(0.15) - math.exp(0.10)) / 2, 2.0 * (math.exp(-0.45) - math.exp(-0.5)) / 2
    assert st["offpolicy/grpo_token/pos_corr_w_s_within"] == pytest.approx((a + b) / math.sqrt(2 * (a * a + b * b)))


def test_padding_does_not_change_the_offpolicy_stats():
    """The same rollouts padded to T = 3 and to T = 6: every statistic is the same (padding once counted |A| e^0 in
    the mean token weight of a rollout, and so in offpolicy/grpo_token/pos_corr_w_s)."""
    mb = hand_made_batch()
    lp = torch.tensor([[0.1, -0.1, 0.3], [0.0, -0.4, 9.0], [-0.15, 9.0, 9.0], [-0.1, 0.2, -0.1]], dtype=torch.float64)
    adv = torch.tensor([0.5, 0.5, 0.5, -1.5], dtype=torch.float64)
    mb = MiniBatch(lp, mb.old_logprobs, mb.mask, torch.tensor([[1.0, 1.0, 1.0, 0.0]]), adv)  # 3 positives: pos_corr_w_s
    pad = torch.full((4, 3), 9.0, dtype=torch.float64)
    wide = MiniBatch(
        torch.cat([mb.logprobs, pad], 1),
        torch.cat([mb.old_logprobs, pad * 0], 1),
        torch.cat([mb.mask, pad.bool() & False], 1),
        mb.rewards,
        mb.advantages,
    )
    short, long = offpolicy_stats(Config(), mb), offpolicy_stats(Config(), wide)
    assert "offpolicy/grpo_token/pos_corr_w_s" in short
    assert short.keys() == long.keys() and all(short[k] == pytest.approx(long[k]) for k in short)


def test_top_share_definition():
    assert top_share(torch.tensor([5.0, 1.0, 1.0, 1.0])) == pytest.approx(5 / 8)  # fewer than 100: the largest one
    assert top_share(torch.ones(300)) == pytest.approx(3 / 300)  # ceil(0.01 * 300) = 3, not 4 (float rounding)
    w = torch.cat([torch.full((2,), 50.0), torch.ones(198)])  # 200 tokens: the top 2 carry 100 of 298
    assert top_share(w) == pytest.approx(100 / 298)
    assert top_share(torch.zeros(5)) is None and top_share(torch.tensor([])) is None
    with pytest.raises(ValueError, match="fraction"):
        top_share(torch.ones(3), 0.0)


def _samples_frames(ws: dict, method: str = "grpo", step: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What results.load_weight_samples makes of one weight_samples record."""
    key = {"method": method, "seed": 0, "step": step}
    roll = pd.DataFrame({k: ws[k] for k in ("s", "label", "w_real", "w_grad", "rollout", "length")}).assign(**key)
    tok = pd.DataFrame(
        {"s_token": ws["s_token"], "a_token": ws["a_token"], "w_grpo": ws["w_grpo"], "rollout": ws["token_rollout"]}
    ).assign(**key)
    return roll, tok


def test_weight_samples_join_tokens_to_rollouts_and_agree_with_the_scalars():
    mb = hand_made_batch()
    ws = weight_samples(Config(), mb)
    assert ws["rollout"] == [0, 1, 2, 3] and ws["length"] == LENGTHS
    assert ws["token_rollout"] == [0, 0, 0, 1, 1, 2, 3, 3, 3]  # rollout by rollout, padding left out
    roll, tok = _samples_frames(ws)
    spread = MX.rollout_spread(roll, tok)
    st = offpolicy_stats(Config(), mb)
    assert spread["spread"].mean() == pytest.approx(st["offpolicy/s_token_spread"])
    assert spread["spread"].tolist()[2] == 0.0  # a one-token answer cannot spread
    joined = MX.tokens_with_rollouts(roll, tok)
    assert joined.groupby("rollout")["s_within"].sum().abs().max() < 1e-12  # s_i is the mean of its s_t
    conc = MX.concentration(tok, fractions=(0.01,))
    assert conc["share"].iloc[0] == pytest.approx(st["offpolicy/grpo_token/neg_top1pct_share"])
    assert conc["equal"].iloc[0] == pytest.approx(1 / 4)


def test_one_label_groups_are_left_out_of_the_samples():
    lp = torch.tensor([[0.1], [0.2], [0.3], [0.4]], dtype=torch.float64)
    mb = MiniBatch(
        lp,
        torch.zeros_like(lp),
        torch.ones(4, 1, dtype=torch.bool),
        torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=torch.float64),
    )
    ws = weight_samples(Config(), mb)
    assert ws["rollout"] == [2, 3] and ws["token_rollout"] == [2, 3]  # rows of the mini-batch, as in the tokens


def test_readers_fail_clearly():
    roll = pd.DataFrame({"method": "real", "seed": 0, "step": 0, "s": [0.1], "label": [1]})  # old samples: no index
    tok = pd.DataFrame({"method": "real", "seed": 0, "step": 0, "s_token": [0.1]})
    with pytest.raises(ValueError, match="retrain"):
        MX.rollout_spread(roll, tok)
    roll = roll.assign(rollout=0, length=2)
    with pytest.raises(ValueError, match="not among the rollout samples"):
        MX.tokens_with_rollouts(roll, tok.assign(rollout=5))
    with pytest.raises(ValueError, match="1 sampled tokens but length 2"):
        MX.rollout_spread(roll, tok.assign(rollout=0))
    with pytest.raises(ValueError, match="side"):
        MX.concentration(tok, side="both")


def test_binned_means_and_band():
    x = np.arange(100.0)
    out = MX.binned(x, 2 * x, bins=4)  # 100 distinct x: 4 quantile bins of 25
    assert out["count"].tolist() == [25] * 4
    assert out["mean"].tolist() == pytest.approx([24, 74, 124, 174])  # 2 * mean(0 .. 24) = 24, then +50 per bin
    assert (out["lo"] <= out["mean"]).all() and (out["mean"] <= out["hi"]).all()
    tied = MX.binned([0.0] * 50 + [1.0] * 50 + [2.0] * 3, [0.0] * 50 + [1.0] * 50 + [9.0] * 3, bins=10)
    assert tied["x"].tolist() == [0.0, 1.0] and tied["mean"].tolist() == [0.0, 1.0]  # x = 2: 3 points, under 10
    few = MX.binned(np.arange(30.0), np.arange(30.0), bins=10)  # 30 points, at least 10 a bin: 3 bins
    assert few["count"].tolist() == [10, 10, 10]
    lumped = MX.binned(np.r_[np.zeros(80), np.arange(1.0, 21.0)], np.ones(100), bins=5)  # a tie of 80 at 0
    assert lumped["count"].sum() == 100 and lumped["count"].max() >= 80  # the tie stays in one bin
    with pytest.raises(ValueError, match="min_per_bin"):
        MX.binned([1.0], [1.0], min_per_bin=0)
    assert MX.binned([], []).empty


def test_mechanism_table_and_curves():
    metrics = pd.DataFrame(
        {
            "run": ["grpo-s0"] * 3 + ["grpo-s1"] * 3 + ["real-s0"] * 3,
            "method": ["grpo"] * 6 + ["real"] * 3,
            "seed": [0] * 3 + [1] * 3 + [0] * 3,
            "step": [0, 1, 2] * 3,
            "offpolicy/s_abs_max": [0.1, 0.3, np.nan, 0.2, 0.2, 0.2, np.nan, np.nan, np.nan],  # real-s0: M = 1
            "policy/entropy": [1.0, 0.5, 0.1, 1.0, 0.7, 0.4, 1.0, 1.0, 1.0],
        }
    )
    table = MX.mechanism_table(metrics).set_index(["metric", "method"])
    # grpo-s0: mean of its 2 logged steps 0.2; grpo-s1: 0.2 -> mean 0.2, sd 0, 2 runs, 5 off-policy steps
    assert table.loc[("offpolicy/s_abs_max", "grpo"), "mean"] == pytest.approx(0.2)
    assert table.loc[("offpolicy/s_abs_max", "grpo"), ["runs", "offpolicy_steps"]].tolist() == [2, 5]
    real = table.loc[("offpolicy/s_abs_max", "real")]
    assert real["runs"] == 0 and np.isnan(real["mean"])
    assert table.loc[("policy/entropy (last 10)", "grpo"), "mean"] == pytest.approx((1.6 / 3 + 2.1 / 3) / 2)
    assert list(dict.fromkeys(table.index.get_level_values("metric")))[: len(OFFPOLICY_KEYS)] == list(OFFPOLICY_KEYS)
    runs, means = MX.method_curves(metrics, "policy/entropy", window=2)
    assert runs[runs.run == "grpo-s0"]["smooth"].tolist() == pytest.approx([1.0, 0.75, 0.3])  # trailing means of 2
    grpo = means[means.method == "grpo"].set_index("step")
    assert grpo.loc[2, "mean"] == pytest.approx(((0.5 + 0.1) / 2 + (0.7 + 0.4) / 2) / 2) and grpo.loc[2, "seeds"] == 2
    assert list(dict.fromkeys(means.method)) == ["real", "grpo"]  # the paper's order
    assert MX.method_curves(metrics, "not/logged")[1].empty


def test_save_figure_writes_png_and_pdf(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = MX.save_figure(fig, tmp_path / "figures", "line")
    plt.close(fig)
    assert [p.name for p in paths] == ["line.png", "line.pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["line.pdf", "line.png"]  # no temp file left
