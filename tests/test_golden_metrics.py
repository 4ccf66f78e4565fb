"""The redesign changes no number: short smoke trainings against values recorded at a fixed commit.

Each case trains the smoke profile (warm start in a private folder) for two steps with a fixed
config and seed, and compares every non-timing value of ``metrics.jsonl``, ``final.json`` and
``weight_samples.jsonl`` with ``tests/data/golden_metrics.json``. The cases cover every method
and every update regime: one mini-batch in one pass (on-policy), mini-batches with micro-batches
that hold whole groups, micro-batches that split groups, and the first (on-policy) mini-batch of
an off-policy step. Labels come from a fixed rule of (row, response length) so that groups are a
mix of one-label and mixed groups whatever the barely trained policy answers; evaluation uses
the real verifier. Values must match exactly (CPU, one thread: a rerun is bit for bit the same) where
the values were recorded on a CPU of the same kind: torch picks its float kernels by the CPU's vector
instructions (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...), so each kind has its own
recording, ``tests/data/golden_metrics.json`` for AVX2 and ``golden_metrics-<capability>.json`` for any
other. On a kind with no recording the values must agree within a relative 1e-3 (float32 rounding
differences grow over the two steps; a changed formula moves them much further).

Record (only when a change is *meant* to change numbers, or for a new kind of CPU from a commit that
passes on a recorded kind; say so in the commit):

    PYTHONPATH=src python tests/test_golden_metrics.py --record
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from rewards_as_labels import trainer as trainer_mod
from rewards_as_labels.config import load_config
from rewards_as_labels.methods import OFFPOLICY_KEYS

CAPABILITY = torch.backends.cpu.get_cpu_capability()
GOLDEN_DIR = Path(__file__).resolve().parent / "data"
GOLDEN = GOLDEN_DIR / ("golden_metrics.json" if CAPABILITY == "AVX2" else f"golden_metrics-{CAPABILITY}.json")
# this kind's own recording, compared exactly; else the AVX2 one, within a relative 1e-3
RECORDING = GOLDEN if GOLDEN.exists() else GOLDEN_DIR / "golden_metrics.json"
EXACT = RECORDING == GOLDEN

# name -> overrides of the smoke profile (P = 4 prompts x n = 4 rollouts, 2 steps)
CASES = {
    "real-M2-onepass-eval": dict(method="real", minibatches_per_step=2, micro_batch_size=0, eval_every=1),
    "real-M2-micro2-split": dict(method="real", minibatches_per_step=2, micro_batch_size=2),
    "real-M1-micro2-split": dict(method="real", minibatches_per_step=1, micro_batch_size=2),
    "grad-M2-micro4-whole": dict(method="grad", minibatches_per_step=2, micro_batch_size=4, eval_every=1),
    "grpo-M1-onepass-eval": dict(method="grpo", minibatches_per_step=1, micro_batch_size=0, eval_every=1),
    "grpo-M2-micro4-whole": dict(method="grpo", minibatches_per_step=2, micro_batch_size=4),
    "dapo-M2-micro3-split": dict(method="dapo", minibatches_per_step=2, micro_batch_size=3),
    "dapo-M4-onepass": dict(method="dapo", minibatches_per_step=4, micro_batch_size=0),
    "gspo-M1-micro4-whole": dict(method="gspo", minibatches_per_step=1, micro_batch_size=4, eval_every=1),
    "gspo-M2-micro2-split": dict(method="gspo", minibatches_per_step=2, micro_batch_size=2),
}
# keys added after the recording (metrics only: no recorded value may change or go missing)
ADDED_KEYS = {
    "train/grad_norm_max",
    *OFFPOLICY_KEYS,
    "eval/per_problem_correct",
    "eval/problem_ids",
    "train/clip_bound_frac",
    "train/clip_threshold",
    "rollout",
    "length",
    "token_rollout",
}
# the recording's optimiser and sampling settings, pinned: the defaults moved to the release's
# (AdamW betas (0.9, 0.999), weight decay 0.01, temperature 0.6) after it was made
RECORDED_DEFAULTS = dict(adam_beta2=0.99, weight_decay=0.0, temperature=1.0, eval_temperature=1.0)
COMMON = dict(total_steps=2, eval_every=0, checkpoint_every=1, seed=3, **RECORDED_DEFAULTS)


def fixed_labels(texts, golds, truncated=None, **_):
    """Reward 1 where (row + response length) % 3 == 0: mixed and one-label groups alike."""
    r = torch.tensor([float((i + len(t)) % 3 == 0) for i, t in enumerate(texts)])
    return r, {
        "correct": int(r.sum()),
        "wrong": int(len(r) - r.sum()),
        "parse_failure": 0,
        "truncated": 0,
        "timeout": 0,
    }


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = (
        [json.loads(line) for line in path.read_text().splitlines()]
        if path.suffix == ".jsonl"
        else [json.loads(path.read_text())]
    )
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def run_case(name: str, base: dict) -> dict:
    """Train case ``name`` in the current folder (which holds the smoke warm start); its values."""
    cfg = load_config(profile="smoke", overrides={**base, **COMMON, **CASES[name], "out": f"runs/golden/{name}"})
    run_dir = trainer_mod.train(cfg, progress=False)
    return {f: _read(run_dir / f) for f in ("metrics.jsonl", "final.json", "weight_samples.jsonl")}


def record() -> None:
    import tempfile

    from rewards_as_labels.arithmetic import write_splits
    from rewards_as_labels.warmstart import warmstart

    trainer_mod.score_completions = fixed_labels
    with tempfile.TemporaryDirectory(prefix="golden-") as root:
        os.chdir(root)
        base = {"data_dir": str(Path(root) / "data")}
        cfg = load_config(profile="smoke", overrides=base)
        write_splits(cfg)
        warmstart(cfg)
        values = {name: run_case(name, base) for name in CASES}
    GOLDEN.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


def _close(a, b) -> bool:
    """``a`` equals ``b`` but for numbers, which agree within a relative 1e-3 (lists and dicts: each item)."""
    if isinstance(b, float) or (isinstance(b, int) and not isinstance(b, bool) and isinstance(a, float)):
        return a == pytest.approx(b, rel=1e-3, abs=1e-6)
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in b)
    return a == b


@pytest.mark.parametrize("name", list(CASES))
def test_metrics_match_recorded_values(smoke_base, name, monkeypatch):
    root, base = smoke_base
    monkeypatch.chdir(root)
    monkeypatch.setattr(trainer_mod, "score_completions", fixed_labels)
    want = json.loads(RECORDING.read_text())[name]
    got = run_case(name, base)
    same = (lambda a, b: a == b) if EXACT else _close
    for file, rows in want.items():
        assert len(got[file]) == len(rows), (name, file)
        for a, b in zip(got[file], rows):
            assert b.keys() <= a.keys() and a.keys() - b.keys() <= ADDED_KEYS, (name, file, sorted(set(a) ^ set(b)))
            for key in b:
                assert same(a[key], b[key]), (
                    name,
                    file,
                    a.get("step"),
                    key,
                    a[key] if not isinstance(a[key], list) else "list",
                )


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit(__doc__)
    record()
