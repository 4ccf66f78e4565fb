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

COLUMNS = [
    "method",
    "lr",
    "minibatches",
    "prompts_per_minibatch",
    "grad_clip",
    "seed",
    "val_score",
    "clip_bound_frac",
    "grad_norm_median",
    "final_pass@1",
    "best_pass@1",
    "collapsed",
    "collapse_step",
    "grad_norm_max",
    "grad_norm_spikes",
    *OFFPOLICY_KEYS,
]


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_grid_expands_to_unique_runs_with_every_axis(name):
    grid = S.load_grid(name)
    runs = S.runs(grid)
    axes = (grid.methods, grid.minibatches, grid.learning_rates, grid.grad_clips, grid.seeds)
    assert len(runs) == np.prod([len(a) for a in axes])
    assert len({n for n, _ in runs}) == len(runs)
    assert {ov["minibatches_per_step"] for _, ov in runs} == set(grid.minibatches)
    # off-policy without shrinking the batch: the same mini-batch in every cell, M of them per step
    assert {ov["prompts_per_step"] // ov["minibatches_per_step"] for _, ov in runs} == {grid.prompts_per_minibatch}
    assert all(ov["prompts_per_step"] == ov["minibatches_per_step"] * grid.prompts_per_minibatch for _, ov in runs)
    assert all(ov["total_steps"] == grid.steps for _, ov in runs)


def test_default_grid_has_five_methods_and_three_seeds():
    grid = S.load_grid("default")
    assert set(grid.methods) == {"real", "grad", "grpo", "dapo", "gspo"} and len(grid.seeds) >= 3


def test_a_grid_may_not_fix_what_its_axes_set(tmp_path, monkeypatch):
    (tmp_path / "configs" / "sweeps").mkdir(parents=True)
    text = S.grid_path("smoke").read_text().replace("overrides: {}", "overrides: {prompts_per_step: 8}")
    (tmp_path / "configs" / "sweeps" / "mine.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"overrides \['prompts_per_step'\] are set by the grid's axes"):
        S.load_grid("mine")
    (tmp_path / "configs" / "sweeps" / "mine.yaml").write_text(text.replace('[fixed, "off"]', "[fixed, sometimes]"))
    with pytest.raises(ValueError, match=r"unknown grad_clips \['sometimes'\]"):
        S.load_grid("mine")


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
    mb = MiniBatch(
        lp,
        torch.zeros_like(lp),
        torch.ones(4, 1, dtype=torch.bool),
        torch.tensor([[1.0, 1.0, 1.0, 0.0]]),
        torch.tensor([0.5, 0.5, 0.5, -1.5], dtype=torch.float64),
    )
    st = offpolicy_stats(Config(), mb)
    assert st["offpolicy/grpo_token/pos_zeroed_frac"] == pytest.approx(1 / 3)  # e^0.3 = 1.35 > 1.2
    assert st["offpolicy/s_abs_max"] == pytest.approx(0.4)
    assert st["offpolicy/real/pos_corr_w_s"] < 0  # REAL: weight falls as s rises
    assert "offpolicy/clip/pos_zeroed_frac" not in st  # no training clip passed
    assert 0 < st["offpolicy/real/max_w_times_tau"] < 1  # |W| < 1/tau
    # GRPO token weights: 0 (cut), 0.5 e^0.1, 0.5 e^-0.2 for positives, 1.5 e^0.4 for the negative (ratio > 1)
    w = [0.0, 0.5 * torch.e**0.1, 0.5 * torch.e**-0.2, 1.5 * torch.e**0.4]
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
    # make study on the same grid: the runs are shared, only their test evaluations and notebook 08 run
    study = [c if c != "sweep" else "study" for c in cmd if c != "SWEEP=smoke"] + ["STUDY=smoke"]
    res = subprocess.run(study, cwd=repo, env=make_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert ">>> [smoke] sweep run" not in res.stdout and res.stdout.count(">>> [smoke] test evaluation") == len(names)
    protocols = pd.read_csv(repo / "runs/smoke/tables/protocols-smoke.csv")
    assert set(protocols.protocol) == {"one lr", "tuned lr"} and set(protocols.grad_clip) == {"fixed", "off"}


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
    assert len(table) == 8 and set(table.method) == {"real"}  # one row per (M, lr, clip) cell; GRPO is the reference
    assert np.allclose(table["diff"], 0.4) and (table["low"] > 0).all()
    assert set(table.verdict) == {"real better than grpo"}


def test_paired_cells_score_the_last_evaluations_not_the_final_one(tmp_path):
    """REAL beats GRPO at the two evaluations before the final one and loses the final one:
    over the last 3 it is ahead."""
    from rewards_as_labels.sweep import load_grid, paired_cells, runs, sweep_dir

    grid = load_grid("smoke")
    ids = [f"validation-{i:05d}" for i in range(20)]
    for name, ov in runs(grid):
        folder = sweep_dir(tmp_path) / name
        folder.mkdir(parents=True)
        real = ov["method"] == "real"
        history = [[2] * 20, [2] * 20] if real else [[1] * 20, [1] * 20]
        final = [0] * 20 if real else [1] * 20
        (folder / "config.json").write_text(json.dumps({"eval_samples": 2}))
        (folder / "metrics.jsonl").write_text(
            "".join(
                json.dumps({"step": i, "eval/per_problem_correct": h, "eval/problem_ids": ids}) + "\n"
                for i, h in enumerate(history)
            )
        )
        (folder / "final.json").write_text(json.dumps({"eval/per_problem_correct": final, "eval/problem_ids": ids}))
    table = paired_cells(grid, tmp_path, n_boot=500)
    assert np.allclose(table["diff"], (1.0 + 1.0 + 0.0) / 3 - 0.5)  # REAL 2/3, GRPO 1/2


def _fake_study_run(folder, overrides, val, test, ids=("p0", "p1", "p2", "p3")):
    """A finished run of ``overrides`` whose validation score is ``val`` and test pass@1 ``test``
    (4 problems x 4 samples)."""
    folder.mkdir(parents=True)
    k = 4
    (folder / "config.json").write_text(json.dumps({**overrides, "eval_samples": k}))
    row = {"reward/mean": 0.5, "policy/entropy": 0.5, "train/grad_norm": 1.0}
    (folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "final.json").write_text(
        json.dumps(
            {"eval/pass@1": val, "eval/problem_ids": list(ids), "eval/per_problem_correct": [round(val * k)] * len(ids)}
        )
    )
    (folder / "test.json").write_text(
        json.dumps(
            {
                "samples": k,
                "benchmarks": {"test": {"problem_ids": list(ids), "per_problem_correct": [round(test * k)] * len(ids)}},
            }
        )
    )


def test_protocols_choose_the_lr_on_validation_and_score_on_test(tmp_path):
    """GRPO is best at the profile's lr 3e-4. REAL validates best at 1e-3; its TEST score would pick 3e-4
    (a leak would show), and at the one-lr protocol REAL loses to GRPO while the tuned protocol has it ahead."""
    grid = S.load_grid("smoke")  # lrs 3e-4 (the smoke profile's) and 1e-3; clips fixed and off
    for name, ov in S.runs(grid):
        real, lr = ov["method"] == "real", ov["learning_rate"]
        val, test = {
            (True, 3e-4): (0.25, 0.25),
            (True, 1e-3): (0.75, 0.75),
            (False, 3e-4): (0.5, 0.5),
            (False, 1e-3): (0.25, 0.25),
        }[real, lr]
        if real and lr == 1e-3 and ov["grad_clip"] == "off":
            val, test = 0.75, 0.0  # chosen on validation although its test score is the worst
        _fake_study_run(S.sweep_dir(tmp_path) / name, ov, val, test)
    table = S.protocol_comparison(grid, tmp_path, n_boot=200)
    assert len(table) == 2 * 2 * 2 * 2  # protocols x M x clips x methods
    table = table[table.minibatches == 2].set_index(["protocol", "grad_clip", "method"])
    assert table.loc[("one lr", "fixed", "real"), "verdict"] == "grpo better than real"
    assert table.loc[("tuned lr", "fixed", "real"), "lr"] == 1e-3
    assert table.loc[("tuned lr", "fixed", "real"), "verdict"] == "real better than grpo"
    assert table.loc[("tuned lr", "off", "real"), "lr"] == 1e-3  # validation decides, never test
    assert table.loc[("tuned lr", "off", "real"), "test_pass@1"] == 0.0
    assert np.isnan(table.loc[("one lr", "fixed", "grpo"), "diff"])  # the reference


def test_protocols_need_the_profiles_lr_on_the_grid(tmp_path):
    grid = S.load_grid("smoke")
    grid.learning_rates = [1e-3]
    with pytest.raises(ValueError, match="must include its profile's learning rate 0.0003"):
        S.protocol_comparison(grid, tmp_path)
