"""The gradient clip as a studied factor: fixed (the release's), off, relative to the run's own norm."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rewards_as_labels.config import Config
from rewards_as_labels.trainer import GradClip, train


def _grads(norm: float) -> list[torch.nn.Parameter]:
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), norm / 2.0)  # ||g|| = norm
    return [p]


def test_fixed_clips_at_max_grad_norm_and_reports_the_pre_clip_norm():
    clip = GradClip(Config(grad_clip="fixed", max_grad_norm=1.0))
    params = _grads(3.0)
    norm, threshold = clip(params)
    assert norm.item() == pytest.approx(3.0) and threshold == 1.0
    assert params[0].grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_off_never_scales_a_gradient():
    clip = GradClip(Config(grad_clip="off"))
    params = _grads(1e6)
    norm, threshold = clip(params)
    assert threshold == math.inf and params[0].grad.norm().item() == pytest.approx(1e6)


def test_relative_calibrates_on_its_window_then_clips_at_a_multiple_of_the_median():
    clip = GradClip(Config(grad_clip="relative", grad_clip_window=3, grad_clip_relative=2.0))
    for n in (1.0, 4.0, 2.0):  # median 2 -> threshold 4 from the 4th update on
        _, threshold = clip(_grads(n))
        assert threshold == math.inf
    params = _grads(10.0)
    norm, threshold = clip(params)
    assert threshold == 4.0 and norm.item() == pytest.approx(10.0)
    assert params[0].grad.norm().item() == pytest.approx(4.0, rel=1e-5)
    assert clip.norms == [1.0, 4.0, 2.0]  # the window is closed: later norms do not move it


def test_bad_clip_settings_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match="unknown grad_clip 'sometimes'"):
        Config(grad_clip="sometimes")
    with pytest.raises(ValueError, match="grad_clip=off turns clipping off"):
        Config(max_grad_norm=0.0)


@pytest.mark.parametrize("mode", ["fixed", "off", "relative"])
def test_every_clip_mode_trains_logs_how_often_it_bound_and_resumes_its_threshold(smoke_cfg, mode):
    cfg = smoke_cfg(grad_clip=mode, grad_clip_window=2, total_steps=2, checkpoint_every=1, out=f"runs/clip-{mode}")
    run = train(cfg, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["train/clip_bound_frac"] <= 1.0 for r in rows)
    if mode == "off":
        assert all(r["train/clip_bound_frac"] == 0.0 and "train/clip_threshold" not in r for r in rows)
    if mode == "fixed":
        assert all(r["train/clip_threshold"] == 1.0 for r in rows)
    last = json.loads((run / "ckpt_000002" / "state.json").read_text())
    assert len(last["grad_clip_norms"]) == (2 if mode == "relative" else 0)
    if mode == "relative":  # 2 mini-batches per step: the window closed in step 0; step 1 clipped at 2 x their median
        assert "train/clip_threshold" not in rows[0]
        assert rows[1]["train/clip_threshold"] == pytest.approx(2.0 * float(np.median(last["grad_clip_norms"])))
        resumed = GradClip(cfg, last["grad_clip_norms"])
        assert resumed.threshold == pytest.approx(rows[1]["train/clip_threshold"])
