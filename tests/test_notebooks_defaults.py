"""Every notebook runs top to bottom from its default parameters, in a fresh kernel, nothing edited.

The notebooks are executed with NO parameters injected, in order (01, 02: nothing needed;
03 -> 04 -> 05: each reads what the one before wrote; 07 reads 03's runs; 09, the claims ledger, every table
written before), from a working folder laid out as a user's after ``make data warmstart``, i.e. the way
``make lab`` starts its kernels (in the project folder).
Their default profile is ``tiny``; so that this test takes about a minute rather than the ~20 of
a real tiny run, the folder holds its own ``configs/tiny.yaml`` with the smoke profile's sizes
(``./configs/<profile>.yaml`` wins over the package's profile, as for any user). What is checked
is that no notebook needs a parameter, an edit or a file that the documented order does not make;
the science of tiny is checked elsewhere. The stored outputs are also checked for progress-bar
clutter (tests/test_progress.py checks the mechanism).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from rewards_as_labels.__main__ import main as cli
from rewards_as_labels.config import PACKAGE_PROFILES
from rewards_as_labels.tools.notebook import run_notebook

ROOT = Path(__file__).resolve().parents[1]
ORDER = [
    "01_derivations",
    "02_autograd_verification",
    "03_train",
    "04_evaluate",
    "05_figures",
    "06_stability",
    "07_mechanism",
    "08_protocols",
    "09_claims",
]


def test_the_documented_order_covers_every_notebook():
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == sorted(ORDER)


@pytest.mark.slow
def test_each_notebook_runs_from_its_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # ipykernel captures fds 1 and 2 as under make
    small = yaml.safe_load((PACKAGE_PROFILES / "smoke.yaml").read_text())
    small.update(profile="tiny", data_dir="runs/tiny/data")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/tiny.yaml").write_text(yaml.safe_dump(small))
    assert cli(["data", "--no-progress"]) in (0, None)  # make data
    assert cli(["warmstart", "--no-progress"]) in (0, None)  # make warmstart
    # notebook 06 reads a finished sweep: here the smoke grid stands in for ./configs/sweeps/default.yaml
    from rewards_as_labels.sweep import load_grid, runs

    grid = yaml.safe_load((PACKAGE_PROFILES / "sweeps" / "smoke.yaml").read_text())
    (tmp_path / "configs/sweeps").mkdir()
    for default_grid in ("default", "tiny-clip"):  # notebooks 06 and 08 (whose default study is tiny-clip)
        (tmp_path / f"configs/sweeps/{default_grid}.yaml").write_text(yaml.safe_dump({**grid, "profile": "tiny"}))
    for name in ORDER:
        if name == "06_stability":  # make sweep: the grid's runs, each an ordinary training run
            for run, overrides in runs(load_grid("default")):
                args = [f"{k}={v}" for k, v in overrides.items()]
                assert cli(["train", "--no-progress", *args, f"out=runs/tiny/sweep/{run}"]) in (0, None)
        if name == "08_protocols":  # make study: the same runs (shared), each also evaluated on test
            for run, overrides in runs(load_grid("tiny-clip")):
                args = [f"{k}={v}" for k, v in overrides.items()]
                assert cli(["test", *args, f"out=runs/tiny/sweep/{run}"]) in (0, None)
        out = run_notebook(
            ROOT / "notebooks" / f"{name}.ipynb", tmp_path / "executed" / f"{name}.ipynb", progress=False
        )
        nb = nbformat.read(out, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert not injected, f"{name}: parameters were injected"
        stored = json.dumps([c.get("outputs", []) for c in nb.cells])
        for clutter in ("TqdmWarning", "IProgress", "it/s]", "Loading weights"):
            assert clutter not in stored, f"{name}: {clutter}"
    assert (tmp_path / "runs/tiny/real-s0/final.json").is_file()
    assert (tmp_path / "runs/tiny/tables/comparison.csv").is_file()
    assert (tmp_path / "runs/tiny/tables/stability.csv").is_file()
    assert (tmp_path / "runs/tiny/tables/protocols-tiny-clip.csv").is_file()
    assert (tmp_path / "runs/tiny/tables/mechanism.csv").is_file()
    assert (tmp_path / "runs/tiny/tables/dynamics.csv").is_file()  # notebook 09, from the run folders
    assert (tmp_path / "results/claims.csv").is_file()
