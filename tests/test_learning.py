"""End to end: REAL really learns the embedded task on a small slice (slow; runs in CI).

A shortened warm start gives a weak base; REAL then trains on a fixed 32-problem slice of the
training split, and its pass@1 on that slice (16 samples per problem, the same seed before and
after) must rise clearly. The slice makes the check short and its outcome stable.
"""

from __future__ import annotations

import pytest

from rewards_as_labels.arithmetic import write_splits
from rewards_as_labels.config import load_config
from rewards_as_labels.data import load_split
from rewards_as_labels.evaluation import evaluate_policy
from rewards_as_labels.modeling import load_policy
from rewards_as_labels.trainer import train
from rewards_as_labels.warmstart import warmstart


@pytest.mark.slow
def test_real_raises_pass_at_1_on_a_training_slice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        profile="tiny",
        overrides={
            "data_dir": str(tmp_path / "data"),
            "n_sft": 20000,
            "n_train": 32,
            "warmstart_steps": 400,
            "method": "real",
            "total_steps": 40,
            "prompts_per_step": 16,
            "eval_every": 0,
            "checkpoint_every": 40,
        },
    )
    write_splits(cfg)
    warmstart(cfg)
    slice_ = load_split(cfg, "train")

    def pass_at_1(model_path=None):
        model, tokenizer = load_policy(cfg, path=model_path)
        return evaluate_policy(
            model,
            tokenizer,
            slice_,
            samples=16,
            temperature=1.0,
            max_new_tokens=cfg.max_new_tokens,
            seed=7,
            greedy=False,
        )["pass@1"]

    before = pass_at_1()
    run_dir = train(cfg, progress=False)
    after = pass_at_1(run_dir / "ckpt_000040" / "model")
    print(f"slice pass@1: base {before:.3f} -> REAL {after:.3f}")
    assert 0.02 < before < 0.6, f"the shortened warm start should leave room to learn (base {before:.3f})"
    assert after > before + 0.10, f"REAL did not learn: {before:.3f} -> {after:.3f}"
