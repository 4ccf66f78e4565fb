"""Shared fixtures: the smoke profile's data and warm start, built once per test session.

``smoke_base`` holds ``(root, overrides)``: a private folder with the smoke splits and the
warm start under ``runs/smoke/warmstart`` (relative to ``root``, as the trainer expects), and
the overrides that point a smoke config at them. ``smoke_cfg(**overrides)`` builds a smoke
config with the working folder moved to ``root`` for the test (restored afterwards).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rewards_as_labels.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def standin_venv(folder: Path) -> Path:
    """A stand-in for ``.venv`` at ``folder`` whose python is the one running the tests, with both setup
    stamps, so that ``make ... VENV=<folder>`` neither installs nor touches the real environment."""
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    python = folder / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    for stamp in (".setup-cpu", ".vllm-cpu"):
        (folder / stamp).touch()  # newer than the requirements: the environment counts as set up
    return folder


# A CUDA build of torch and vLLM on a machine without a GPU starts no vLLM engine (vLLM finds no platform:
# "Device string must not be empty"); vllm-cpu does. The tests that start one skip there, saying so.
NO_ENGINE_HERE = (
    "a CUDA build of torch/vLLM without a GPU starts no vLLM engine: `make test` wants the CPU set (ACCEL=cpu) or a GPU"
)


def cuda_build_without_gpu() -> bool:
    """True where torch is a CUDA build and no GPU is visible."""
    import torch

    return bool(torch.version.cuda) and not torch.cuda.is_available()


def make_env() -> dict:
    """This environment without the job-server flags of an outer ``make test``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


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
