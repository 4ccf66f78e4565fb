"""The rollout batch and what every sampling backend shares (``rollout``: HF ``generate``;
``rollout_vllm``: vLLM): the prompt layout, masks, truncation flags and texts of a batch.

A backend turns P prompts into a :class:`RolloutBatch` of B = P * n responses in
*prompt-major* order: rows ``g*n .. g*n+n-1`` are the n rollouts of prompt g, so a ``[B]``
tensor reshapes to ``[P, n]`` groups with ``.view(P, n)``. See ``rollout``'s docstring for
the choices (masks include the first EOS; texts keep special tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch

from .modeling import encode_prompts


@dataclass
class RolloutBatch:
    """P prompts x n rollouts, prompt-major (B = P * n rows).

    prompt_ids      LongTensor [B, Tp]  left-padded prompt tokens
    prompt_mask     BoolTensor [B, Tp]  True on real prompt tokens
    response_ids    LongTensor [B, Tr]  right-padded sampled tokens (pad id after EOS)
    response_mask   BoolTensor [B, Tr]  True on generated tokens up to and including EOS
    truncated       BoolTensor [B]      True when no EOS came within max_new_tokens
    texts           list[str]           decoded responses without EOS / padding
    n               int                 rollouts per prompt (group size)
    sampling_logprobs FloatTensor [B, Tr] | None  the sampler's own log-probs, 0 off-mask
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]
    n: int
    sampling_logprobs: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.response_ids.shape[0]

    @property
    def num_groups(self) -> int:
        return self.batch_size // self.n

    @property
    def response_lengths(self) -> torch.Tensor:
        """Tokens per response including EOS, LongTensor [B]."""
        return self.response_mask.sum(dim=1)

    def to(self, device) -> RolloutBatch:
        """The same batch with every tensor on ``device``."""
        return RolloutBatch(
            **{
                f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                for f in fields(self)
            }
        )

    def select(self, rows: torch.Tensor | slice) -> RolloutBatch:
        """Sub-batch of the given rows (keep whole groups to keep ``n`` meaningful)."""
        if isinstance(rows, slice):
            rows = torch.arange(self.batch_size)[rows]
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                picked[f.name] = value[rows]
            elif isinstance(value, list):
                picked[f.name] = [value[i] for i in rows.tolist()]
            else:
                picked[f.name] = value
        return RolloutBatch(**picked)


class RolloutBackend(Protocol):
    """What the trainer and the evaluator need from a sampler."""

    def generate(
        self,
        prompts: list[str],
        n: int,
        *,
        temperature: float,
        max_new_tokens: int,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> RolloutBatch:
        """Sample ``n`` responses per prompt (``temperature=0``: greedy)."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the sampler use ``model``'s current weights."""
        ...


def eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer and the model's generation config define no EOS token")
    return ids


def encode_repeated(tokenizer, prompts: list[str], n: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and bool mask, each prompt repeated n times in place
    (prompt-major), ``[B, Tp]`` each -- the prompt layout every backend returns."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if tokenizer.padding_side != "left":
        raise ValueError("the tokenizer must pad on the left for generation (padding_side='left')")
    enc = encode_prompts(tokenizer, prompts)  # refuses raw prompts for a chat model
    return enc["input_ids"].repeat_interleave(n, dim=0), enc["attention_mask"].repeat_interleave(n, dim=0).bool()


def finish_batch(
    tokenizer,
    eos_ids: list[int],
    prompt_ids,
    prompt_mask,
    response_ids,
    n: int,
    lengths: torch.Tensor | None = None,
    sampling_logprobs: torch.Tensor | None = None,
) -> RolloutBatch:
    """Masks, truncation flags and texts from raw sampled ids ``[B, Tr]`` (``lengths``: tokens
    each row really sampled, when shorter rows were padded by the caller)."""
    device = response_ids.device
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=device))  # [B, Tr]
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # [B, Tr] EOS strictly earlier
    response_mask = eos_before == 0  # [B, Tr] up to and including the first EOS
    if lengths is not None:
        response_mask &= torch.arange(response_ids.shape[1], device=device)[None, :] < lengths[:, None]  # [B, Tr]
    truncated = ~is_eos.any(dim=1)  # [B]
    # pad stays a legal sampled token before EOS, so rely on the mask, not on pad ids
    response_ids = response_ids.masked_fill(~response_mask, tokenizer.pad_token_id)  # [B, Tr]
    texts = [
        tokenizer.decode(ids[keep].tolist(), skip_special_tokens=False)
        for ids, keep in zip(response_ids, response_mask & ~is_eos)
    ]
    return RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        truncated=truncated,
        texts=texts,
        n=n,
        sampling_logprobs=None if sampling_logprobs is None else sampling_logprobs.masked_fill(~response_mask, 0.0),
    )
