"""What ``make figures`` computes before it plots: the comparison table, the "clearly above the base"
rule, and the one JSON-lines reader every loader uses (run folders and sweep runs alike)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rewards_as_labels import sweep as S
from rewards_as_labels.io import read_jsonl
from rewards_as_labels.results import (
    CANNOT_TELL,
    base_verdicts,
    comparison_table,
    load_metrics,
    load_weight_samples,
    write_comparison,
)


def _evaluation() -> pd.DataFrame:
    # base 0.30; real: +10 and +12 points (clear); grpo: one seed below the base; gspo: gain inside the seed spread
    return pd.DataFrame(
        {
            "method": ["base", "real", "real", "grpo", "grpo", "gspo", "gspo"],
            "seed": ["-", "0", "1", "0", "1", "0", "1"],
            "pass@1": [0.30, 0.40, 0.42, 0.29, 0.51, 0.31, 0.37],
            "pass@8": [0.60, 0.70, 0.72, 0.65, 0.75, 0.61, 0.66],
            "greedy": [0.35, 0.45, 0.47, 0.40, 0.50, 0.36, 0.39],
        }
    )


def test_base_verdicts_need_gain_above_spread_and_every_seed_above_base():
    v = base_verdicts(_evaluation())
    assert list(v.index) == ["real", "grpo", "gspo"]  # the paper's method order, base left out
    assert v.loc["real", "gain"] == pytest.approx(11.0)  # (0.41 - 0.30) x 100
    assert v.loc["real", "sd"] == pytest.approx(100 * pd.Series([0.40, 0.42]).std())
    assert v["clearly_above"].to_dict() == {"real": True, "grpo": False, "gspo": False}
    assert v.loc["real", "verdict"].startswith("clearly above the base")
    assert v.loc["grpo", "verdict"] == "not clearly above the base"  # +10 mean, but seed 0 ends below the base
    assert v.loc["gspo", "verdict"] == "not clearly above the base"  # +4 mean against an sd of 4.2
    assert v.loc["real", "mean"] == pytest.approx(0.41) and v.loc["real", "base"] == pytest.approx(0.30)


def test_one_seed_has_no_spread_to_beat():
    ev = pd.DataFrame({"method": ["base", "real"], "pass@1": [0.3, 0.31]})
    assert base_verdicts(ev).loc["real", ["sd", "clearly_above"]].tolist() == [0.0, True]


def test_base_verdicts_without_a_base_row_names_make_evaluate():
    with pytest.raises(ValueError, match="no 'base' row.*make evaluate"):
        base_verdicts(_evaluation().query("method != 'base'"))


def test_comparison_table_joins_the_paired_intervals(tmp_path):
    paired = pd.DataFrame(
        {
            "diff": [-0.005, 0.031],
            "low": [-0.02, 0.012],
            "high": [0.01, 0.05],
            "seeds": [2, 2],
            "verdict": [CANNOT_TELL, "gspo better than grpo"],
        },
        index=["real", "gspo"],
    )
    table = comparison_table(_evaluation(), paired, reference="grpo")
    assert list(table.index) == ["base", "real", "grpo", "gspo"]
    assert list(table.columns) == [
        "pass@1",
        "pass@8",
        "greedy",
        "seeds",
        "pass@1 − grpo (points, 95% CI: seeds, then problems)",
        "vs grpo",
    ]
    assert table.loc["base", "pass@1"] == "0.300"  # one value: no spread printed
    assert table.loc["real", "pass@1 − grpo (points, 95% CI: seeds, then problems)"] == "-0.5 [-2.0, +1.0]"
    assert table.loc["gspo", "vs grpo"] == "gspo better than grpo"
    assert table.loc["grpo", "vs grpo"] == "(reference)" and table.loc["base", "vs grpo"] == ""
    csv, md = write_comparison(table, tmp_path / "tables")
    assert pd.read_csv(csv, index_col=0).loc["real", "pass@1"] == "0.410 ± 0.014"
    assert "| gspo" in md.read_text() and "±" in md.read_text()


def test_comparison_table_without_paired_statistics_or_pass_at_k():
    assert list(comparison_table(_evaluation()).columns) == ["pass@1", "pass@8", "greedy", "seeds"]
    with pytest.raises(ValueError, match="no pass@k column"):
        comparison_table(_evaluation().drop(columns="pass@8"))


def test_read_jsonl_names_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n\n{"step": 1\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 3 is not JSON"):
        read_jsonl(path)
    path.write_text('{"step": 0}\n\n{"step": 1}\n')
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]


def _fake_run(folder, method: str, seed: int, steps: int = 2, final: bool = True):
    folder.mkdir(parents=True)
    rows = [{"step": s, "method": method, "seed": seed, "reward/mean": 0.1 * s} for s in range(steps)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if final:
        final_row = {"step": steps, "method": method, "seed": seed, "eval/pass@1": 0.5}
        (folder / "final.json").write_text(json.dumps(final_row))
    sample = {
        "step": 0,
        "method": method,
        "s": [0.1, -0.2],
        "label": [1, 0],
        "w_real": [0.5, 0.4],
        "w_grad": [0.6, 0.3],
        "s_token": [0.0, 0.1, 0.2],
        "a_token": [1.0, -1.0, 1.0],
        "w_grpo": [1.0, 1.1, 0.0],
    }
    (folder / "weight_samples.jsonl").write_text(json.dumps(sample) + "\n")


def test_profile_and_sweep_loaders_read_runs_the_same_way(tmp_path):
    # a profile run and a sweep run with the same files give the same metric rows and weight samples
    _fake_run(tmp_path / "real-s1", "real", 1)
    grid = S.load_grid("smoke")
    name, ov = next((n, o) for n, o in S.runs(grid) if o["minibatches_per_step"] >= 2)
    _fake_run(S.sweep_dir(tmp_path) / name, ov["method"], ov["seed"])
    profile = load_metrics(tmp_path)
    sweep = S.load_sweep_metrics(grid, tmp_path)
    assert profile["step"].tolist() == sweep["step"].tolist() == [0, 1, 2]  # the final validation is the last row
    cell = [name, ov["minibatches_per_step"], ov["learning_rate"]]
    assert sweep[["run", "minibatches", "lr"]].iloc[0].tolist() == cell
    (roll, tok), (sroll, stok) = load_weight_samples(tmp_path), S.load_sweep_weight_samples(grid, tmp_path)
    assert roll[["s", "label", "w_real", "w_grad", "step"]].equals(sroll[["s", "label", "w_real", "w_grad", "step"]])
    assert tok["w_grpo"].tolist() == stok["w_grpo"].tolist() == [1.0, 1.1, 0.0]
    assert roll["seed"].tolist() == [1, 1] and sroll["seed"].tolist() == [ov["seed"]] * 2


def test_weight_samples_without_rows_keep_their_columns(tmp_path):
    # early smoke runs log samples with no rollout in a mixed group: empty lists, yet the figure selects by column
    _fake_run(tmp_path / "real-s0", "real", 0)
    columns = ("s", "label", "w_real", "w_grad", "s_token", "a_token", "w_grpo")
    empty = {"step": 0, "method": "real", **{k: [] for k in columns}}
    (tmp_path / "real-s0" / "weight_samples.jsonl").write_text(json.dumps(empty) + "\n")
    roll, tok = load_weight_samples(tmp_path)
    assert len(roll) == len(tok) == 0
    assert {"method", "seed", "step", "s"} <= set(roll.columns) and {"method", "w_grpo"} <= set(tok.columns)


def test_only_finished_runs_are_evaluated(tmp_path, capsys):
    """A run still training (or stopped half-way) has checkpoints but no final.json: its mid-run
    checkpoint is not evaluated as the method's result, and its folder is left as it is."""
    from rewards_as_labels.config import load_config
    from rewards_as_labels.evaluation import models_to_evaluate

    for name, step, finished in (("real-s0", 50, True), ("grpo-s0", 25, False)):
        folder = tmp_path / name
        (folder / f"ckpt_{step:06d}" / "model").mkdir(parents=True)
        (folder / f"ckpt_{step:06d}" / "state.json").write_text("{}")
        (folder / "metrics.jsonl").write_text("")
        if finished:
            (folder / "final.json").write_text("{}")
    cfg = load_config(profile="tiny", overrides={"run_root": str(tmp_path)})
    models = models_to_evaluate(cfg)
    assert [(m, s) for m, s, _, _ in models] == [("base", "-"), ("real", "0")]
    assert models[1][2] == tmp_path / "real-s0" / "ckpt_000050" / "model"
    assert f"skipped {tmp_path / 'grpo-s0'}: not finished" in capsys.readouterr().out
    assert (tmp_path / "grpo-s0" / "ckpt_000025" / "state.json").is_file()


def _counts(counts: dict[str, list[int]], samples: int = 8) -> pd.DataFrame:
    return pd.concat(
        pd.DataFrame(
            {
                "method": m,
                "seed": "-" if m == "base" else "0",
                "benchmark": "test",
                "problem_id": [str(i) for i in range(len(c))],
                "correct": c,
                "samples": samples,
            }
        )
        for m, c in counts.items()
    )


def test_headroom_counts_the_problems_left_to_separate_the_methods():
    """6 problems every method solves (8/8 and 7/8), 2 no trained run ever solves (the base once), 2
    where REAL and GRPO differ: 8 of 10 decided alike, which is the saturation rule's 80%."""
    from rewards_as_labels.results import headroom

    counts = {"base": [1] * 6 + [1, 0, 0, 0], "real": [8] * 6 + [0, 0, 8, 8], "grpo": [7] * 6 + [0, 0, 4, 2]}
    table, s = headroom(_counts(counts))
    assert (s["problems"], s["solved_by_every_method"], s["solved_by_none"]) == (10, 0.6, 0.2)
    assert s["separating"] == pytest.approx(0.2) and s["saturated"] and s["ceiling"] == 0.8
    assert s["sentence"].startswith("The task saturates") and "leaves 2 (20%)" in s["sentence"]
    assert list(table.index) == ["base", "real", "grpo"]
    assert table.loc["grpo", "pass@1"] == pytest.approx((6 * 7 + 6) / 80)
    assert table.loc["base", "solved at least once"] == pytest.approx(0.7)

    counts["grpo"][0] = 6  # one problem fewer decided alike: 70% < 80%
    assert not headroom(_counts(counts))[1]["saturated"]
    with pytest.raises(ValueError, match="trained runs besides the base"):
        headroom(_counts({"base": [1, 2]}))
