"""Reference results: publish copies a run's tables with their provenance, compare pairs a rerun with
them, and the README's quoted tables are the committed files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rewards_as_labels.reference import compare, main, publish, sync_readme

ROOT = Path(__file__).resolve().parents[1]


def _per_problem(folder: Path, shift: dict[str, int]) -> None:
    """per_problem.csv of base + real + grpo, 2 seeds x 50 problems x 8 samples; ``shift`` adds correct samples."""
    rng = np.random.default_rng(0)
    rows = []
    for method, seeds in (("base", ["-"]), ("real", ["0", "1"]), ("grpo", ["0", "1"])):
        for seed in seeds:
            correct = rng.integers(0, 6, size=50) + shift.get(method, 0)
            rows.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "seed": seed,
                        "benchmark": "test",
                        "problem_id": [f"test-{i}" for i in range(50)],
                        "correct": correct,
                        "samples": 8,
                    }
                )
            )
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat(rows).to_csv(folder / "per_problem.csv", index=False)


def test_publish_copies_the_tables_with_their_provenance(tmp_path):
    run = tmp_path / "runs" / "tiny"
    _per_problem(run / "tables", {})
    (run / "tables" / "comparison.md").write_text("| m |\n")
    (run / "tables" / "scratch.txt").write_text("not a summary table")
    written = publish(run, tmp_path / "results" / "tiny", command="make reproduce")
    assert sorted(p.name for p in written) == ["comparison.md", "per_problem.csv", "provenance.json"]
    record = json.loads((tmp_path / "results/tiny/provenance.json").read_text())
    assert record["command"] == "make reproduce" and record["machine"]["cpus"] and "torch" in record["versions"]
    assert record["tables"] == ["comparison.md", "per_problem.csv"] and record["commit"]


def test_publish_from_a_clean_checkout_records_no_uncommitted_changes(tmp_path, monkeypatch):
    """The flag describes the code that ran, so the results a publish rewrites do not set it; an edited
    tracked file does."""

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    git("init", "-q")
    _per_problem(tmp_path / "results/tiny", {})
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "first")
    _per_problem(tmp_path / "runs/tiny/tables", {"real": 1})
    monkeypatch.chdir(tmp_path)
    publish(Path("runs/tiny"), Path("results/tiny"), command="make reproduce")
    record = json.loads((tmp_path / "results/tiny/provenance.json").read_text())
    assert record["uncommitted_changes"] is False and len(record["commit"]) == 40
    (tmp_path / "code.py").write_text("x = 2\n")
    publish(Path("runs/tiny"), Path("results/tiny"), command="make reproduce")
    assert json.loads((tmp_path / "results/tiny/provenance.json").read_text())["uncommitted_changes"] is True


def test_publishing_a_study_keeps_where_the_profiles_tables_came_from(tmp_path):
    run, study = tmp_path / "runs/tiny", tmp_path / "study/runs/tiny"
    _per_problem(run / "tables", {})
    (study / "tables").mkdir(parents=True)
    (study / "tables" / "protocols-tiny-lr.md").write_text("| protocol |\n")
    out = tmp_path / "results/tiny"
    publish(run, out, command="make reproduce")
    publish(study, out, command="make study STUDY=tiny-lr")
    record = json.loads((out / "provenance.json").read_text())
    assert record["command"] == "make study STUDY=tiny-lr" and record["tables"] == ["protocols-tiny-lr.md"]
    assert record["by_table"]["per_problem.csv"]["command"] == "make reproduce"
    assert record["by_table"]["per_problem.csv"]["run"] == str(run)
    assert record["by_table"]["protocols-tiny-lr.md"]["command"] == "make study STUDY=tiny-lr"


def test_publish_of_an_empty_run_names_the_step(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make reproduce`"):
        publish(tmp_path / "runs" / "tiny", tmp_path / "results")


def test_compare_finds_a_rerun_the_same_or_moved(tmp_path):
    _per_problem(tmp_path / "ref", {})
    _per_problem(tmp_path / "same" / "tables", {})
    _per_problem(tmp_path / "moved" / "tables", {"real": 2})  # +2 of 8 samples on every problem: +25 points
    same = compare(tmp_path / "same", tmp_path / "ref", n_boot=500).set_index("method")
    assert set(same.verdict) == {"the same (bit for bit)"} and same.loc["real", "seeds"] == 2
    moved = compare(tmp_path / "moved", tmp_path / "ref", n_boot=500).set_index("method")
    assert (
        moved.loc["real", "diff"] == pytest.approx(0.25)
        and moved.loc["real", "verdict"] == "fresh better than reference"
    )
    assert moved.loc["grpo", "verdict"] == "the same (bit for bit)"


def test_compare_cli_prints_one_line_per_method_and_names_a_missing_reference(tmp_path, capsys):
    _per_problem(tmp_path / "ref", {})
    _per_problem(tmp_path / "run" / "tables", {})
    assert main(["compare", "--run", str(tmp_path / "run"), "--ref", str(tmp_path / "ref")]) == 0
    out = capsys.readouterr().out
    assert "real" in out and "grpo" in out and "+0.0 [+0.0, +0.0]" in out
    assert main(["compare", "--run", str(tmp_path / "run"), "--ref", str(tmp_path / "nope")]) == 2
    assert "per_problem.csv is missing (reference results)" in capsys.readouterr().err


def test_the_readmes_tables_are_the_committed_results():
    """Every table the README quotes between result markers is the file under results/, as committed."""
    assert sync_readme(ROOT / "README.md", ROOT) == []


def test_publish_cli_records_the_command(tmp_path, capsys):
    _per_problem(tmp_path / "runs/tiny/tables", {})
    out = tmp_path / "results/tiny"
    assert (
        main(["publish", "--run", str(tmp_path / "runs/tiny"), "--out", str(out), "--command", "make reproduce"]) == 0
    )
    assert json.loads((out / "provenance.json").read_text())["command"] == "make reproduce"
    assert "wrote" in capsys.readouterr().out
