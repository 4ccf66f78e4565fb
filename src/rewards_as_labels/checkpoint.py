"""Checkpoints ``ckpt_000040/`` that resume a run bit for bit on CPU.

A checkpoint holds the policy (``save_pretrained``, so every HF tool and the evaluation
notebook can load it), optimiser and scheduler states, RNG states, and the trainer state
(next step; the data position is derived from it). It is written into a temporary
folder and renamed into place, so a run killed mid-write leaves the previous checkpoint
usable and no half checkpoint is ever picked up.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from .io import atomic_directory, atomic_write_json

CKPT_RE = re.compile(r"^ckpt_(\d{6})$")


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and CKPT_RE.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(CKPT_RE.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, keep: int) -> Path:
    """Write ``run_dir/ckpt_<step>`` atomically, then prune to the ``keep`` newest."""
    path = run_dir / f"ckpt_{step:06d}"
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
        atomic_write_json(tmp / "state.json", {"next_step": step})
    for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_trainer_state(path: Path, optimizer, scheduler) -> int:
    """Restore optimiser, scheduler and RNG states; return the next step to run."""
    blob = torch.load(path / "trainer.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    np.random.set_state(blob["rng"]["numpy"])
    random.setstate(blob["rng"]["python"])
    return int(json.loads((path / "state.json").read_text())["next_step"])
