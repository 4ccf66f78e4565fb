"""The generated task: determinism, disjoint splits, exact answers, atomic files, clear errors."""

import hashlib
import json
import os

import pytest

from rewards_as_labels.arithmetic import SPLITS, generate_splits, write_splits
from rewards_as_labels.config import load_config
from rewards_as_labels.data import load_split
from rewards_as_labels.io import atomic_directory, atomic_write_json, atomic_write_text


def _cfg(tmp_path, **overrides):
    return load_config(profile="smoke", overrides={"data_dir": str(tmp_path / "data"), **overrides})


def test_generation_is_deterministic_and_sized(tmp_path):
    cfg = _cfg(tmp_path)
    a, b = generate_splits(cfg), generate_splits(cfg)
    assert a == b
    assert {k: len(v) for k, v in a.items()} == {"sft": 2000, "train": 500, "validation": 16, "test": 16}
    assert generate_splits(_cfg(tmp_path, data_seed=7))["test"] != a["test"]


def test_held_out_splits_do_not_depend_on_training_sizes(tmp_path):
    small, big = generate_splits(_cfg(tmp_path)), generate_splits(_cfg(tmp_path, n_sft=3000))
    assert small["test"] == big["test"] and small["validation"] == big["validation"]


def test_splits_are_disjoint_even_up_to_commutation(tmp_path):
    def key(question):  # "47+385" and "385+47" are one problem
        op = "+" if "+" in question else "*"
        a, b = question.split(op)
        return op, *sorted((int(a), int(b)))

    keys = {
        split: [key(p.question) for p in problems]
        for split, problems in generate_splits(_cfg(tmp_path, operations="+*")).items()
    }
    assert all(len(set(k)) == len(k) for k in keys.values())  # no repeats inside a split
    assert len(set().union(*keys.values())) == sum(len(k) for k in keys.values())  # none across


@pytest.mark.parametrize("operations", ["+", "-", "*", "+-*"])
def test_answers_are_exact(tmp_path, operations):
    for problems in generate_splits(_cfg(tmp_path, operations=operations)).values():
        for p in problems[:300]:
            assert p.prompt == p.question + "="
            assert p.answer == str(eval(p.question))  # the generator is our own, eval is safe here
            assert not p.answer.startswith("-")  # "-" swaps operands to stay non-negative
            operands = [int(x) for x in p.question.replace("-", "+").replace("*", "+").split("+")]
            assert p.level == max(len(str(x)) for x in operands)
            assert all(len(str(x)) in (2, 3) for x in operands)


def test_write_is_idempotent_and_loads_back(tmp_path):
    cfg = _cfg(tmp_path)
    folder = write_splits(cfg)
    stamps = {s: os.stat(folder / f"{s}.jsonl").st_mtime_ns for s in SPLITS}
    assert write_splits(cfg) == folder
    assert stamps == {s: os.stat(folder / f"{s}.jsonl").st_mtime_ns for s in SPLITS}
    assert load_split(cfg, "test") == generate_splits(cfg)["test"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sizes"]["sft"] == 2000 and manifest["data_seed"] == cfg.data_seed
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_files_are_the_recorded_bytes(tmp_path):
    """The splits (problems, ids, order, JSON) are exactly those written before the data layer was
    split into modules: recorded training metrics depend on them. sha256 of the smoke profile's files."""
    folder = write_splits(_cfg(tmp_path))
    recorded = {
        "sft": "5edb46cd4cdf616e567b3634be47bec40832a5a892a02c3eed5e4dc48540c220",
        "train": "d8049976f56c6d80830568f3468c69ce617d160dc578839577f32f5536183f43",
        "validation": "54b7adf8be17bb82bf9a583b575ea775d55349e7c1923652b6f59af9d92f7333",
        "test": "4d1d378cb22d2af66937899e8f355444180058397b8bea78a8c183cd1cea1387",
    }
    assert {s: hashlib.sha256((folder / f"{s}.jsonl").read_bytes()).hexdigest() for s in SPLITS} == recorded


def test_missing_data_names_make_data(tmp_path):
    with pytest.raises(ValueError, match="make data PROFILE=smoke"):
        load_split(_cfg(tmp_path), "train")


def test_stale_manifest_is_refused(tmp_path):
    write_splits(_cfg(tmp_path))
    with pytest.raises(ValueError, match="stale data.*data_seed.*make data"):
        load_split(_cfg(tmp_path, data_seed=99), "train")
    with pytest.raises(ValueError, match="stale data.*sizes"):
        load_split(_cfg(tmp_path, n_test=17), "test")


def test_unknown_split_and_bad_operations(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        load_split(_cfg(tmp_path), "dev")
    with pytest.raises(ValueError, match="operations"):
        generate_splits(_cfg(tmp_path, operations="/"))


def test_atomic_writes_replace_and_clean_up(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]

    folder = tmp_path / "model"
    with atomic_directory(folder) as tmp:
        (tmp / "old.txt").write_text("1")
    with atomic_directory(folder) as tmp:
        (tmp / "new.txt").write_text("2")
    assert [p.name for p in folder.iterdir()] == ["new.txt"]
    with pytest.raises(RuntimeError):
        with atomic_directory(folder) as tmp:
            (tmp / "half.txt").write_text("3")
            raise RuntimeError("crash mid-write")
    # the failed write left the previous folder intact and no temp folder behind
    assert [p.name for p in folder.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "sub"]
