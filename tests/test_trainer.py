"""The trainer: smoke runs per method, resume after SIGKILL, clear errors, and real learning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rewards_as_labels import trainer as trainer_mod
from rewards_as_labels.arithmetic import write_splits
from rewards_as_labels.config import METHODS, load_config
from rewards_as_labels.modeling import load_policy

ROOT = Path(__file__).resolve().parents[1]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_two_steps_finite_loss_and_every_parameter_moves(smoke_cfg, method, monkeypatch):
    # The verifier is replaced by alternating labels so every group holds both labels and
    # carries signal, whatever the (barely trained) smoke policy answers: this tests the
    # update mechanics, not learning (test_real_learns does that).
    def mixed_rewards(texts, golds, truncated=None):
        r = torch.tensor([float(i % 2) for i in range(len(texts))])
        return r, {
            "correct": int(r.sum()),
            "wrong": int(len(r) - r.sum()),
            "parse_failure": 0,
            "truncated": 0,
            "timeout": 0,
        }

    monkeypatch.setattr(trainer_mod, "score_completions", mixed_rewards)
    cfg = smoke_cfg(method=method, out=f"runs/smoke/{method}-moves", total_steps=2, eval_every=0)
    before = {k: v.clone() for k, v in load_policy(cfg)[0].named_parameters()}
    run_dir = trainer_mod.train(cfg, progress=False)
    rows = _rows(run_dir)
    assert [r["step"] for r in rows] == [0, 1]
    for r in rows:
        assert all(map(lambda x: x == x and abs(x) != float("inf"), [r["train/loss"], r["train/grad_norm"]]))
        assert r["groups/one_label_frac"] == 0.0
        for key in ("weights/real/pos_max", "weights/grad/neg_mean", "weights/grpo_token/neg_max"):
            assert key in r
        assert {"time/generate", "time/verify", "time/old_logprobs", "time/update"} <= set(r)
    after = dict(load_policy(cfg, path=run_dir / "ckpt_000002" / "model")[0].named_parameters())
    frozen = [k for k, v in before.items() if torch.equal(v, after[k].detach())]
    assert not frozen, f"{method}: parameters that did not move: {frozen}"


def test_metrics_glossary_keys_and_eval(smoke_cfg):
    cfg = smoke_cfg(method="grpo", out="runs/smoke/grpo-eval", total_steps=2, eval_every=1)
    run_dir = trainer_mod.train(cfg, progress=False)
    rows = _rows(run_dir)
    assert all("eval/pass@1" in r and "eval/greedy" in r for r in rows)
    assert "train/kl" in rows[0] and "train/clip_fraction" in rows[0]  # GRPO: KL on by default
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resolved_kl_coef"] == 0.001 and config["method"] == "grpo"
    assert "torch" in json.loads((run_dir / "versions.json").read_text())
    assert json.loads((run_dir / "final.json").read_text())["step"] == 2


def test_existing_run_needs_resume(smoke_cfg):
    cfg = smoke_cfg(method="real", out="runs/smoke/real-twice", total_steps=1, eval_every=0)
    trainer_mod.train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        trainer_mod.train(cfg, progress=False)


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(smoke_base, smoke_cfg):
    root, base = smoke_base
    common = dict(method="real", total_steps=6, checkpoint_every=2, eval_every=3, prompts_per_step=4)
    straight = trainer_mod.train(smoke_cfg(out="runs/smoke/straight", **common), progress=False)

    args = [
        sys.executable,
        "-m",
        "rewards_as_labels",
        "train",
        "--profile",
        "smoke",
        "--no-progress",
        "--out",
        "runs/smoke/killed",
    ] + [x for k, v in {**base, **common}.items() for x in (f"--{k}", str(v))]
    proc = subprocess.Popen(args, cwd=root, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    ckpt = root / "runs/smoke/killed/ckpt_000004/state.json"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the run never reached its second checkpoint"
    resumed = trainer_mod.train(smoke_cfg(out="runs/smoke/killed", **common), resume=True, progress=False)

    a, b = _comparable(_rows(straight)), _comparable(_rows(resumed))
    assert [r["step"] for r in b] == list(range(6))
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float):
                assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-8), (ra["step"], k)
            else:
                assert ra[k] == rb[k], (ra["step"], k)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"method": "ppo"}, "unknown method 'ppo'; valid methods: real, grad, grpo, dapo, gspo"),
        ({"tau": "0"}, "tau must be a finite number > 0"),
        ({"tau": "-1"}, "tau must be a finite number > 0"),
        ({"rollouts_per_prompt": "1"}, "rollouts_per_prompt must be >= 2"),
        ({"prompts_per_step": "0"}, "prompts_per_step must be >= 1"),
        ({"totl_steps": "3"}, "unknown config field.*did you mean 'total_steps'"),
        ({"total_steps": "many"}, "expects int"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(profile="tiny", overrides=overrides)


def test_unknown_profile_lists_profiles():
    with pytest.raises(ValueError, match="unknown profile 'huge'.*tiny"):
        load_config(profile="huge")


def test_cli_reports_errors_without_traceback(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rewards_as_labels", "train", "--method", "ppo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "unknown method 'ppo'" in out.stderr and "Traceback" not in out.stderr


def test_missing_warmstart_names_make_target(tmp_path):
    os.chdir(tmp_path)
    try:
        cfg = load_config(profile="smoke", overrides={"data_dir": str(tmp_path / "data")})
        write_splits(cfg)
        with pytest.raises(ValueError, match="make warmstart PROFILE=smoke"):
            trainer_mod.train(cfg, progress=False)
    finally:
        os.chdir(ROOT)


def test_nonfinite_loss_stops_with_report(smoke_cfg, monkeypatch):
    real_policy_loss = trainer_mod.policy_loss

    def poisoned(cfg, mb, method=None):
        loss, cut = real_policy_loss(cfg, mb, method)
        return loss * float("nan"), cut

    monkeypatch.setattr(trainer_mod, "policy_loss", poisoned)
    cfg = smoke_cfg(method="grad", out="runs/smoke/grad-nan", total_steps=2, eval_every=0)
    with pytest.raises(trainer_mod.TrainingDiverged, match="non-finite loss at step 0 \\(method grad\\)"):
        trainer_mod.train(cfg, progress=False)


def test_prompt_indices_cover_epochs_deterministically():
    a = trainer_mod.prompt_indices(0, 3, 8, 20)
    assert (a == trainer_mod.prompt_indices(0, 3, 8, 20)).all()
    epoch = [i for s in range(5) for i in trainer_mod.prompt_indices(0, s, 4, 20)]
    assert sorted(epoch) == list(range(20))  # one epoch visits every prompt once


@pytest.mark.parametrize("method", ["real", "grad", "dapo"])
def test_micro_batches_give_the_same_update(smoke_cfg, method):
    # exact gradient accumulation: 3-row micro-batches (not even whole groups of 4) must
    # reproduce the one-pass update to float32 round-off
    outs = {}
    for micro in (0, 3):
        cfg = smoke_cfg(
            method=method, out=f"runs/smoke/{method}-micro{micro}", total_steps=1, eval_every=0, micro_batch_size=micro
        )
        outs[micro] = dict(
            load_policy(cfg, path=trainer_mod.train(cfg, progress=False) / "ckpt_000001" / "model")[
                0
            ].named_parameters()
        )
    for name, p in outs[0].items():
        torch.testing.assert_close(outs[3][name], p, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["real", "grpo"])
def test_on_policy_single_pass_equals_separate_old_logprob_pass(smoke_cfg, method):
    # minibatches_per_step=1 in one pass takes pi_old from the update's own forward (one forward
    # instead of two); 15-row micro-batches of the 16 rollouts force the separate no-grad pass:
    # same update, same logged entropy and loss
    params, rows = {}, {}
    for micro in (0, 15):
        cfg = smoke_cfg(
            method=method,
            out=f"runs/smoke/{method}-onpolicy{micro}",
            total_steps=1,
            eval_every=0,
            minibatches_per_step=1,
            micro_batch_size=micro,
        )
        run_dir = trainer_mod.train(cfg, progress=False)
        params[micro] = dict(load_policy(cfg, path=run_dir / "ckpt_000001" / "model")[0].named_parameters())
        rows[micro] = _rows(run_dir)[0]
    for name, p in params[0].items():
        torch.testing.assert_close(params[15][name], p, rtol=1e-4, atol=1e-6)
    for key in ("policy/entropy", "train/loss", "train/grad_norm"):
        assert rows[15][key] == pytest.approx(rows[0][key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize(
    "minibatches, micro, rows",
    [
        (2, 0, 8 + 8 + 8),  # old log-probs: 8 rows with graph (reused by the first update) + 8 without; second update 8
        (1, 0, 16),  # on-policy: one forward, reused by the update
        (2, 2, 16 + 8 + 16),  # 2-row micro-batches split groups: old 16; first update 8; second 8 without graph + 8
    ],
)
def test_first_minibatch_forward_is_made_once(smoke_cfg, monkeypatch, minibatches, micro, rows):
    """Rows through the policy's forward in one step of P=4 prompts x n=4 rollouts (16 rows)."""
    from rewards_as_labels.rollout import response_logprobs

    seen = []

    def counting(model, batch, *args, **kwargs):
        seen.append(batch.batch_size)
        return response_logprobs(model, batch, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "response_logprobs", counting)
    cfg = smoke_cfg(
        method="real",
        total_steps=1,
        eval_every=0,
        minibatches_per_step=minibatches,
        micro_batch_size=micro,
        out=f"runs/forward-count-M{minibatches}-micro{micro}",
    )
    trainer_mod.train(cfg, progress=False)
    assert sum(seen) == rows, seen
