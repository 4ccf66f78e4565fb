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
    paired, unpaired = paired_bootstrap(a, b), paired_bootstrap(a, b, paired=False)
    assert paired["low"] > 0
    assert unpaired["low"] < 0 < unpaired["high"]


def test_deterministic_given_seed():
    a, b = _difficulty(seed=3), _difficulty(seed=4)
    r1, r2, r3 = paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=7), paired_bootstrap(a, b, seed=8)
    np.testing.assert_array_equal(r1["replicates"], r2["replicates"])
    assert (r1["low"], r1["high"]) == (r2["low"], r2["high"]) != (r3["low"], r3["high"])


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((2, 5)), np.zeros((3, 5)), "one shape"),
    (np.zeros((2, 5)), np.zeros((2, 4)), "one shape"),
    (np.full((2, 5), np.nan), np.zeros((2, 5)), "finite"),
])
def test_mismatched_arrays_are_refused(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b)


def _per_problem(methods=("grpo", "real"), seeds=("0", "1", "2"), problems=50, shift=None):
    b = _difficulty(len(seeds), problems)
    rows = []
    for m in methods:
        vals = b + (shift or {}).get(m, 0.0)
        for i, s in enumerate(seeds):
            rows.append(pd.DataFrame({"method": m, "seed": s, "benchmark": "test",
                                      "problem_id": [f"p{j}" for j in range(problems)], "pass@1": vals[i]}))
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
    assert table.loc["real", "low"] <= 0.2 <= table.loc["real", "high"] and table.loc["real", "verdict"] == "real better than grpo"


def test_missing_per_problem_table_names_the_fix(tmp_path):
    from rewards_as_labels.results import load_per_problem

    with pytest.raises(FileNotFoundError, match="make -B evaluate"):
        load_per_problem(tmp_path)
