"""Shared fixtures: the smoke profile's data and warm start, built once per test session.

``smoke_base`` holds ``(root, overrides)``: a private folder with the smoke splits and the
warm start under ``runs/smoke/warmstart`` (relative to ``root``, as the trainer expects), and
the overrides that point a smoke config at them. ``smoke_cfg(**overrides)`` builds a smoke
config with the working folder moved to ``root`` for the test (restored afterwards).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rewards_as_labels.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory):
    """Smoke-profile data and warm start in a private folder, shared by every test of the session."""
    from rewards_as_labels.arithmetic import write_splits
    from rewards_as_labels.warmstart import warmstart

    root = tmp_path_factory.mktemp("smoke")
    overrides = {"data_dir": str(root / "data")}
    old = os.getcwd()
    os.chdir(root)  # runs/<profile>/warmstart is relative to the working folder
    try:
        cfg = load_config(profile="smoke", overrides=overrides)
        write_splits(cfg)
        warmstart(cfg)
    finally:
        os.chdir(old)
    return root, overrides


@pytest.fixture
def smoke_cfg(smoke_base, monkeypatch):
    """``smoke_cfg(**overrides)``: a smoke config over the shared warm start; cwd is its folder."""
    root, base = smoke_base
    monkeypatch.chdir(root)

    def make(**overrides):
        return load_config(profile="smoke", overrides={**base, **overrides})

    return make
