"""REAL / GRAD inside TRL's GRPOTrainer (``rewards_as_labels.integrations.trl``), on CPU.

Everything is offline: a character tokenizer and a 2-layer Qwen2 built from a config
(``tests/trl_ddp_script.py``). What is checked:
    * the config rejects what REAL/GRAD cannot honour, the labels fail closed;
    * TRL's batch layout (RepeatSampler -> per-process shards -> our group shuffle -> slices)
      keeps every group whole on every process and slice, where TRL's row shuffle does not;
    * the trainer's loss and gradients equal ``real_loss`` / ``grad_loss`` of ``sequence_scores``
      on a hand-made batch, on- and off-policy, with TRL's advantages ignored;
    * labels stay attached to their rollouts through generation, shuffling and slicing;
    * short training runs (real, grad, off-policy slices, and the plain-TRL fallback) give finite
      losses and move every parameter;
    * 2 processes (``accelerate launch``, gloo): whole groups per rank, and the DDP gradient equals
      the gradient of the paper's loss over the global batch.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")

from accelerate.data_loader import BatchSamplerShard  # noqa: E402
from torch.utils.data import BatchSampler  # noqa: E402
from trl.trainer.utils import RepeatSampler, shuffle_sequence_dict, split_tensor_dict  # noqa: E402

from rewards_as_labels import objectives  # noqa: E402
from rewards_as_labels.integrations.trl import (  # noqa: E402
    RewardsAsLabelsGRPOTrainer,
    check_whole_groups,
    rewards_to_labels,
    shuffle_groups,
)

sys.path.insert(0, str(Path(__file__).parent))
from trl_ddp_script import (  # noqa: E402
    GROUP_SIZE,
    alternating_reward,
    reference_logps,
    tiny_args,
    tiny_dataset,
    tiny_model,
    tiny_tokenizer,
)

REPO = Path(__file__).resolve().parents[1]
N = GROUP_SIZE


def make_trainer(tmp_path, reward=alternating_reward, num_prompts=8, **overrides):
    return RewardsAsLabelsGRPOTrainer(
        model=tiny_model(0),
        reward_funcs=reward,
        args=tiny_args(str(tmp_path / "out"), **overrides),
        train_dataset=tiny_dataset(num_prompts),
        processing_class=tiny_tokenizer(),
    )


# ----------------------------------------------------------------------------- config and labels
@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"ral_loss": "bce"}, "unknown ral_loss"),
        ({"tau": 0.0}, "tau"),
        ({"per_device_train_batch_size": 6}, "divisible by num_generations"),
        ({"mask_truncated_completions": True}, "mask_truncated_completions"),
        ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
        ({"entropy_coef": 0.01}, "entropy bonus"),
        ({"off_policy_mask_threshold": 0.5}, "off_policy_mask_threshold"),
    ],
)
def test_config_rejects_what_real_cannot_honour(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_args(str(tmp_path), **overrides)


def test_config_without_ral_loss_is_plain_trl(tmp_path):
    # per_device 6 is fine for TRL's GRPO (6 * 1 process * 2 steps = 12 rows = 3 groups of 4)
    args = tiny_args(str(tmp_path), ral_loss=None, per_device_train_batch_size=6, steps_per_generation=2)
    assert args.ral_loss is None and args.tau == 0.5


def test_trainer_needs_our_config(tmp_path):
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", num_generations=4)
    with pytest.raises(TypeError, match="RewardsAsLabelsGRPOConfig"):
        RewardsAsLabelsGRPOTrainer(model=tiny_model(), reward_funcs=alternating_reward, args=args)


def test_rewards_to_labels():
    assert rewards_to_labels(torch.tensor([1.0, 0.0])).tolist() == [True, False]
    # correctness 1.0 + format bonus 0.1 -> 1.1 / 0.1, binarised at 0.5
    assert rewards_to_labels(torch.tensor([1.1, 0.1]), 0.5, require_binary=False).tolist() == [True, False]
    with pytest.raises(ValueError, match="0/1 labels"):
        rewards_to_labels(torch.tensor([1.0, 0.7]))
    with pytest.raises(ValueError, match="got no reward"):
        rewards_to_labels(torch.tensor([1.0, float("nan")]), require_binary=False)


@pytest.mark.parametrize("name", ["cpu_2proc", "multi_gpu", "deepspeed_zero2", "deepspeed_zero3", "fsdp"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "configs/accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 2 and config.num_machines == 1


# ----------------------------------------------------------------------------- batch layout
def trl_layout(num_processes, per_device, steps_per_generation, n, num_prompts, shuffle):
    """Group ids of every (process, slice) for one generation batch, built as TRL 1.16 builds it:
    RepeatSampler -> BatchSampler(per_device * steps_per_generation) -> accelerate's per-process
    shard -> ``shuffle`` of the local generation batch -> ``split_tensor_dict`` into slices."""
    generation_batch = per_device * num_processes * steps_per_generation
    layout = {}
    for rank in range(num_processes):  # each process builds its own sampler, same seed
        sampler = RepeatSampler(
            list(range(num_prompts)), mini_repeat_count=n, batch_size=generation_batch // n,
            repeat_count=steps_per_generation, shuffle=True, seed=0,
        )  # fmt: skip
        batches = BatchSampler(sampler, per_device * steps_per_generation, drop_last=False)
        local = next(iter(BatchSamplerShard(batches, num_processes=num_processes, process_index=rank)))
        batch = shuffle({"prompt_index": torch.tensor(local), "num_items_in_batch": torch.tensor(7)})
        layout[rank] = [s["prompt_index"] for s in split_tensor_dict(batch, steps_per_generation)]
    return layout


@pytest.mark.parametrize(
    "num_processes, per_device, steps_per_generation",
    [(1, 8, 1), (1, 8, 4), (2, 8, 2), (4, 4, 4), (8, 32, 4)],  # last: the paper's 8 GPUs x 4 mini-batches
)
def test_trl_layout_with_group_shuffle_keeps_groups_whole(num_processes, per_device, steps_per_generation):
    torch.manual_seed(0)
    num_prompts = per_device * num_processes * steps_per_generation // N
    layout = trl_layout(num_processes, per_device, steps_per_generation, N, num_prompts, lambda b: shuffle_groups(b, N))
    seen = Counter()
    for slices in layout.values():
        for prompt_index in slices:
            check_whole_groups(prompt_index, N)  # consecutive blocks of n rollouts of one prompt
            seen.update(prompt_index.tolist())
    # every prompt of the generation batch lands on exactly one (process, slice), all n rollouts
    assert seen == {p: N for p in range(num_prompts)}


def test_trl_row_shuffle_splits_groups_across_slices():
    """Why [RAL-3] exists: TRL's own row shuffle scatters groups over accumulation slices."""
    torch.manual_seed(0)
    layout = trl_layout(1, 8, 4, N, 8, shuffle_sequence_dict)
    split = 0
    for prompt_index in layout[0]:
        try:
            check_whole_groups(prompt_index, N)
        except ValueError:
            split += 1
    assert split > 0


# ----------------------------------------------------------------------------- loss == ours
def hand_batch(tok, off_policy: bool, seed: int = 0):
    """3 groups of 4 rollouts: mixed, all-correct, mixed; ragged completion lengths."""
    g = torch.Generator().manual_seed(seed)
    prompts = ["12+12=", "30+4=", "7+7="]
    prompt = tok(prompts, padding=True, return_tensors="pt")  # left-padded
    prompt_ids = prompt["input_ids"].repeat_interleave(N, 0)  # [12, P]
    prompt_mask = prompt["attention_mask"].repeat_interleave(N, 0)
    B, T = prompt_ids.shape[0], 5
    completion_ids = torch.randint(2, len(tok), (B, T), generator=g)  # [12, 5]
    lengths = torch.tensor([5, 3, 1, 4, 2, 5, 5, 3, 4, 1, 2, 5])
    completion_mask = (torch.arange(T)[None] < lengths[:, None]).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, tok.pad_token_id)
    labels = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 0]).bool()
    inputs = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "advantages": torch.randn(B, generator=g) * 100,  # garbage: REAL/GRAD must ignore it
        "num_items_in_batch": completion_mask.sum(),
        "ral_labels": labels, "ral_group_ids": torch.arange(B) // N,
    }  # fmt: skip
    if off_policy:
        # pi_old = a perturbed policy: scores s_i are no longer 0
        inputs["old_per_token_logps"] = -torch.rand(B, T, generator=g) * 4
    return inputs


@pytest.mark.parametrize("off_policy", [False, True], ids=["on-policy", "off-policy"])
@pytest.mark.parametrize("ral_loss", ["real", "grad"])
def test_trainer_loss_and_gradients_equal_objectives(tmp_path, ral_loss, off_policy):
    trainer = make_trainer(tmp_path, ral_loss=ral_loss, tau=0.7, gradient_accumulation_steps=2)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 2  # set by Trainer's loop; TRL divides the loss by it
    inputs = hand_batch(trainer.processing_class, off_policy)

    loss = trainer.compute_loss(model, inputs)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)

    # ours, from plain logits: loss = objective(sequence_scores(...).view(G, n), rewards, tau) / accumulation
    logps = reference_logps(model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                            inputs["completion_mask"])  # fmt: skip
    old = inputs.get("old_per_token_logps", logps.detach())
    scores = objectives.sequence_scores(logps, old, inputs["completion_mask"]).view(3, N)
    objective = objectives.real_loss if ral_loss == "real" else objectives.grad_loss
    expected = objective(scores, inputs["ral_labels"].view(3, N), 0.7) / 2
    expected_grads = torch.autograd.grad(expected, params)

    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    if not off_policy and ral_loss == "real":
        # on-policy s = 0, any tau: group (+,-,-,+) log(1+2) + log(1+2); all-correct group 0;
        # group (-,+,-,-) log(1+1) + log(1+3) -> (2 log 3 + 3 log 2) / G=3, / accumulation 2
        assert loss.item() == pytest.approx((2 * math.log(3) + 3 * math.log(2)) / 3 / 2, rel=1e-6)
    assert trainer._metrics["train"]["ral/weight/pos_max"][-1] > 0


def test_trainer_rejects_a_split_group(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = hand_batch(trainer.processing_class, off_policy=False)
    inputs["ral_group_ids"] = inputs["ral_group_ids"][torch.tensor([0, 1, 2, 4, 3, 5, 6, 7, 8, 9, 10, 11])]
    with pytest.raises(ValueError, match="whole groups"):
        trainer.compute_loss(trainer.model, inputs)


# ----------------------------------------------------------------------------- generation -> labels
def starts_with_digit(completions, **kwargs):
    return [float(bool(c) and c[0].isdigit()) for c in completions]


def test_labels_follow_their_rollouts_through_shuffle_and_slices(tmp_path):
    trainer = make_trainer(tmp_path, reward=starts_with_digit, steps_per_generation=2)
    trainer.model.train()
    generation_batch = next(iter(trainer.get_train_dataloader()))  # 16 rows: 4 prompts x 4 rollouts
    tok = trainer.processing_class
    for step in range(2):
        trainer._step = step
        inputs = trainer._prepare_inputs(generation_batch)
        check_whole_groups(inputs["ral_group_ids"], N)
        texts = tok.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
        assert inputs["ral_labels"].tolist() == [bool(r) for r in starts_with_digit(texts)]
        prompts = tok.batch_decode(inputs["prompt_ids"], skip_special_tokens=True)
        assert all(len(set(prompts[i : i + N])) == 1 for i in range(0, len(prompts), N))


def test_non_binary_reward_fails_loudly(tmp_path):
    trainer = make_trainer(tmp_path, reward=lambda completions, **kw: [0.7] * len(completions))
    with pytest.raises(ValueError, match="0/1 labels"):
        trainer.train()


# ----------------------------------------------------------------------------- training runs
@pytest.mark.slow
@pytest.mark.parametrize(
    "ral_loss, overrides",
    [
        ("real", {}),
        ("grad", {}),
        ("real", {"steps_per_generation": 3}),  # 3 optimiser steps per generation: steps 2-3 off-policy
        (None, {"loss_type": "grpo"}),  # plain TRL through the same subclass
    ],
    ids=["real", "grad", "real-off-policy", "trl-grpo"],
)
def test_short_run_trains_every_parameter(tmp_path, ral_loss, overrides):
    trainer = make_trainer(tmp_path, num_prompts=12, ral_loss=ral_loss, max_steps=3, **overrides)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in logs)
    frozen = [k for k, v in trainer.model.named_parameters() if torch.equal(v, before[k])]
    assert not frozen, f"parameters that did not move: {frozen}"
    if ral_loss is not None:
        mixed = [h["ral/frac_mixed_groups"] for h in logs if "ral/frac_mixed_groups" in h]  # generation steps
        assert mixed and all(m == 1.0 for m in mixed)  # alternating rewards
        # stored pi_old is the generation-time policy: s ~ 0 (float noise) until the first update
        off_policy = [h["ral/score/abs_max"] > 1e-4 for h in logs]
        assert off_policy == ([False, True, True] if overrides else [False, False, False])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_keep_groups_whole_and_match_the_full_batch_gradient(tmp_path):
    """``accelerate launch --num_processes 2`` on CPU (gloo), 2 REAL steps from one generation batch."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs/accelerate/cpu_2proc.yaml"),
        "--num_processes", "2", "--main_process_port", str(free_port()),
        str(REPO / "tests/trl_ddp_script.py"), str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert {r["backend"] for r in ranks} == {"gloo"}

    seen = Counter()
    for step in (1, 2):
        per_rank = [next(rec for rec in r["records"] if rec["step"] == step) for r in ranks]
        for rec in per_rank:
            # whole groups on each rank: blocks of N rows, one prompt and one group id per block
            check_whole_groups(torch.tensor(rec["group_ids"]), N)
            blocks = [rec["prompts"][i : i + N] for i in range(0, len(rec["prompts"]), N)]
            assert all(len(set(b)) == 1 for b in blocks)
            # DDP-averaged gradient == gradient of real_loss over both ranks' groups
            assert rec["grad_max_abs_diff"] <= 1e-5 * max(1.0, rec["grad_max_abs"])
            assert rec["mean_local_loss"] == pytest.approx(rec["full_batch_loss"], rel=1e-5)
            assert rec["off_policy_inputs"]  # steps_per_generation=2 > accumulation 1: pi_old is stored
        # no prompt on both ranks at the same step
        assert not set(per_rank[0]["prompts"]) & set(per_rank[1]["prompts"])
        for rec in per_rank:
            seen.update(rec["prompts"])
    # the 8 prompts of the generation batch, each trained on once with all N rollouts
    assert len(seen) == 8 and set(seen.values()) == {N}
    for r in ranks:
        assert len(r["logged_losses"]) == 2 and all(torch.isfinite(torch.tensor(r["logged_losses"])))


@pytest.mark.slow
def test_bench_trl_runs_both_trainers_and_reports_the_floor(capsys):
    """``make bench-trl`` end to end at its smallest (1 round, 2 timed steps each): it must keep
    working as TRL and our trainer change. Only the report is checked, never a speed."""
    from rewards_as_labels.tools import bench_trl

    ratio = bench_trl.main(["--steps", "3", "--rounds", "1"])
    out = capsys.readouterr().out
    assert math.isfinite(ratio) and ratio > 0
    assert out.rstrip().splitlines()[-1] == f"ours/trl step-time ratio: {ratio:.3f}"
    assert "model-work floor" in out and "of TRL's step" in out
