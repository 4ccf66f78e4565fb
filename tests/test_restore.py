"""Finished runs travel as their records: each run's test.json is the evaluation make evaluate reads,
make publish archives the records (no weights) and make restore brings them back on another machine,
where the evaluation, figures and ledger read them as if the runs had trained there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rewards_as_labels.config import load_config
from rewards_as_labels.evaluation import evaluate_run, evaluate_runs, stored_test
from rewards_as_labels.reference import RECORD, main, publish, restore


def _test_json(folder: Path, samples: int = 2, ids=("t-0", "t-1"), checkpoint: str = "ckpt_000002") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.json").write_text(
        json.dumps(
            {
                "checkpoint": checkpoint,
                "samples": samples,
                "benchmarks": {"test": {"problem_ids": list(ids), "per_problem_correct": [1, 2], "pass@1": 0.75}},
            }
        )
    )


def test_a_test_json_is_read_only_when_it_holds_these_draws(tmp_path):
    sets = {"test": [SimpleNamespace(id="t-0"), SimpleNamespace(id="t-1")]}
    _test_json(tmp_path / "same")
    assert stored_test(tmp_path / "same", sets, samples=2)["benchmarks"]["test"]["pass@1"] == 0.75
    _test_json(tmp_path / "fewer", samples=1)
    _test_json(tmp_path / "other-problems", ids=("t-1", "t-0"))
    _test_json(tmp_path / "older-weights", checkpoint="ckpt_000001")
    (tmp_path / "older-weights" / "ckpt_000002").mkdir()
    (tmp_path / "older-weights" / "ckpt_000002" / "state.json").write_text("{}")  # trained on since
    for name in ("fewer", "other-problems", "older-weights", "none"):
        assert stored_test(tmp_path / name, sets, samples=2) is None, name
    assert stored_test(tmp_path / "same", {"math500": sets["test"]}, samples=2) is None


@pytest.mark.slow
def test_a_published_run_comes_back_without_its_weights_and_scores_the_same(smoke_base, tmp_path, monkeypatch, capsys):
    from rewards_as_labels.trainer import train

    root, base = smoke_base
    here, there = tmp_path / "here", tmp_path / "there"
    for machine in (here, there):
        shutil.copytree(root / "runs/smoke/warmstart", machine / "runs/smoke/warmstart")
    monkeypatch.chdir(here)
    cfg = load_config(profile="smoke", overrides=base)
    train(load_config(profile="smoke", overrides={**base, "method": "real", "seed": 0}), progress=False)
    run = Path("runs/smoke/real-s0")

    sampled = evaluate_runs(cfg)  # no test.json yet: every model sampled
    evaluate_run(cfg, run)  # make's per-run target
    capsys.readouterr()
    read = evaluate_runs(cfg)
    assert "real seed 0 test" in (out := capsys.readouterr().out) and "(its test.json)" in out
    for table in ("evaluation", "per_problem"):  # the same draws, whether sampled here or read
        pd.testing.assert_frame_equal(sampled[table], read[table])

    publish("runs/smoke", "results/smoke", command="make reproduce PROFILE=smoke")
    record = here / "results/smoke/runs/real-s0"
    assert sorted(p.name for p in record.iterdir()) == sorted(n for n in RECORD if (run / n).exists())
    assert "runs/real-s0" in json.loads((here / "results/smoke/provenance.json").read_text())["by_table"]

    monkeypatch.chdir(there)  # another machine: the records, no weights
    with pytest.raises(ValueError, match=r"real-s0: learning_rate=.* where profile smoke has 0.5"):
        restore(here / "results/smoke", "runs/smoke", "smoke", {**base, "learning_rate": "0.5"})
    assert not Path("runs/smoke/real-s0").exists()  # refused: nothing restored
    assert (
        main(
            ["restore", "--ref", str(here / "results/smoke"), "--run", "runs/smoke", "--profile", "smoke"]
            + [f"{k}={v}" for k, v in base.items()]
        )
        == 0
    )
    assert "restored runs/smoke/real-s0" in capsys.readouterr().out
    assert not list(Path("runs/smoke/real-s0").glob("ckpt_*"))
    again = evaluate_runs(cfg)
    assert "(its test.json)" in capsys.readouterr().out
    for table in ("evaluation", "per_problem"):
        pd.testing.assert_frame_equal(read[table], again[table])

    assert restore(here / "results/smoke", "runs/smoke", "smoke", base) == []  # present: kept as it is
    assert "kept runs/smoke/real-s0" in capsys.readouterr().out
    written = publish("runs/smoke", here / "results/smoke", command="make reproduce PROFILE=smoke")
    assert not [p for p in written if p.parent.parent.name == "runs"]  # restored records unchanged: not rewritten

    test_json = Path("runs/smoke/real-s0/test.json")
    test_json.write_text(json.dumps({**json.loads(test_json.read_text()), "samples": 99}))
    with pytest.raises(FileNotFoundError, match="holds no weights and its test.json is not this evaluation"):
        evaluate_runs(cfg)


def test_restore_without_published_runs_names_make_publish(tmp_path):
    with pytest.raises(FileNotFoundError, match="make publish writes them"):
        restore(tmp_path / "results/smoke", tmp_path / "runs/smoke", "smoke")
