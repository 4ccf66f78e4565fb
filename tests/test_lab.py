"""make lab: the jupyter lab command line, and kernels that start in the project folder (no server is started)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab")

from jupyter_server.serverapp import ServerApp  # noqa: E402
from jupyter_server.services.kernels.kernelmanager import MappingKernelManager  # noqa: E402
from jupyterlab.labapp import LabApp  # noqa: E402

from rewards_as_labels.tools.lab import ProjectRootContentsManager, lab_command, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_make_lab_runs_the_lab_tool_with_the_venv_python():
    if shutil.which("make") is None:
        pytest.skip("no make")
    env = {
        k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }  # also under `make test`
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab", "VENV=/some/venv", "ACCEL=cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert out.strip().splitlines()[-1].strip() == "/some/venv/bin/python -m rewards_as_labels.tools.lab"


def test_lab_command_options_are_real_traits(tmp_path):
    cmd = lab_command(tmp_path, python="/venv/bin/python", extra=["--no-browser"])
    assert cmd[:3] == ["/venv/bin/python", "-m", "jupyterlab"] and cmd[-1] == "--no-browser"
    owners = {"ServerApp": ServerApp, "MappingKernelManager": MappingKernelManager, "LabApp": LabApp}
    for option in cmd[3:-1]:
        name, value = option[2:].split("=", 1)
        owner, trait = name.split(".")
        assert owners[owner].class_traits().get(trait) is not None, option
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in cmd
    assert "--LabApp.default_url=/lab/tree/notebooks" in cmd
    # the contents manager named on the command line imports to the class below
    assert "--ServerApp.contents_manager_class=rewards_as_labels.tools.lab.ProjectRootContentsManager" in cmd
    # `python -m jupyterlab` is JupyterLab's own entry point
    assert subprocess.run(
        [sys.executable, "-m", "jupyterlab", "--version"], capture_output=True, text=True
    ).stdout.strip()


def test_kernels_start_in_the_project_folder(tmp_path):
    (tmp_path / "notebooks").mkdir()
    contents = ProjectRootContentsManager(root_dir=str(tmp_path))
    kernels = MappingKernelManager(root_dir=str(tmp_path))
    path = contents.get_kernel_path("notebooks/03_train.ipynb")
    assert os.path.realpath(kernels.cwd_for_path(path)) == os.path.realpath(tmp_path)


def test_dry_run_prints_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="no notebooks/ folder"):
        main(["--dry-run"])
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("started a server"))
    main(["--dry-run", "--port=9999"])
    printed = capsys.readouterr().out
    assert "-m jupyterlab" in printed and "--port=9999" in printed and "--dry-run" not in printed
