"""``make bench``: time each phase of a training step for every method, in one process.

Each method runs ``steps`` training steps (evaluation and checkpoints off) on the same
profile, interleaved round-robin so that machine load hits every method alike; the first
step is a warm-up and is dropped. Printed: per-phase medians, generation tokens/s, and the
step-time ratio of each method against GRPO (the paper's baseline) measured in the same run.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

from .config import METHODS, Config

PHASES = ("generate", "verify", "old_logprobs", "update")


def bench(cfg: Config, steps: int = 6, rounds: int = 2) -> dict[str, dict[str, float]]:
    from .trainer import train

    rows: dict[str, list[dict]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="ral-bench-") as tmp:
        for r in range(rounds):
            for method in METHODS:
                run_cfg = dataclasses.replace(
                    cfg, method=method, out=str(Path(tmp) / f"{method}-{r}"), total_steps=steps,
                    eval_every=0, checkpoint_every=10**9,
                )
                out = train(run_cfg, progress=False)
                lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
                rows[method].extend(lines[1:])  # drop the warm-up step
    result = {}
    for method, lines in rows.items():
        med = {p: float(np.median([ln[f"time/{p}"] for ln in lines])) for p in PHASES}
        med["step"] = float(np.median([sum(ln[f"time/{p}"] for p in PHASES) for ln in lines]))
        med["tokens_per_s"] = float(np.median([ln["time/generate_tokens_per_s"] for ln in lines]))
        result[method] = med
    base = result["grpo"]["step"]
    print(f"profile {cfg.profile}: {cfg.prompts_per_step} prompts x {cfg.rollouts_per_prompt} rollouts, "
          f"{cfg.minibatches_per_step} mini-batches, {cfg.num_threads} thread(s); medians over "
          f"{rounds * (steps - 1)} steps per method (seconds)")
    print(f"{'method':<7}" + "".join(f"{p:>14}" for p in PHASES) + f"{'step':>10}{'gen tok/s':>11}{'vs grpo':>9}")
    for method, med in result.items():
        print(f"{method:<7}" + "".join(f"{med[p]:>14.4f}" for p in PHASES)
              + f"{med['step']:>10.4f}{med['tokens_per_s']:>11.0f}{med['step'] / base:>9.3f}")
    return result
