"""The claims ledger, regenerated from small fixture tables and runs: each verdict rule on a case that
must come out reproduced, contradicted and cannot be told apart, missing tables as not run with their
command, and notebook 09 on a fixture folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rewards_as_labels import claims as C
from rewards_as_labels.tools.notebook import run_notebook

ROOT = Path(__file__).resolve().parents[1]
N_BOOT = 500


def _per_problem(folder: Path, shifts: dict, seeds=("0", "1", "2"), n: int = 60) -> None:
    """per_problem.csv: every method answers the same ``n`` test problems in each seed; ``shifts`` adds
    correct samples (of 8) to one base draw per seed (a number, or one value per problem)."""
    base = np.random.default_rng(0).integers(1, 6, size=(len(seeds), n))  # [seeds, problems], 1..5 of 8
    rows = [
        pd.DataFrame(
            {
                "method": "base",
                "seed": "-",
                "benchmark": "test",
                "problem_id": [f"t{i}" for i in range(n)],
                "correct": base[0],
                "samples": 8,
            }
        )
    ]
    for method, shift in shifts.items():
        for i, seed in enumerate(seeds):
            rows.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "seed": seed,
                        "benchmark": "test",
                        "problem_id": [f"t{i}" for i in range(n)],
                        "correct": np.clip(base[i] + np.asarray(shift), 0, 8),
                        "samples": 8,
                    }
                )
            )
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat(rows).to_csv(folder / "per_problem.csv", index=False)


def _ledger(tmp_path: Path, profiles=("tiny",)) -> pd.DataFrame:
    return C.build_ledger(list(profiles), runs_root=tmp_path / "runs", results_root=tmp_path / "results", n_boot=N_BOOT)


def _row(ledger: pd.DataFrame, key: str, setting: str = "tiny") -> pd.Series:
    rows = ledger[(ledger.claim == C.CLAIMS[key]) & (ledger.setting == setting)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


ZERO_MEAN = np.tile([1, -1], 30)  # +1 and -1 sample on alternate problems: a difference of exactly 0


@pytest.mark.parametrize("real_shift, verdict", [(2, C.REPRODUCED), (-2, C.CONTRADICTED), (ZERO_MEAN, C.CANNOT_TELL)])
def test_pairwise_rule_real_against_grpo(tmp_path, real_shift, verdict):
    _per_problem(tmp_path / "runs/tiny/tables", {"real": real_shift, "grpo": 0})
    row = _row(_ledger(tmp_path), "real_grpo")
    assert row.verdict == verdict, row.measured
    assert row.source == str(tmp_path / "runs/tiny/tables/per_problem.csv")
    assert "3 seeds, hierarchical 95% CI" in row.protocol and "one lr 0.0003" in row.protocol
    if verdict == C.REPRODUCED:
        assert row.measured.startswith("REAL - GRPO +25.0 points [+25.0, +25.0]")  # +2 of 8 on every problem


def test_grad_against_dapo_uses_dapo_as_the_reference(tmp_path):
    _per_problem(tmp_path / "runs/tiny/tables", {"grad": 1, "dapo": 0, "real": 0, "grpo": 0})
    row = _row(_ledger(tmp_path), "grad_dapo")
    assert row.verdict == C.REPRODUCED and row.measured.startswith("GRAD - DAPO +12.5 points")


@pytest.mark.parametrize(
    "shifts, verdict",
    [
        ({"real": 3, "gspo": 2, "dapo": 1, "grpo": 0}, C.REPRODUCED),
        ({"real": 3, "gspo": 2, "dapo": 0, "grpo": 1}, C.CONTRADICTED),  # DAPO below GRPO
        ({"real": 3, "gspo": 1, "dapo": 1, "grpo": 0}, C.CANNOT_TELL),  # GSPO and DAPO identical: that pair cannot tell
    ],
)
def test_ordering_rule_needs_every_adjacent_pair(tmp_path, shifts, verdict):
    _per_problem(tmp_path / "runs/tiny/tables", shifts)
    row = _row(_ledger(tmp_path), "ordering")
    assert row.verdict == verdict, row.measured
    assert row.measured.count("points") == 3  # REAL-GSPO, GSPO-DAPO, DAPO-GRPO


def test_ordering_rule_on_its_own():
    assert C.ordering_verdict([C.REPRODUCED] * 3) == C.REPRODUCED
    assert C.ordering_verdict([C.CANNOT_TELL, C.CONTRADICTED, C.REPRODUCED]) == C.CONTRADICTED
    assert C.ordering_verdict([C.REPRODUCED, C.CANNOT_TELL, C.REPRODUCED]) == C.CANNOT_TELL
    with pytest.raises(ValueError, match="one measured verdict per adjacent pair"):
        C.ordering_verdict([C.REPRODUCED, C.NOT_RUN])


def test_a_profile_that_has_not_run_is_not_run_with_its_command(tmp_path):
    ledger = _ledger(tmp_path, ["smollm2", "paper_small"])
    assert set(ledger.verdict) == {C.NOT_RUN}
    assert set(ledger.setting) == {"smollm2", "paper_small"}
    for key in ("real_grpo", "ordering", "grad_dapo", "entropy", "weights", "misassign", "dominate"):
        assert _row(ledger, key, "smollm2").command == "make reproduce PROFILE=smollm2"
        row = _row(ledger, key, "paper_small")
        assert row.command == "make reproduce PROFILE=paper_small"
        assert "needs one GPU and the hub" in row.measured
    assert _row(ledger, "stability", "smollm2").command.startswith("make sweep SWEEP=")


def test_a_run_without_the_methods_a_claim_compares_names_them(tmp_path):
    _per_problem(tmp_path / "runs/smollm2/tables", {"real": 0, "grad": 0, "grpo": 0})
    ledger = _ledger(tmp_path, ["smollm2"])
    assert _row(ledger, "real_grpo", "smollm2").verdict != C.NOT_RUN
    row = _row(ledger, "grad_dapo", "smollm2")
    assert row.verdict == C.NOT_RUN and row.command == 'make reproduce PROFILE=smollm2 METHODS="real grad grpo dapo"'


def test_the_committed_copy_is_read_when_the_run_folder_lacks_the_table(tmp_path):
    _per_problem(tmp_path / "results/tiny", {"real": 2, "grpo": 0})
    row = _row(_ledger(tmp_path), "real_grpo")
    assert row.verdict == C.REPRODUCED and row.source == str(tmp_path / "results/tiny/per_problem.csv")
    _per_problem(tmp_path / "runs/tiny/tables", {"real": -2, "grpo": 0})  # a fresh run wins over the reference
    row = _row(_ledger(tmp_path), "real_grpo")
    assert row.verdict == C.CONTRADICTED and row.source == str(tmp_path / "runs/tiny/tables/per_problem.csv")


# ----------------------------------------------------------------------------- runs -> dynamics.csv -> entropy
def _run(profile_dir: Path, method: str, seed: int, entropy, extra: dict | None = None) -> None:
    """A finished run folder: metrics.jsonl with one line per step, final.json, config.json."""
    folder = profile_dir / f"{method}-s{seed}"
    folder.mkdir(parents=True)
    lines = [
        {
            "step": i,
            "method": method,
            "seed": seed,
            "policy/entropy": h,
            "reward/mean": 0.3,
            "groups/all_correct_frac": 0.1,
            **({"eval/pass@1": 0.3} if i % 5 == 0 else {}),
            **(extra or {}),
        }
        for i, h in enumerate(entropy)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "final.json").write_text(json.dumps({"eval/pass@1": 0.35}))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "method": method,
                "seed": seed,
                "learning_rate": 3e-4,
                "grad_clip": "fixed",
                "max_grad_norm": 1.0,
                "minibatches_per_step": 2,
                "eval_samples": 4,
            }
        )
    )


def _entropy_runs(profile_dir: Path, end: dict[str, list[float]]) -> None:
    """REAL and GRPO runs whose entropy falls linearly from 1.0 to ``end[method][seed]`` over 20 steps."""
    for method, ends in end.items():
        for seed, h1 in enumerate(ends):
            _run(profile_dir, method, seed, np.linspace(1.0, h1, 20).tolist())


@pytest.mark.parametrize(
    "ends, verdict",
    [
        ({"real": [0.6, 0.7], "grpo": [0.02, 0.05]}, C.REPRODUCED),  # the paper's picture
        ({"real": [0.05, 0.3], "grpo": [0.5, 0.6]}, C.CONTRADICTED),  # REAL keeps less in every seed
        ({"real": [0.5, 0.3], "grpo": [0.4, 0.4]}, C.CANNOT_TELL),  # neither collapses; REAL above in one seed
    ],
)
def test_entropy_rule_from_run_folders(tmp_path, ends, verdict):
    profile_dir = tmp_path / "runs/tiny"
    _entropy_runs(profile_dir, ends)
    path = C.write_dynamics(profile_dir)
    dyn = pd.read_csv(path)
    assert len(dyn) == 4 and dyn.entropy_start.eq(1.0).all()
    real0 = dyn[(dyn.method == "real") & (dyn.seed == 0)].iloc[0]
    assert real0.entropy_end == pytest.approx(np.linspace(1.0, ends["real"][0], 20)[-2:].mean())  # last 10% = 2 steps
    assert (real0.val_first, real0.val_last, real0.val_max) == (0.3, 0.35, 0.35)  # the final validation is last
    row = _row(_ledger(tmp_path), "entropy")
    assert row.verdict == verdict, row.measured
    assert "2 seeds paired by seed" in row.protocol and "20 steps" in row.protocol


def test_entropy_rule_thresholds():
    assert C.entropy_verdict({0: 0.21}, {0: 0.19}) == C.REPRODUCED  # just either side of 0.2
    assert C.entropy_verdict({0: 0.19}, {0: 0.05}) == C.CONTRADICTED  # REAL collapses too
    with pytest.raises(ValueError, match="share no seed"):
        C.entropy_verdict({0: 0.5}, {1: 0.5})


def test_unfinished_runs_stay_out_of_the_dynamics(tmp_path):
    _entropy_runs(tmp_path, {"real": [0.5]})
    (tmp_path / "real-s0/final.json").unlink()
    assert C.dynamics_table(tmp_path).empty and C.write_dynamics(tmp_path) is None


# ----------------------------------------------------------------------------- weights bound
def _derivation(folder: Path, checks=C.DERIVATION_CHECKS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"section": "6 monotone & bounded", "check": list(checks), "kind": "property"}).to_csv(
        folder / "derivation_checks.csv", index=False
    )


@pytest.mark.parametrize("max_w_tau, verdict", [(0.96, C.REPRODUCED), (1.0, C.CONTRADICTED)])
def test_weights_rule_needs_the_derivation_and_the_measured_bound(tmp_path, max_w_tau, verdict):
    profile_dir = tmp_path / "runs/tiny"
    _run(profile_dir, "real", 0, [0.5] * 10, {"offpolicy/real/max_w_times_tau": 0.5})
    _run(profile_dir, "grpo", 0, [0.5] * 10, {"offpolicy/real/max_w_times_tau": max_w_tau})
    C.write_dynamics(profile_dir)
    _derivation(profile_dir / "tables")
    row = _row(_ledger(tmp_path), "weights")
    assert row.verdict == verdict and f"{max_w_tau:.4f}" in row.measured
    assert "derivation_checks.csv" in row.source and "dynamics.csv" in row.source


def test_weights_rule_without_the_derivation_is_not_run(tmp_path):
    profile_dir = tmp_path / "runs/tiny"
    _run(profile_dir, "real", 0, [0.5] * 10, {"offpolicy/real/max_w_times_tau": 0.9})
    C.write_dynamics(profile_dir)
    row = _row(_ledger(tmp_path), "weights")
    assert row.verdict == C.NOT_RUN and row.command == "make derive PROFILE=tiny"
    _derivation(profile_dir / "tables", C.DERIVATION_CHECKS[:-1])  # an older table without every check
    assert _row(_ledger(tmp_path), "weights").verdict == C.NOT_RUN
    assert C.weights_verdict(None, 1.2) == C.CONTRADICTED  # a measured breach needs no derivation


# ----------------------------------------------------------------------------- stability sweep
def _stability(folder: Path, real_shift: float) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for M in (1, 2, 4):
        for lr in (1e-4, 3e-4):
            for seed in (0, 1, 2):
                score = rng.uniform(0.2, 0.4)
                for method, shift in (("real", real_shift), ("grpo", 0.0)):
                    rows.append(
                        {
                            "method": method,
                            "minibatches": M,
                            "lr": lr,
                            "grad_clip": "fixed",
                            "seed": seed,
                            "steps": 50,
                            "prompts_per_minibatch": 8,
                            "val_score": score + shift,
                            "final_pass@1": score,
                            "collapsed": False,
                            "offpolicy/real/max_w_times_tau": 0.9 if M > 1 else np.nan,
                        }
                    )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "stability.csv", index=False)


@pytest.mark.parametrize("shift, verdict", [(0.05, C.REPRODUCED), (-0.05, C.CONTRADICTED), (0.0, C.CANNOT_TELL)])
def test_stability_rule_over_the_off_policy_cells(tmp_path, shift, verdict):
    _stability(tmp_path / "results/tiny", shift)
    row = _row(_ledger(tmp_path), "stability")
    assert row.verdict == verdict, row.measured
    assert "over 4 off-policy cells" in row.measured and "M in {2, 4}" in row.protocol  # M = 1 is left out
    assert "(seeds, then cells)" in row.protocol


# ----------------------------------------------------------------------------- per-token mechanism
def _mechanism(folder: Path, corr: tuple[float, float, int], top1: tuple[float, float, int]) -> None:
    rows = [
        {"metric": m, "method": "grpo", "mean": mean, "sd": sd, "runs": runs, "offpolicy_steps": 40 * runs}
        for m, (mean, sd, runs) in (
            ("offpolicy/grpo_token/pos_corr_w_s", corr),
            ("offpolicy/grpo_token/neg_top1pct_share", top1),
        )
    ]
    rows.append(
        {
            "metric": "offpolicy/grpo_token/pos_zeroed_frac",
            "method": "grpo",
            "mean": 0.04,
            "sd": 0.01,
            "runs": 3,
            "offpolicy_steps": 120,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "mechanism.csv", index=False)


def test_per_token_threshold_rule(tmp_path):
    _mechanism(tmp_path / "runs/tiny/tables", corr=(0.1, 0.02, 3), top1=(0.07, 0.01, 3))
    ledger = _ledger(tmp_path)
    assert _row(ledger, "misassign").verdict == C.REPRODUCED  # interval above 0
    assert "clip zeroes 4.0% of positive tokens" in _row(ledger, "misassign").measured
    assert _row(ledger, "dominate").verdict == C.CONTRADICTED  # the top 1% carry far less than half
    _mechanism(tmp_path / "runs/tiny/tables", corr=(0.1, 0.3, 3), top1=(0.6, np.nan, 1))
    ledger = _ledger(tmp_path)
    assert _row(ledger, "misassign").verdict == C.CANNOT_TELL  # the t-interval over 3 runs covers 0
    dominate = _row(ledger, "dominate")
    assert dominate.verdict == C.CANNOT_TELL and "one run: no interval" in dominate.measured
    low, high = C.threshold_verdict(0.1, 0.3, 3, 0.0)[1:]
    assert high - low == pytest.approx(2 * 4.303 * 0.3 / np.sqrt(3))


# ----------------------------------------------------------------------------- protocol studies
def test_each_protocol_arm_is_its_own_row(tmp_path):
    rows = []
    for protocol, clip, diff in (("one lr", "fixed", -0.05), ("one lr", "off", 0.0), ("tuned lr", "fixed", 0.04)):
        rows += [
            {
                "protocol": protocol,
                "minibatches": 2,
                "grad_clip": clip,
                "method": "real",
                "lr": 3e-4,
                "test_pass@1": 0.4 + diff,
                "diff": diff,
                "low": diff - 0.02,
                "high": diff + 0.02,
                "seeds": 3,
                "verdict": "",
            },
            {
                "protocol": protocol,
                "minibatches": 2,
                "grad_clip": clip,
                "method": "grpo",
                "lr": 1e-4,
                "test_pass@1": 0.4,
                "diff": np.nan,
                "low": np.nan,
                "high": np.nan,
                "seeds": 3,
                "verdict": "",
            },
        ]
    folder = tmp_path / "runs/tiny/tables"
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "protocols-tiny-clip.csv", index=False)
    ledger = _ledger(tmp_path)
    arms = ledger[ledger.claim.str.startswith("REAL beats GRPO (study tiny-clip:")]
    assert list(arms.verdict) == [C.CONTRADICTED, C.CANNOT_TELL, C.REPRODUCED]
    assert "arm: tuned lr (REAL lr 0.0003, GRPO lr 0.0001), clip fixed at 1, M=2" in arms.protocol.iloc[2]
    lr_study = ledger[ledger.claim == "REAL beats GRPO (study tiny-lr)"].iloc[0]
    assert lr_study.verdict == C.NOT_RUN and lr_study.command == "make study STUDY=tiny-lr"


# ----------------------------------------------------------------------------- writing it
def test_write_ledger_writes_csv_and_markdown_and_refuses_a_bad_verdict(tmp_path):
    _per_problem(tmp_path / "runs/tiny/tables", {"real": 2, "grpo": 0})
    ledger = _ledger(tmp_path, ["tiny", "paper_small"])
    csv, md, grid, tiny = C.write_ledger(ledger, tmp_path / "results")  # paper_small never ran: no file of its own
    assert md.read_text().startswith(grid.read_text())  # the grid alone opens the full ledger
    assert tiny == tmp_path / "results/tiny/claims.md" and tiny.read_text().startswith("| claim ")
    assert "| REAL beats GRPO " in tiny.read_text() and "paper_small" not in tiny.read_text()
    back = pd.read_csv(csv, keep_default_na=False)
    assert list(back.columns) == C.COLUMNS and back.verdict.isin(C.VERDICTS).all() and len(back) == len(ledger)
    text = md.read_text()
    assert text.startswith("| claim ") and "| tiny " in text and "| paper_small " in text
    assert "make reproduce PROFILE=paper_small" in text
    grid = C.verdict_grid(ledger)
    assert grid.loc["REAL beats GRPO", "tiny"] == C.REPRODUCED and list(grid.columns) == ["tiny", "paper_small"]
    with pytest.raises(ValueError, match="unknown verdicts"):
        C.write_ledger(ledger.assign(verdict="probably"), tmp_path / "results")


def test_the_ledger_covers_every_shipped_profile_but_smoke():
    names = C.ledger_profiles()
    assert "smoke" not in names and names[:1] == ["tiny"] and {"smollm2", "paper_small"} <= set(names)


@pytest.mark.slow
def test_notebook_09_writes_the_ledger_from_fixture_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the kernel inherits it: runs/ and results/ live in tmp_path
    _per_problem(tmp_path / "runs/tiny/tables", {"real": 2, "grpo": 0, "grad": 1, "dapo": 0, "gspo": 0})
    _entropy_runs(tmp_path / "runs/tiny", {"real": [0.6], "grpo": [0.02]})
    run_notebook(
        ROOT / "notebooks/09_claims.ipynb",
        tmp_path / "runs/tiny/notebooks/09_claims.ipynb",
        {"profile": "tiny", "profiles": "tiny paper_small", "n_boot": 200},
        progress=False,
    )
    ledger = pd.read_csv(tmp_path / "results/claims.csv", keep_default_na=False)
    assert set(ledger.setting) == {"tiny", "paper_small"}
    assert (tmp_path / "runs/tiny/tables/dynamics.csv").is_file()  # written by the notebook from the run folders
    by_claim = ledger[ledger.setting == "tiny"].set_index("claim").verdict
    assert by_claim[C.CLAIMS["real_grpo"]] == C.REPRODUCED and by_claim[C.CLAIMS["entropy"]] == C.REPRODUCED
    assert (tmp_path / "results/claims.md").read_text().startswith("| claim ")
    assert (tmp_path / "runs/tiny/figures/claims.png").stat().st_size > 5_000
