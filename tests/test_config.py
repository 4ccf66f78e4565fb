"""Profiles shipped with the package and the user's own, and the one run-name rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from rewards_as_labels.config import PACKAGE_PROFILES, load_config, parse_run_name, profile_path, run_name
from rewards_as_labels.results import run_folders

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_profiles_are_package_data():
    # a non-editable install carries exactly what pyproject's package-data names
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "rewards_as_labels"
    ]
    shipped = {p.relative_to(PACKAGE_PROFILES.parent) for g in globs for p in PACKAGE_PROFILES.parent.glob(g)}
    assert {Path("configs") / f"{name}.yaml" for name in ("tiny", "smoke", "smollm2", "paper_small")} <= shipped


def test_profile_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./configs here: the package's own profile
    assert profile_path("smoke") == PACKAGE_PROFILES / "smoke.yaml"
    assert load_config(profile="smoke").total_steps == 2


def test_own_profile_in_working_folder_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.yaml").write_text("total_steps: 7\n")
    (tmp_path / "configs" / "mine.yaml").write_text("total_steps: 3\nmethod: grpo\n")
    assert load_config(profile="smoke").total_steps == 7  # shadows the shipped smoke
    cfg = load_config(profile="mine")
    assert (cfg.profile, cfg.total_steps, cfg.method) == ("mine", 3, "grpo")
    with pytest.raises(ValueError, match="unknown profile 'huge'.*mine.*tiny"):
        load_config(profile="huge")


@pytest.mark.parametrize("method, seed", [("real", 0), ("gspo", 12)])
def test_run_name_round_trip(method, seed):
    assert parse_run_name(run_name(method, seed)) == (method, seed)
    assert load_config(profile="smoke", overrides={"method": method, "seed": seed}).run_dir.name == run_name(
        method, seed
    )


@pytest.mark.parametrize("name", ["real", "real-s", "real-sx", "-s0", "straight"])
def test_parse_run_name_refuses_other_names(name):
    with pytest.raises(ValueError, match="not a run name"):
        parse_run_name(name)


def test_run_folders_in_method_then_seed_order(tmp_path):
    for name in ("grpo-s1", "real-s10", "real-s2", "notes", "gspo-s0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("")
    assert [p.name for p in run_folders(tmp_path)] == ["real-s2", "real-s10", "grpo-s1", "gspo-s0", "notes"]
