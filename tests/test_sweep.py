"""The stability sweep: grid expansion (one source for the Makefile, through makevars), the collapse rule, the
off-policy mechanism statistics, and `make sweep SWEEP=smoke` end to end in a copy of the tree."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from rewards_as_labels import sweep as S
from rewards_as_labels.config import Config
from rewards_as_labels.methods import OFFPOLICY_KEYS, MiniBatch, offpolicy_stats
from rewards_as_labels.trainer import STEP_REDUCERS

COLUMNS = ["method", "lr", "minibatches", "seed", "final_pass@1", "best_pass@1", "collapsed", "collapse_step",
           "grad_norm_max", "grad_norm_spikes", *OFFPOLICY_KEYS]


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_grid_expands_to_unique_runs_with_every_axis(name):
    grid = S.load_grid(name)
    runs = S.runs(grid)
    assert len(runs) == len(grid.methods) * len(grid.minibatches) * len(grid.learning_rates) * len(grid.seeds)
    assert len({n for n, _ in runs}) == len(runs)
    assert {ov["minibatches_per_step"] for _, ov in runs} == set(grid.minibatches)
    assert all(ov["total_steps"] == grid.steps for _, ov in runs)


def test_default_grid_has_five_methods_and_three_seeds():
    grid = S.load_grid("default")
    assert set(grid.methods) == {"real", "grad", "grpo", "dapo", "gspo"} and len(grid.seeds) >= 3


def test_unknown_grid_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown sweep grid 'nope'.*smoke"):
        S.load_grid("nope")


def test_collapse_needs_k_consecutive_low_steps():
    assert S.collapse_step([0.1, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0], steps=3) == 4
    assert S.collapse_step([0.1, 0.0, 0.0, 0.1], steps=3) is None
    assert S.collapse_step([0.03, 0.02], reward_below=0.02, steps=1) == 1  # at the threshold counts


def test_offpolicy_keys_have_reducers():
    assert set(OFFPOLICY_KEYS) <= set(STEP_REDUCERS)


def test_offpolicy_stats_on_a_hand_made_batch():
    # one group of 4: positives at s = 0.3 (beyond GRPO's clip 1.2 -> cut), 0.1, -0.2; a negative at s = 0.4
    lp = torch.tensor([[0.3], [0.1], [-0.2], [0.4]], dtype=torch.float64)
    mb = MiniBatch(lp, torch.zeros_like(lp), torch.ones(4, 1, dtype=torch.bool), torch.tensor([[1.0, 1.0, 1.0, 0.0]]),
                   torch.tensor([0.5, 0.5, 0.5, -1.5], dtype=torch.float64))
    st = offpolicy_stats(Config(), mb)
    assert st["offpolicy/grpo_token/pos_zeroed_frac"] == pytest.approx(1 / 3)  # e^0.3 = 1.35 > 1.2
    assert st["offpolicy/s_abs_max"] == pytest.approx(0.4)
    assert st["offpolicy/real/pos_corr_w_s"] < 0  # REAL: weight falls as s rises
    assert "offpolicy/clip/pos_zeroed_frac" not in st  # no training clip passed
    assert 0 < st["offpolicy/real/max_w_times_tau"] < 1  # |W| < 1/tau
    # GRPO token weights: 0 (cut), 0.5 e^0.1, 0.5 e^-0.2 for positives, 1.5 e^0.4 for the negative (ratio > 1)
    w = [0.0, 0.5 * torch.e ** 0.1, 0.5 * torch.e ** -0.2, 1.5 * torch.e ** 0.4]
    assert st["offpolicy/grpo_token/neg_above1_share"] == pytest.approx(w[3] / sum(w))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_sweep_smoke_writes_one_row_per_run(tmp_path):
    from conftest import make_env
    from test_hardening import _make_tree

    repo, venv = _make_tree(tmp_path)
    cmd = ["make", "--no-print-directory", "sweep", "SWEEP=smoke", f"VENV={venv}", "JOBS=2", "ACCEL=cpu"]
    res = subprocess.run(cmd, cwd=repo, env=make_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = pd.read_csv(repo / "runs/smoke/tables/stability.csv")
    names = [name for name, _ in S.runs(S.load_grid("smoke"))]
    assert set(COLUMNS) <= set(table.columns), sorted(set(COLUMNS) - set(table.columns))
    assert sorted(table.run) == sorted(names)  # one row per run
    assert (repo / "runs/smoke/notebooks/06_stability.ipynb").is_file()
    again = subprocess.run(cmd, cwd=repo, env=make_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and ">>> [smoke] sweep run" not in again.stdout  # finished runs are not redone


def test_paired_cells_compare_each_method_to_grpo_problem_by_problem(tmp_path):
    """Fake finished runs of the smoke grid: REAL solves every validation problem GRPO solves, plus 8."""
    from rewards_as_labels.sweep import load_grid, paired_cells, runs, sweep_dir

    grid = load_grid("smoke")
    ids = [f"validation-{i:05d}" for i in range(20)]
    for name, ov in runs(grid):
        folder = sweep_dir(tmp_path) / name
        folder.mkdir(parents=True)
        correct = [2] * 10 + [0] * 10  # of 2 samples
        if ov["method"] == "real":
            correct = [2] * 18 + [0] * 2
        (folder / "config.json").write_text(json.dumps({"eval_samples": 2}))
        (folder / "final.json").write_text(json.dumps({"eval/per_problem_correct": correct, "eval/problem_ids": ids}))
    table = paired_cells(grid, tmp_path, n_boot=2000)
    assert len(table) == 4 and set(table.method) == {"real"}  # one row per (M, lr) cell; GRPO is the reference
    assert np.allclose(table["diff"], 0.4) and (table["low"] > 0).all()
    assert set(table.verdict) == {"real better than grpo"}
