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
6) Sampling is transformers' ``generate`` with a complete ``GenerationConfig`` built here
   (sampling flag, temperature, top-k, top-p, budget, EOS and pad only), so extra settings
   in a hub model's own ``generation_config`` (e.g. a repetition penalty) cannot make the
   behaviour policy differ from the policy whose log-probabilities the losses use.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .rollout_batch import RolloutBatch, encode_repeated, eos_ids, finish_batch


class HFGenerateBackend:
    """Rollouts with transformers ``generate`` on the training module itself: all prompts of
    a step in one call.

    With ``return_logprobs=True`` the batch also carries the sampler's own token
    log-probabilities (``compute_transition_scores``), used to test :func:`response_logprobs`.
    """

    def __init__(self, model, tokenizer, *, return_logprobs: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.return_logprobs = return_logprobs
        self.eos_ids = eos_ids(model, tokenizer)

    def sync_weights(self, model) -> None:
        self.model = model  # generate() runs on the live module: nothing to copy

    def _generation_config(self, temperature: float, max_new_tokens: int, top_k: int, top_p: float):
        from transformers import GenerationConfig

        if temperature == 0:
            sampling = dict(do_sample=False)
        else:  # explicit top_k/top_p: generate's defaults (top_k=50) would change the distribution
            sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p)
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_ids,
            return_dict_in_generate=True,
            output_scores=self.return_logprobs,
            **sampling,
        )

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
        model, tok = self.model, self.tokenizer
        device = model.device
        prompt_ids, prompt_mask = encode_repeated(tok, prompts, n, temperature)  # [B, Tp] each
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
        was_training = model.training
        if was_training:  # transformers' train()/eval() walk every module: skip when already in eval
            model.eval()
        with seeded_rng(device, seed):
            # generate() fills unset fields from the model's own generation_config: hide it
            saved, model.generation_config = model.generation_config, type(model.generation_config)()
            try:
                out = model.generate(
                    input_ids=prompt_ids,
                    attention_mask=prompt_mask.long(),
                    generation_config=self._generation_config(temperature, max_new_tokens, top_k, top_p),
                )
            finally:
                model.generation_config = saved
        if was_training:
            model.train()
        response_ids = out.sequences[:, prompt_ids.shape[1] :]  # [B, Tr], Tr <= max_new_tokens
        logprobs = None
        if self.return_logprobs:
            logprobs = model.compute_transition_scores(
                out.sequences, out.scores, normalize_logits=True
            ).float()  # [B, Tr]
        return finish_batch(tok, self.eos_ids, prompt_ids, prompt_mask, response_ids, n, sampling_logprobs=logprobs)


@contextmanager
def seeded_rng(device: torch.device, seed: int):
    """Seed the generators ``generate`` draws from, inside a fork that restores the caller's (3).

    On CUDA the device's generator is forked and seeded with the CPU's; elsewhere only the
    CPU's (``torch.manual_seed`` would also queue CUDA/XPU/MTIA seeding, with a stack trace
    each, about 1 ms).
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if devices:
            torch.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        yield


def response_logprobs(
    model, batch: RolloutBatch, temperature: float, with_entropy: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the sampled response tokens under ``model`` at ``temperature``.

    One forward pass over ``prompt + response``; differentiable (call under
    ``torch.no_grad()`` for old/reference log-probs). Off-mask positions are 0.

    Returns ``logprobs`` FloatTensor [B, Tr], and with ``with_entropy=True`` also the
    entropy of the temperature-scaled next-token distribution at each response position
    (detached: a metric, so a forward with grad can serve both the loss and the entropy).
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
    with torch.no_grad():  # a metric: never part of a loss, so no graph
        logits, log_z = logits.detach(), log_z.detach()
        probs = torch.softmax(logits, dim=-1)  # [B, Tr, V]
        # H = -sum p log p = log Z - sum p * logit
        entropy = (log_z - (probs * logits).sum(dim=-1)).masked_fill(~batch.response_mask, 0.0)  # [B, Tr]
    return logprobs, entropy
