"""The paired bootstrap of results.py: known differences, identical methods, why pairing matters,
determinism, and clear errors when runs cannot be paired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rewards_as_labels.results import CANNOT_TELL, paired_bootstrap, paired_difference_table, verdict


def _difficulty(seeds=3, problems=200, seed=0):
    """Per-(seed, problem) pass@1 of a method whose problems range from easy to hard: [seeds, problems]."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, problems)  # [problems] how easy each problem is
    return np.clip(p + rng.normal(0, 0.02, (seeds, problems)), 0, 1)  # [seeds, problems]


def test_large_known_difference_excludes_zero():
    b = _difficulty()
    a = np.clip(b + 0.2, 0, 1)
    r = paired_bootstrap(a, b)
    assert r["low"] > 0.1 and r["low"] <= r["diff"] <= r["high"]
    assert verdict(r["low"], r["high"], "a", "b") == "a better than b"
    assert verdict(-r["high"], -r["low"], "b", "a") == "a better than b"


def test_identical_methods_cover_zero_exactly():
    a = _difficulty()
    r = paired_bootstrap(a, a.copy())
    assert r["diff"] == r["low"] == r["high"] == 0.0  # every per-problem difference is 0
    assert verdict(r["low"], r["high"], "a", "b") == CANNOT_TELL


def test_swapping_methods_mirrors_the_interval():
    b = _difficulty(seed=1)
    a = np.clip(b + np.random.default_rng(2).normal(0, 0.1, b.shape), 0, 1)
    ab, ba = paired_bootstrap(a, b, seed=5), paired_bootstrap(b, a, seed=5)
    assert ab["diff"] == pytest.approx(-ba["diff"])
    assert (ab["low"], ab["high"]) == pytest.approx((-ba["high"], -ba["low"]))


def test_pairing_matters():
    # a beats b by 2 points on every problem, but problems differ in difficulty by far more:
    # resampled independently, the difficulty noise swamps the 2 points; paired, it cancels
    b = _difficulty(problems=100)
    a = b + 0.02
    paired, unpaired = (
        paired_bootstrap(a, b, hierarchical=False),
        paired_bootstrap(a, b, paired=False, hierarchical=False),
    )
    assert paired["low"] > 0
    assert unpaired["low"] < 0 < unpaired["high"]


def test_deterministic_given_seed():
    a, b = _difficulty(seed=3), _difficulty(seed=4)
    r1, r2, r3 = paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=8)
    np.testing.assert_array_equal(r1["replicates"], r2["replicates"])
    assert (r1["low"], r1["high"]) == (r2["low"], r2["high"]) != (r3["low"], r3["high"])


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((2, 5)), np.zeros((3, 5)), "one shape"),
        (np.zeros((2, 5)), np.zeros((2, 4)), "one shape"),
        (np.full((2, 5), np.nan), np.zeros((2, 5)), "finite"),
    ],
)
def test_mismatched_arrays_are_refused(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b)


def _per_problem(methods=("grpo", "real"), seeds=("0", "1", "2"), problems=50, shift=None):
    b = _difficulty(len(seeds), problems)
    rows = []
    for m in methods:
        vals = b + (shift or {}).get(m, 0.0)
        for i, s in enumerate(seeds):
            rows.append(
                pd.DataFrame(
                    {
                        "method": m,
                        "seed": s,
                        "benchmark": "test",
                        "problem_id": [f"p{j}" for j in range(problems)],
                        "pass@1": vals[i],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_table_pairs_by_seed_and_problem_whatever_the_row_order():
    pp = _per_problem(methods=("grpo", "real", "dapo"), shift={"real": 0.1})
    shuffled = pp.sample(frac=1.0, random_state=0)
    table, again = paired_difference_table(pp, n_boot=500), paired_difference_table(shuffled, n_boot=500)
    pd.testing.assert_frame_equal(table, again)
    assert list(table.index) == ["real", "dapo"]
    assert table.loc["real", "verdict"] == "real better than grpo" and table.loc["real", "seeds"] == 3
    assert table.loc["dapo", "verdict"] == CANNOT_TELL


def test_table_refuses_runs_that_cannot_be_paired():
    pp = _per_problem()
    with pytest.raises(ValueError, match="seeds differ"):
        paired_difference_table(pp[~((pp.method == "real") & (pp.seed == "2"))])
    with pytest.raises(ValueError, match="same problems"):
        paired_difference_table(pp[~((pp.method == "real") & (pp.problem_id == "p3"))])
    with pytest.raises(ValueError, match="no per-problem rows for method 'gspo'"):
        paired_difference_table(pp, methods=["gspo"])


def test_several_benchmarks_are_macro_averaged():
    one = _per_problem(shift={"real": 0.1})
    two = pd.concat([one, _per_problem(shift={"real": 0.3}).assign(benchmark="other")], ignore_index=True)
    table = paired_difference_table(two, n_boot=500)
    assert table.loc["real", "diff"] == pytest.approx(0.2)  # (0.1 + 0.3) / 2, whatever each set's size
    assert (
        table.loc["real", "low"] <= 0.2 <= table.loc["real", "high"]
        and table.loc["real", "verdict"] == "real better than grpo"
    )


def test_missing_per_problem_table_names_the_fix(tmp_path):
    from rewards_as_labels.results import load_per_problem

    with pytest.raises(FileNotFoundError, match="make -B evaluate"):
        load_per_problem(tmp_path)


def test_hierarchical_interval_widens_when_seeds_disagree():
    """Same mean difference (+0.1), same problems: seeds that agree vs seeds that disagree."""
    rng = np.random.default_rng(0)
    b = rng.integers(0, 9, size=(5, 400)) / 8.0  # [seeds, problems]
    agree = b + 0.1
    disagree = b + np.array([-0.3, 0.5, -0.2, 0.4, 0.1])[:, None]  # per-seed shifts, mean +0.1
    width = {}
    for name, a in (("agree", agree), ("disagree", disagree)):
        for hier in (False, True):
            r = paired_bootstrap(a, b, hierarchical=hier, n_boot=4000)
            assert r["diff"] == pytest.approx(0.1)
            width[name, hier] = r["high"] - r["low"]
    # resampling seeds sees the disagreement; a problems-only bootstrap cannot
    assert width["disagree", True] > 5 * width["disagree", False]
    assert width["disagree", True] > 5 * width["agree", True]
    assert (
        paired_bootstrap(disagree, b, hierarchical=True)["low"]
        < 0
        < paired_bootstrap(disagree, b, hierarchical=False)["low"]
    )


def test_hierarchical_with_one_seed_is_the_problem_bootstrap_in_distribution():
    rng = np.random.default_rng(1)
    a, b = rng.random(300), rng.random(300)
    h, f = paired_bootstrap(a, b, n_boot=20000), paired_bootstrap(a, b, hierarchical=False, n_boot=20000)
    assert h["high"] - h["low"] == pytest.approx(f["high"] - f["low"], rel=0.05)
