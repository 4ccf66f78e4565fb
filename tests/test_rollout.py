"""Rollout layout, masks, truncation, determinism, and log-probs that match the sampler."""

import logging

import pytest
import torch

from rewards_as_labels.backends import make_backend
from rewards_as_labels.config import load_config
from rewards_as_labels.modeling import build_tiny_model, build_tokenizer
from rewards_as_labels.rollout import HFGenerateBackend, response_logprobs

PROMPTS = ["47+385=", "1+2=", "999+999="]


@pytest.fixture(scope="module")
def policy():
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(load_config(profile="smoke"), tok)
    # give EOS a sizeable probability so one batch holds both finished and truncated responses
    with torch.no_grad():
        model.get_output_embeddings().weight[tok.eos_token_id] *= 0  # tied: zero EOS embedding row
        model.model.norm.weight.mul_(0.1)
    return model, tok


def test_shapes_masks_and_layout(policy):
    model, tok = policy
    n = 4
    batch = HFGenerateBackend(model, tok).generate(PROMPTS, n, temperature=1.0, max_new_tokens=5, seed=1)
    B = len(PROMPTS) * n
    assert batch.batch_size == B and batch.num_groups == len(PROMPTS) and batch.n == n
    assert batch.prompt_ids.shape[0] == B and batch.response_ids.shape[0] == B
    assert batch.response_ids.shape[1] <= 5 and batch.response_mask.dtype == torch.bool
    # prompt-major: rows g*n .. g*n+n-1 repeat prompt g
    for g, prompt in enumerate(PROMPTS):
        for row in range(g * n, (g + 1) * n):
            ids = batch.prompt_ids[row][batch.prompt_mask[row]]
            assert tok.decode(ids.tolist()) == prompt
    eos = tok.eos_token_id
    for row in range(B):
        ids, keep = batch.response_ids[row], batch.response_mask[row]
        length = int(keep.sum())
        assert keep[:length].all() and not keep[length:].any()  # a prefix
        if batch.truncated[row]:
            assert eos not in ids[keep].tolist() and length == batch.response_ids.shape[1] == 5
        else:
            assert ids[length - 1] == eos and eos not in ids[: length - 1].tolist()  # mask includes EOS
            assert (ids[length:] == tok.pad_token_id).all()
        assert batch.texts[row] == tok.decode(ids[keep & (ids != eos)].tolist())
    assert batch.truncated.any() and (~batch.truncated).any()


def test_truncation_flag_with_a_tight_budget(policy):
    model, tok = policy
    batch = HFGenerateBackend(model, tok).generate(PROMPTS, 8, temperature=1.0, max_new_tokens=1, seed=0)
    finished = batch.response_ids[:, 0] == tok.eos_token_id
    assert torch.equal(batch.truncated, ~finished)


def test_same_seed_same_rollouts_and_global_rng_untouched(policy):
    model, tok = policy
    backend = make_backend(load_config(profile="smoke"), model, tok)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = backend.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=7)
    after = torch.rand(1)
    b = backend.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=7)
    c = backend.generate(PROMPTS, 4, temperature=1.0, max_new_tokens=5, seed=8)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert not torch.equal(a.response_ids, c.response_ids)
    assert torch.equal(before, after)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_response_logprobs_match_generate_scores(policy, temperature):
    model, tok = policy
    backend = HFGenerateBackend(model, tok, return_logprobs=True)
    batch = backend.generate(PROMPTS, 4, temperature=temperature, max_new_tokens=5, seed=3)
    with torch.no_grad():
        logprobs, entropy = response_logprobs(model, batch, temperature, with_entropy=True)  # [B, Tr]
    mask = batch.response_mask
    torch.testing.assert_close(logprobs[mask], batch.sampling_logprobs[mask], atol=1e-5, rtol=0)
    assert (logprobs[~mask] == 0).all() and (entropy[mask] > 0).all()


def test_response_logprobs_are_differentiable_and_finite(policy):
    model, tok = policy
    batch = HFGenerateBackend(model, tok).generate(PROMPTS, 2, temperature=1.0, max_new_tokens=5, seed=4)
    logprobs = response_logprobs(model, batch.select(slice(0, 4)), 1.0)  # [4, Tr]
    logprobs.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_greedy_is_deterministic_without_seed(policy):
    model, tok = policy
    backend = HFGenerateBackend(model, tok)
    a = backend.generate(PROMPTS, 1, temperature=0.0, max_new_tokens=5, seed=0)
    b = backend.generate(PROMPTS, 1, temperature=0.0, max_new_tokens=5, seed=99)
    assert torch.equal(a.response_ids, b.response_ids)


# ---------------------------------------------------------------- evaluation on top of rollouts
from rewards_as_labels.data import Problem  # noqa: E402
from rewards_as_labels.evaluation import evaluate_policy, pass_at_k  # noqa: E402
from rewards_as_labels.rollout import RolloutBatch  # noqa: E402


@pytest.mark.parametrize(
    "n, c, k, expected", [(8, 0, 1, 0.0), (8, 2, 1, 0.25), (8, 2, 8, 1.0), (4, 1, 2, 0.5), (5, 5, 3, 1.0)]
)
def test_pass_at_k(n, c, k, expected):
    # (4, 1, 2): 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(n, c, k) == pytest.approx(expected)


class ScriptedBackend:
    """Returns fixed answers: row j of prompt g answers ``script[g][j]``; counts calls."""

    def __init__(self, script):
        self.script, self.calls = script, 0

    def sync_weights(self, model):
        pass

    def generate(self, prompts, n, *, temperature, max_new_tokens, top_k=0, top_p=1.0, seed=0):
        self.calls += 1
        texts = [self.script[p][j % len(self.script[p])] for p in prompts for j in range(n)]
        B = len(texts)
        return RolloutBatch(
            prompt_ids=torch.zeros(B, 1, dtype=torch.long),
            prompt_mask=torch.ones(B, 1, dtype=torch.bool),
            response_ids=torch.zeros(B, 2, dtype=torch.long),
            response_mask=torch.ones(B, 2, dtype=torch.bool),
            truncated=torch.tensor([t == "cut" for t in texts]),
            texts=texts,
            n=n,
        )


def test_evaluate_policy_arithmetic():
    problems = [
        Problem(f"p{i}", q, q + "=", a, 2) for i, (q, a) in enumerate([("1+2", "3"), ("2+2", "4"), ("3+3", "6")])
    ]
    backend = ScriptedBackend({"1+2=": ["3"], "2+2=": ["4", "5", "cut", "="], "3+3=": ["7"]})
    res = evaluate_policy(
        None, None, problems, samples=4, temperature=1.0, max_new_tokens=5, seed=0, batch_size=2, backend=backend
    )
    assert res["per_problem_correct"] == [4, 1, 0]
    assert res["pass@1"] == pytest.approx(5 / 12)  # (4 + 1 + 0) / (3 x 4)
    assert res["pass@4"] == pytest.approx(2 / 3)  # two problems solved at least once
    assert res["greedy"] == pytest.approx(2 / 3)  # greedy = first scripted answer
    assert res["counts"] == {"correct": 5, "wrong": 5, "parse_failure": 1, "truncated": 1, "timeout": 0, "error": 0}
    assert backend.calls == 4  # 2 prompt batches x (sampled + greedy): no per-prompt calls


def test_evaluate_policy_on_a_model_is_reproducible(policy):
    model, tok = policy
    problems = [Problem(f"p{i}", p[:-1], p, "1", 3) for i, p in enumerate(PROMPTS)]
    a = evaluate_policy(model, tok, problems, samples=3, temperature=1.0, max_new_tokens=5, seed=5)
    b = evaluate_policy(model, tok, problems, samples=3, temperature=1.0, max_new_tokens=5, seed=5)
    assert a == b and sum(a["counts"].values()) == 9 and a["pass@3"] >= a["pass@1"]


def test_model_generation_config_cannot_change_the_behaviour_policy(policy):
    # a hub model may ship sampling settings (repetition penalty, top-k): rollouts must ignore them
    model, tok = policy
    kwargs = dict(temperature=1.0, max_new_tokens=5, top_k=0, top_p=1.0, seed=3)
    plain = HFGenerateBackend(model, tok).generate(PROMPTS, 4, **kwargs)
    saved = model.generation_config
    model.generation_config = type(saved)(
        **{**saved.to_dict(), "repetition_penalty": 5.0, "top_k": 2, "do_sample": True}
    )
    try:
        hub_like = HFGenerateBackend(model, tok).generate(PROMPTS, 4, **kwargs)
    finally:
        model.generation_config = saved
    assert torch.equal(plain.response_ids, hub_like.response_ids)


def _record(logger: str, msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(logger, logging.WARNING, "x.py", 1, msg, args, exc_info)


def test_known_vllm_noise_is_dropped_and_nothing_else():
    from rewards_as_labels.rollout_vllm import KnownNoise

    layerwise, renderer = KnownNoise.LOGGERS[1], KnownNoise.LOGGERS[0]
    tied, untied = KnownNoise(tied=True), KnownNoise(tied=False)
    tokenizer_missing = ValueError("Tokenizer not available when `skip_tokenizer_init=True`")
    for f in (tied, untied):
        assert not f.filter(_record(renderer, "Chat template warmup failed", exc=tokenizer_missing))
        assert not f.filter(_record(renderer, "Using None for EOS token id because tokenizer is not initialized"))
        assert not f.filter(_record(layerwise, "%s: Failed to load weights", "RotaryEmbedding"))
        # the same words for another cause, or another layer, still reach the log
        assert f.filter(_record(renderer, "Chat template warmup failed", exc=RuntimeError("template syntax error")))
        assert f.filter(_record(layerwise, "%s: Failed to load weights", "QKVParallelLinear"))
        assert f.filter(_record(layerwise, "%s: Delayed processing", "RotaryEmbedding"))
    # an untied lm_head that fails to load is a real failure
    assert not tied.filter(_record(layerwise, "%s: Failed to load weights", "ParallelLMHead"))
    assert untied.filter(_record(layerwise, "%s: Failed to load weights", "ParallelLMHead"))


def test_known_vllm_noise_filter_replaces_an_earlier_one():
    from rewards_as_labels.rollout_vllm import KnownNoise

    first, second = KnownNoise.install(tied=False), KnownNoise.install(tied=True)
    for name in KnownNoise.LOGGERS:
        mine = [f for f in logging.getLogger(name).filters if isinstance(f, KnownNoise)]
        assert mine == [second] and first is not second
        logging.getLogger(name).removeFilter(second)
