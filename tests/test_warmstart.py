"""Smoke warm start: trains in seconds, writes model + metrics, loss falls, reruns skip."""

import json

import torch

from rewards_as_labels.arithmetic import write_splits
from rewards_as_labels.config import load_config
from rewards_as_labels.data import Problem
from rewards_as_labels.modeling import build_tokenizer, load_policy
from rewards_as_labels.warmstart import encode_supervised, warmstart


def test_labels_cover_answer_and_eos_only():
    tok = build_tokenizer()
    ids, mask, labels = encode_supervised(
        tok, [Problem("a", "1+2", "1+2=", "3", 1), Problem("b", "47+385", "47+385=", "432", 3)]
    )
    assert ids.shape == labels.shape == mask.shape == (2, 11)
    assert tok.decode(labels[1][labels[1] >= 0].tolist()) == "432<eos>"
    assert mask[0].tolist() == [1] * 6 + [0] * 5 and (labels[0, 6:] == -100).all()


def test_smoke_warmstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/<profile>/warmstart is relative to the working folder
    cfg = load_config(profile="smoke", overrides={"data_dir": str(tmp_path / "data")})
    write_splits(cfg)
    model_dir = warmstart(cfg)
    assert model_dir == cfg.warmstart_dir / "model" and (model_dir / "config.json").is_file()
    metrics = json.loads((cfg.warmstart_dir / "metrics.json").read_text())
    losses = metrics["loss"]
    assert len(losses) == cfg.warmstart_steps
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert {"pass@1", "pass@8", "greedy"} <= set(metrics["summary"])
    assert metrics["validation"]["n_problems"] == cfg.n_validation
    assert not [p for p in cfg.warmstart_dir.iterdir() if ".tmp-" in p.name or ".old-" in p.name]

    stamp = (model_dir / "config.json").stat().st_mtime_ns
    assert warmstart(cfg) == model_dir  # second call reuses the saved model
    assert (model_dir / "config.json").stat().st_mtime_ns == stamp

    model, tok = load_policy(cfg)
    assert tok.decode(tok("47+385=").input_ids) == "47+385="
    assert torch.get_num_threads() == cfg.num_threads
