"""Tiny offline fixtures for the TRL integration tests, and the multi-process check they launch.

Imported by ``tests/test_trl_integration.py`` for the builders; run under
``accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tests/trl_ddp_script.py OUT``
for the 2-process test. Each rank trains 2 steps of REAL (2 slices of one generation batch, so
step 2 is off-policy) and, after every backward, records

    * the prompts and group ids of the rollouts it trained on (whole groups per rank?), and
    * the DDP-averaged gradient next to the gradient of the paper's loss on the *global* batch
      (all ranks' rollouts gathered), ``real_loss(sequence_scores(...).view(G, n), labels, tau)``,
      with log-probs recomputed by plain ``model(...).logits`` (not TRL's code path),

then writes ``OUT/rank{r}.json``. The test reads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from rewards_as_labels import objectives
from rewards_as_labels.integrations.trl import RewardsAsLabelsGRPOConfig, RewardsAsLabelsGRPOTrainer

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 +=?"
GROUP_SIZE = 4


# ----------------------------------------------------------------------------- builders
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character, ``<pad>`` = 0, ``</s>`` = 1; left padding as TRL requires."""
    vocab = {"<pad>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()  # "1","0" -> "10", not "1 0"
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", padding_side="left")


def tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    """A 2-layer Qwen2 with hidden size 64 (~70k parameters), float32, random weights."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(CHARS) + 2, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=None,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def tiny_dataset(num_prompts: int = 8) -> Dataset:
    """Distinct prompts of equal length (``"10+10="``, ...), so no prompt is ever left-padded."""
    return Dataset.from_dict({"prompt": [f"{i:02d}+{i:02d}=" for i in range(10, 10 + num_prompts)]})


def alternating_reward(completions, **kwargs) -> list[float]:
    """0, 1, 0, 1, ... over TRL's local batch: with an even group size every group is mixed,
    so every step has a gradient. A plumbing reward, not a task."""
    return [float(i % 2) for i in range(len(completions))]


def tiny_args(output_dir: str, **overrides) -> RewardsAsLabelsGRPOConfig:
    """CPU defaults for a few-second run: 2 groups of 4 rollouts per slice, 6-token completions."""
    kwargs = dict(
        output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, learning_rate=1e-2,
        num_generations=GROUP_SIZE, per_device_train_batch_size=2 * GROUP_SIZE, max_completion_length=6,
        max_steps=2,
    )  # fmt: skip
    kwargs.update(overrides)
    return RewardsAsLabelsGRPOConfig(**kwargs)


def reference_logps(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """``[B, T]`` log pi(o_t) of each completion token from plain logits (independent of TRL)."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)  # [B, P+T]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    P = prompt_ids.shape[1]
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, P - 1 : -1]  # [B, T, V]
    return F.log_softmax(logits.float(), -1).gather(-1, completion_ids[..., None]).squeeze(-1)  # [B, T]


# ----------------------------------------------------------------------------- the 2-process check
KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "ral_labels", "ral_group_ids")


class RecordingTrainer(RewardsAsLabelsGRPOTrainer):
    """Records, after each backward, what this rank trained on and how its (DDP-averaged)
    gradient compares with the full-batch gradient of the paper's loss."""

    records: list

    def _compute_loss(self, model, inputs):
        self._recorded_inputs = inputs  # the prepared slice (training_step only sees the raw rows)
        return super()._compute_loss(model, inputs)

    def training_step(self, model, inputs, num_items_in_batch):
        loss = super().training_step(model, inputs, num_items_in_batch)
        inputs = self._recorded_inputs
        # gradient_accumulation_steps = 1: DDP has all-reduced (averaged) the gradients by now
        params = [p for p in model.parameters() if p.requires_grad]
        ddp_grads = [p.grad.detach().clone() for p in params]
        local = {k: inputs[k].detach().cpu() for k in KEYS}
        if "old_per_token_logps" in inputs:
            local["old_per_token_logps"] = inputs["old_per_token_logps"].detach().cpu()
        chunks = gather_object([local])  # one dict per rank, rank order

        # The paper's batch loss over all ranks' rollouts, each rank's chunk with its own padding.
        net = self.accelerator.unwrap_model(model)
        scores, labels = [], []
        for c in chunks:
            logps = reference_logps(net, c["prompt_ids"], c["prompt_mask"], c["completion_ids"], c["completion_mask"])
            old = c.get("old_per_token_logps", logps.detach())
            scores.append(objectives.sequence_scores(logps, old, c["completion_mask"]))  # [B_r]
            labels.append(c["ral_labels"])
        scores, labels = torch.cat(scores).view(-1, GROUP_SIZE), torch.cat(labels).view(-1, GROUP_SIZE)
        ref_loss = objectives.real_loss(scores, labels, self.args.tau)
        ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True)
        diff = max((d - (r if r is not None else 0)).abs().max().item() for d, r in zip(ddp_grads, ref_grads))
        scale = max(r.abs().max().item() for r in ref_grads if r is not None)
        local_losses = gather_object([loss.item()])

        tok = self.processing_class
        self.records.append(
            {
                "step": self.state.global_step + 1,
                "prompts": [tok.decode(ids[m.bool()]) for ids, m in zip(local["prompt_ids"], local["prompt_mask"])],
                "group_ids": local["ral_group_ids"].tolist(),
                "labels": local["ral_labels"].int().tolist(),
                "local_loss": loss.item(),
                "mean_local_loss": sum(local_losses) / len(local_losses),
                "full_batch_loss": ref_loss.item(),
                "grad_max_abs_diff": diff,
                "grad_max_abs": scale,
                "off_policy_inputs": "old_per_token_logps" in local,
            }
        )
        return loss


def main(out: str) -> None:
    out_dir = Path(out)
    # Per rank: 2 groups per slice x 2 slices (steps_per_generation=2) = one generation batch of
    # 4 groups; 2 ranks -> all 8 prompts once. gradient_accumulation_steps=1, so step 2 is off-policy.
    args = tiny_args(str(out_dir / "trainer"), steps_per_generation=2, max_steps=2, ral_loss="real")
    trainer = RecordingTrainer(
        model=tiny_model(0), reward_funcs=alternating_reward, args=args,
        train_dataset=tiny_dataset(8), processing_class=tiny_tokenizer(),
    )  # fmt: skip
    trainer.records = []
    trainer.train()
    state = trainer.accelerator.state
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {
        "process_index": state.process_index,
        "num_processes": state.num_processes,
        "distributed_type": str(state.distributed_type),
        "backend": state.backend,
        "logged_losses": losses,
        "records": trainer.records,
    }
    (out_dir / f"rank{state.process_index}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
