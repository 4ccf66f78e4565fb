"""Gradient accumulation over micro-batches equals the one-pass gradient, in float64, for every
method and in each regime of ``trainer.backward_in_micro_batches``:

    whole groups   micro-batches of whole groups: one forward each, no extra pass
    split groups   micro-batches that split a group: one extra forward without graph (later mini-batches)
    first          split groups in the step's first mini-batch: its old log-probs stand in for that pass

The policy is a float64 bigram table (the package's model computes log-probs in float32), put in
place of ``response_logprobs`` so that the forward passes can also be counted.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from rewards_as_labels import trainer as trainer_mod
from rewards_as_labels.config import METHODS, Config
from rewards_as_labels.objectives import group_advantages
from rewards_as_labels.rollout import RolloutBatch

F64 = torch.float64
V, T, G, N = 6, 5, 4, 4  # vocabulary, response length, groups, rollouts per group


class Bigram(torch.nn.Module):
    """log pi(o_t | o_{t-1}) from a [V, V] table of logits, float64."""

    def __init__(self, seed: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(V, V, generator=torch.Generator().manual_seed(seed), dtype=F64))

    def logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        prev = torch.cat([batch.prompt_ids[:, -1:], batch.response_ids[:, :-1]], 1)  # [B, T]
        logp = torch.log_softmax(self.table[prev], -1)  # [B, T, V]
        return logp.gather(-1, batch.response_ids[..., None])[..., 0].masked_fill(~batch.response_mask, 0.0)  # [B, T]


@pytest.fixture
def forwards(monkeypatch):
    """Counts the forward passes the trainer makes through ``response_logprobs``."""
    calls = {"n": 0}

    def fake(model, batch, temperature, with_entropy=False):
        calls["n"] += 1
        return model.logprobs(batch)

    monkeypatch.setattr(trainer_mod, "response_logprobs", fake)
    return calls


def rollouts(model: Bigram, on_policy: bool, seed: int = 0) -> trainer_mod.Rollouts:
    """G groups of N ragged rollouts: two mixed groups, one all-correct, one with a single positive."""
    g = torch.Generator().manual_seed(seed)
    B = G * N
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    batch = RolloutBatch(
        prompt_ids=torch.randint(0, V, (B, 1), generator=g),
        prompt_mask=torch.ones(B, 1, dtype=torch.bool),
        response_ids=torch.randint(0, V, (B, T), generator=g),
        response_mask=torch.arange(T)[None] < lengths[:, None],
        truncated=torch.zeros(B, dtype=torch.bool),
        texts=[""] * B,
        n=N,
    )
    rewards = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=F64)  # [G, N]
    with torch.no_grad():
        current = model.logprobs(batch)  # [B, T]
        noise = 0.05 * torch.randn(B, T, generator=g, dtype=F64)
        old = current if on_policy else (current + noise).masked_fill(~batch.response_mask, 0.0)
        ref = (current - noise).masked_fill(~batch.response_mask, 0.0)
    return trainer_mod.Rollouts(batch, rewards, group_advantages(rewards).flatten(), old, ref)


def gradient(method: str, micro: int, on_policy: bool, first: bool) -> tuple[torch.Tensor, dict]:
    """The gradient ``trainer.update`` leaves on the table, and its logged statistics."""
    model = Bigram(seed=1)
    mb = rollouts(model, on_policy)
    # GSPO's paper clip (3e-4, 4e-4) would cut nearly every sequence here; a wide clip keeps gradients
    cfg = Config(
        method=method,
        micro_batch_size=micro,
        max_grad_norm=1e9,
        kl_coef=0.1,
        rollouts_per_prompt=N,
        prompts_per_step=G,
        minibatches_per_step=1,
        gspo_clip_low=0.2,
        gspo_clip_high=0.2,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # step() leaves the gradient in .grad
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    stats = trainer_mod.update(model, optimizer, scheduler, mb, cfg, step=0, first=first).stats
    return model.table.grad.clone(), stats


REGIMES = {  # name -> (micro_batch_size, on-policy mini-batch, first of the step, forward passes)
    "whole-groups": (8, False, False, 2),
    "whole-groups-one-each": (4, False, False, 4),
    "split-groups": (3, False, False, 6 + 6),  # 6 micro-batches, each twice (no-grad pass + graph pass)
    "split-groups-first": (3, True, True, 6),  # the old log-probs replace the no-grad pass
}


@pytest.mark.parametrize("regime", list(REGIMES))
@pytest.mark.parametrize("method", METHODS)
def test_micro_batch_gradient_equals_one_pass(forwards, method, regime):
    micro, on_policy, first, passes = REGIMES[regime]
    want, want_stats = gradient(method, 0, on_policy, first)
    forwards["n"] = 0
    got, got_stats = gradient(method, micro, on_policy, first)
    assert forwards["n"] == passes
    assert want.abs().max() > 1e-3, "a zero gradient would make the comparison vacuous"
    assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert got_stats.keys() == want_stats.keys()
    for key in want_stats:  # the logged loss, KL and weights are the whole mini-batch's
        assert got_stats[key] == pytest.approx(want_stats[key], rel=1e-12, abs=1e-14), key


def test_first_minibatch_reuses_old_logprobs_only_when_told(forwards):
    # the same on-policy mini-batch as a later one (first=False) pays the no-grad pass
    _, stats_first = gradient("real", 3, on_policy=True, first=True)
    forwards["n"] = 0
    _, stats_later = gradient("real", 3, on_policy=True, first=False)
    assert forwards["n"] == 12
    assert stats_first["train/loss"] == pytest.approx(stats_later["train/loss"], rel=1e-12)
