"""Checkpoints ``ckpt_000040/`` that resume a run bit for bit on CPU.

A checkpoint holds the policy (``save_pretrained``, so every HF tool and the evaluation
notebook can load it), optimiser and scheduler states, RNG states, and the trainer state
(next step; the data position is derived from it). It is written into a temporary
folder and renamed into place, so a run killed mid-write leaves the previous checkpoint
usable and no half checkpoint is ever picked up; the next save removes what a killed
writer left (``ckpt_*.tmp-<pid>``). A checkpoint is also the durability point of the run's
JSONL logs: they are fsynced before it is published (they are only flushed per row).
A failed save (disk full) raises ``OSError`` naming the checkpoint and the fix, and leaves
the earlier checkpoints as they were.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from .io import FIX_SPACE, atomic_directory, atomic_write_json, clean_stale, fsync_files

CKPT_RE = re.compile(r"^ckpt_(\d{6})$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and CKPT_RE.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(CKPT_RE.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, after tidying what a killed writer left (see ``io.clean_stale``)."""
    clean_stale(run_dir, "ckpt_*")
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, keep: int, extra: dict | None = None
) -> Path:
    """Write ``run_dir/ckpt_<step>`` atomically, then prune to the ``keep`` newest. ``extra``: more
    trainer state (JSON values) kept in the checkpoint's ``state.json``; :func:`checkpoint_state` reads it."""
    path = run_dir / f"ckpt_{step:06d}"
    clean_stale(run_dir, "ckpt_*")  # half-written checkpoints of a killed run
    fsync_files(run_dir.glob("*.jsonl"))  # rows before this step survive a power cut too
    try:
        _write(path, step, model, tokenizer, optimizer, scheduler, extra or {})
    except Exception as exc:
        # safetensors and torch.save do not raise OSError on a full disk (SafetensorError "... (os
        # error 28)", RuntimeError "unexpected pos ..."), so any failure here is reported as one
        code = exc.errno if isinstance(exc, OSError) else _os_error(str(exc))
        free = shutil.disk_usage(run_dir).free // 1024
        raise OSError(
            code,
            f"could not write checkpoint {path} ({type(exc).__name__}: {exc}; {free} KiB free there); "
            f"earlier checkpoints in {run_dir} are intact; {FIX_SPACE}, then rerun with --resume",
        ) from exc
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _os_error(message: str) -> int | None:
    match = re.search(r"os error (\d+)", message)
    return int(match.group(1)) if match else None


def _write(path: Path, step: int, model, tokenizer, optimizer, scheduler, extra: dict) -> None:
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
            },
            tmp / "trainer.pt",
        )
        # state.json last: its presence marks a complete checkpoint
        atomic_write_json(tmp / "state.json", {**extra, "next_step": step})


def load_trainer_state(path: Path, optimizer, scheduler) -> int:
    """Restore optimiser, scheduler and RNG states; return the next step to run."""
    blob = torch.load(path / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    np.random.set_state(blob["rng"]["numpy"])
    random.setstate(blob["rng"]["python"])
    return int(json.loads((path / "state.json").read_text())["next_step"])


def checkpoint_state(path: Path) -> dict:
    """The checkpoint's ``state.json``: ``next_step`` and the ``extra`` state it was saved with."""
    return json.loads((path / "state.json").read_text())
