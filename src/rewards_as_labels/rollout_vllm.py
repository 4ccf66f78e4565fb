"""Rollouts with vLLM: an engine colocated in the training process (``rollout_backend: vllm``).

The paper's verl setup samples with vLLM and trains with FSDP; here one process holds both
the training module and a vLLM engine, and after every training step the trained weights
are copied into the engine in place (no restart, no checkpoint round-trip).

Why the old log-probs still come from the training model, not from vLLM:
    The ratio ``pi_theta / pi_old`` (and REAL's score ``s = log pi_theta - log pi_old``) must
    be exactly 1 (0) on the first, on-policy mini-batch. vLLM's sampler computes its
    log-probs with other kernels (fused QKV / gate-up projections, its own attention and
    RMSNorm, a padded vocabulary) than the trainer's forward pass, so the two differ by
    rounding (below 1e-6 here in float32; bf16 on a GPU rounds far more coarsely). Taking the ratio
    against vLLM's numbers would turn that rounding into a spurious off-policy signal and
    clipping, so the trainer recomputes old log-probs with its own model
    (``rollout.response_logprobs``) and uses vLLM's only as a check: the trainer logs their
    largest gap as ``rollout/logprob_max_abs_diff``, which jumps if a weight sync is missed.

Choices and deviations (against ``HFGenerateBackend``, whose batch layout this one copies):
1) In-process engine: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set before vLLM is imported,
   so the engine core and its worker live in this process and tensors can be handed to the
   worker directly (in the multiprocess mode they would have to be pickled, which fails).
   ``enforce_eager=True``: torch.compile start-up costs 20-30 s on CPU and its cache did
   not reload. On CPU the KV cache is ``VLLM_CPU_KVCACHE_SPACE = cfg.vllm_kv_cache_gb`` GiB.
   The engine computes in the trainer's compute dtype: float32 on CPU, bfloat16 for
   ``dtype: auto`` on CUDA (where ``cfg.gpu_memory_utilization`` caps its share of the GPU).
   GPU: the CUDA package ``vllm`` (0.33 needs torch 2.14, so its own environment, apart
   from the CPU pins) runs the same in-process code path; untested here (no GPU).
2) The engine starts from a folder: the policy's own (``model.name_or_path``) when it is a
   local model folder, otherwise the current weights saved to a temporary folder. The
   trainer builds the backend right after loading, so folder and module agree; anyone who
   changes the module first must call ``sync_weights``.
3) Prompts are tokenised by *our* tokenizer and passed as token ids
   (``skip_tokenizer_init=True``): identical prompt tokens to the HF backend, and no
   dependence on vLLM's tokenizer loading. Responses are decoded by our tokenizer too.
4) Sampling is the plain softmax of ``logits / temperature``: top-k "off" is whatever the
   installed vLLM's ``SamplingParams().top_k`` is (0 in vLLM 0.32; -1 in older versions),
   top-p 1.0, and ``generation_config="vllm"`` so a model folder's generation_config.json
   (e.g. ``top_k=50``) cannot change the sampling defaults. ``logprobs_mode=
   "processed_logprobs"`` makes the returned log-probs those of the distribution actually
   sampled from (after temperature), the quantity ``response_logprobs`` computes.
5) Seeds: the request of prompt g gets seed ``seed + g*n``; vLLM gives its i-th child
   ``seed + g*n + i``, so every row has its own stream and a rerun repeats exactly. The
   streams differ from HF's, so the two backends draw different (equally distributed)
   samples for the same seed; greedy decoding (``temperature=0``) agrees token for token.
6) vLLM's CPU worker replaces ``torch.set_num_threads`` with a no-op after binding its
   threads; we put the original back and set ``cfg.num_threads``, because the trainer
   shares the process and owns the thread count.
7) Weight sync (``sync_weights``): the worker's ``reload_weights(weights_iterator=...,
   is_checkpoint_format=True)``, reached through ``LLM.collective_rpc`` (in-process it calls
   the worker directly, no serialisation), then ``reset_prefix_cache()`` since cached
   prompt KV was computed with the old weights. It takes HF parameter names and runs the
   model's own ``load_weights`` inside vLLM's layer-wise reload, which re-applies the
   post-load processing (e.g. CPU weight repacking) -- calling ``model.load_weights``
   directly fails on CPU, where a linear layer keeps only its packed copy (its ``weight``
   parameter is emptied). A vLLM without ``reload_weights`` (older GPU builds) falls back to
   ``apply_model(lambda m: m.load_weights(...))``, the way TRL syncs its colocated engine;
   that branch cannot be exercised on this CPU machine. After either, tied layers are
   reprocessed (:func:`reprocess_tied_layers`): vLLM 0.32's reload leaves the CPU kernel's
   packed copy of a tied ``lm_head`` stale.
8) Chunked prefill is off. With it on, a batch whose prompts exceed the step's token budget
   (e.g. 64 chat prompts x 8 samples) has a request prefilled in parts; vLLM then discards
   that step's sampled token and rewinds the request's seeded generator with ``set_offset``,
   which a CPU generator does not support ("CPU Generator does not use offset", vLLM 0.32).
   Off, the scheduler only admits whole prompts and leaves the rest for the next step.
9) The engine's context (``max_model_len``) is derived, not fixed: the longest prompt the
   caller will send (``prompts`` of :func:`~rewards_as_labels.rollout.make_backend`: the
   training and validation prompts for a run, the benchmark prompts for an evaluation)
   plus ``max_new_tokens``, refused up front when it exceeds the model's own context
   (:func:`engine_max_model_len`). vLLM would otherwise stop a response at
   ``max_model_len`` minus its prompt without a word (seen: 2041 and 2044 tokens with a
   4096 budget under a fixed 2048), and the cut response would score 0 as truncated. A
   request that does not fit is a ``ValueError`` before anything is sampled.
10) Each sync is checked: after the reload the engine's copies of the RMSNorm weights
   (named alike in HF and vLLM, updated by every step) are read back and compared with the
   trainer's, rounded to the engine's dtype (``last_sync_max_abs_diff``, logged as
   ``rollout/sync_max_abs_diff``; 0 when the sync landed). The log-prob gap alone cannot
   tell a missed sync of a bfloat16 engine from a landed one when the step's updates are
   below bfloat16's resolution (2^-8 relative): both leave the engine's weights unchanged.
   This check compares the weights themselves, so it is exact in every dtype.
11) Four vLLM log records that this setup makes harmless are dropped (:class:`KnownNoise`,
   attached to the two vLLM loggers that emit them), so that the log shows only what needs
   attention: at engine start a traceback "Chat template warmup failed ... Tokenizer not
   available when `skip_tokenizer_init=True`" and "Using None for EOS token id" (3); at every
   sync "RotaryEmbedding: Failed to load weights" and, for a tied head, "ParallelLMHead: Failed
   to load weights" (7). Each record's reason is in :data:`KnownNoise.REASONS`; the filter
   counts what it dropped (``KnownNoise.dropped``). Any other warning passes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from .modeling import _dtype, autocast_dtype
from .rollout_batch import RolloutBatch, encode_repeated, eos_ids, finish_batch

NORM_SUFFIX = "norm.weight"  # RMSNorm weights: one tensor each, the same name in HF and vLLM


def engine_max_model_len(longest_prompt: int, max_new_tokens: int, context: int | None) -> int:
    """Tokens the engine must hold per sequence: the longest prompt plus the response budget (9).

    >>> engine_max_model_len(120, 4096, 131072)
    4216
    >>> engine_max_model_len(120, 4096, 4096)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: prompts of up to 120 tokens + max_new_tokens=4096 need a context of 4216 tokens,
    but the model's is 4096; lower max_new_tokens to at most 3976 (or shorten the prompts)
    """
    need = int(longest_prompt) + int(max_new_tokens)
    if context is not None and need > context:
        raise ValueError(
            f"prompts of up to {longest_prompt} tokens + max_new_tokens={max_new_tokens} need a context of "
            f"{need} tokens, but the model's is {context}; lower max_new_tokens to at most "
            f"{context - longest_prompt} (or shorten the prompts)"
        )
    return need


def engine_settings(cfg, *, longest_prompt: int, context: int | None) -> dict:
    """Keyword arguments of ``vllm.LLM`` for ``cfg`` (all but the model folder); see 1), 4), 8), 9)."""
    return dict(
        skip_tokenizer_init=True,
        # the trainer's compute dtype: float32 on CPU; bfloat16 for dtype: auto on CUDA
        dtype=str(autocast_dtype(cfg) or _dtype(cfg)).removeprefix("torch."),
        seed=cfg.seed,
        max_model_len=engine_max_model_len(longest_prompt, cfg.max_new_tokens, context),
        enforce_eager=True,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        generation_config="vllm",
        logprobs_mode="processed_logprobs",
        enable_chunked_prefill=False,  # (8): a seeded request must never be prefilled in parts
    )


def longest_prompt_tokens(tokenizer, prompts: list[str]) -> int:
    """Token count of the longest of ``prompts`` as the backends encode them (no padding)."""
    from .modeling import has_chat_template

    if not prompts:
        return 0
    ids = tokenizer(list(prompts), add_special_tokens=not has_chat_template(tokenizer)).input_ids
    return max(len(row) for row in ids)


def import_vllm():
    """Import vLLM in the in-process mode this backend needs; raises ImportError if absent."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # read when the engine starts
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    import vllm

    return vllm


class KnownNoise(logging.Filter):
    """Drops the vLLM log records that this backend's setup makes harmless (11), counting them.

    Attached to the logger that emits each record (a logger's filter drops a record before any
    handler sees it). ``tied``: also drop the tied ``lm_head``'s reload warning, which only a model
    with tied embeddings makes harmless. Records are matched on their exact message.
    """

    REASONS = {  # message -> why it is harmless here
        "Chat template warmup failed":  # only this cause: ValueError "... skip_tokenizer_init=True"
        "we tokenise prompts ourselves and send token ids (3), so vLLM never renders a chat template",
        "Using None for EOS token id because tokenizer is not initialized": (
            "every request carries the model's EOS ids as stop_token_ids"
        ),
        "RotaryEmbedding: Failed to load weights": (
            "its cos/sin cache is computed from the config, not loaded: checkpoints hold none, the reload restores it"
        ),
        "ParallelLMHead: Failed to load weights": (
            "a tied head shares embed_tokens' weight, which is loaded; reprocess_tied_layers repacks the head"
        ),
    }
    LOGGERS = ("vllm.renderers.base", "vllm.model_executor.model_loader.reload.layerwise")
    dropped: dict[str, int] = {}  # message -> records dropped in this process

    def __init__(self, tied: bool):
        super().__init__()
        self.tied = tied

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message not in self.REASONS or (message.startswith("ParallelLMHead") and not self.tied):
            return True
        if message == "Chat template warmup failed":
            exc = record.exc_info[1] if record.exc_info else None
            if "skip_tokenizer_init=True" not in str(exc):
                return True  # some other warm-up failure: let it through
        KnownNoise.dropped[message] = KnownNoise.dropped.get(message, 0) + 1
        return False

    @classmethod
    def install(cls, tied: bool) -> KnownNoise:
        """Attach one filter to each of :data:`LOGGERS`, replacing one an earlier engine attached."""
        noise = cls(tied)
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            # by name, not isinstance: a module reloaded in this process (tests do) has its own class
            for old in [f for f in logger.filters if type(f).__qualname__ == cls.__qualname__]:
                logger.removeFilter(old)
            logger.addFilter(noise)
        return noise


def _engine_folder(model, tokenizer) -> tuple[str, tempfile.TemporaryDirectory | None]:
    """The policy's own folder if it has one, else the current weights saved to a temp folder."""
    own = Path(str(getattr(model, "name_or_path", "") or ""))
    if own.is_dir() and (own / "config.json").is_file() and any(own.glob("*.safetensors")):
        return str(own), None
    tmp = tempfile.TemporaryDirectory(prefix="ral-vllm-")
    model.save_pretrained(tmp.name)
    tokenizer.save_pretrained(tmp.name)
    return tmp.name, tmp


@torch.no_grad()
def reprocess_tied_layers(model: torch.nn.Module) -> int:
    """Redo the post-load processing of layers that share a weight (a tied ``lm_head``).

    vLLM's layer-wise reload loads a tied weight through one owner (``embed_tokens``) and
    puts the other owner (``lm_head``) back untouched ("ParallelLMHead: Failed to load
    weights"). The tensor is shared, but on CPU each embedding layer also keeps a packed
    copy for its GEMM kernel, made after loading, so ``lm_head`` went on computing logits
    with the *old* embedding (greedy tokens diverged from HF after a sync). Re-running the
    layer's ``process_weights_after_loading`` repacks it; on GPU that step is a no-op for
    unquantised embeddings. Runs inside the engine (``LLM.apply_model``); returns the
    number of layers reprocessed.
    """
    owners: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(module)
    done = 0
    for modules in owners.values():
        for module in modules if len(modules) > 1 else ():
            method = getattr(module, "quant_method", None)
            if method is not None:
                method.process_weights_after_loading(module)
                done += 1
    return done


class VLLMBackend:
    """Rollouts from an in-process vLLM engine; same :class:`RolloutBatch` as the HF backend.

    ``generate`` fills ``sampling_logprobs`` with vLLM's log-probs of the sampled tokens;
    ``sync_weights(model)`` copies the training model's weights into the engine in place.
    ``last_sync_s`` holds the duration of the latest sync.
    """

    def __init__(self, model, tokenizer, cfg, prompts: list[str] | None = None):
        vllm = import_vllm()
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids(model, tokenizer)
        self.top_k_off = vllm.SamplingParams().top_k  # 0 in vLLM 0.32; -1 in older versions
        self.last_sync_s = 0.0
        self.last_sync_max_abs_diff = 0.0
        folder, self._tmp = _engine_folder(model, tokenizer)
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.vllm_kv_cache_gb)
        context = getattr(model.config, "max_position_embeddings", None)
        # without the caller's prompts: room for the longest the model's context allows (9)
        longest = (
            longest_prompt_tokens(tokenizer, prompts) if prompts is not None else (context or 0) - cfg.max_new_tokens
        )
        settings = engine_settings(cfg, longest_prompt=max(longest, 1), context=context)
        self.max_model_len = settings["max_model_len"]
        set_num_threads = torch.set_num_threads
        KnownNoise.install(tied=bool(getattr(model.config, "tie_word_embeddings", False)))  # (11)
        self.llm = vllm.LLM(model=folder, **settings)
        torch.set_num_threads = set_num_threads  # undo the CPU worker's no-op patch (6)
        torch.set_num_threads(cfg.num_threads)
        from vllm.inputs import TokensPrompt

        self._sampling_params = vllm.SamplingParams
        self._tokens_prompt = TokensPrompt
        self._engine_dtype = getattr(torch, settings["dtype"])
        self._probes = [name for name, _ in model.named_parameters() if name.endswith(NORM_SUFFIX)][:8]
        self.device = model.device

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Copy ``model``'s parameters into the engine in place (HF names, checkpoint format), then
        check that they landed (10): ``last_sync_max_abs_diff``."""
        t0 = time.perf_counter()
        # tied weights appear once in named_parameters; vLLM ties lm_head itself. Sent in the engine's
        # dtype: an fp32 trainer's weights for a bf16 engine are rounded here, once, not per tensor in vLLM
        weights = [(name, p.detach().to(self._engine_dtype)) for name, p in model.named_parameters()]
        try:
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": iter(weights), "is_checkpoint_format": True}
            )
        except AttributeError as exc:  # a vLLM whose worker lacks reload_weights (see 7)
            if "reload_weights" not in str(exc):
                raise
            self.llm.apply_model(lambda m: m.load_weights(iter(weights)))
        self.llm.apply_model(reprocess_tied_layers)
        self.llm.reset_prefix_cache()
        self.last_sync_s = time.perf_counter() - t0
        self.last_sync_max_abs_diff = self.engine_weight_gap(model)

    @torch.no_grad()
    def engine_weight_gap(self, model) -> float:
        """Largest gap between the engine's RMSNorm weights and ``model``'s rounded to the engine's
        dtype (10); 0.0 when they agree or the model has no such weights."""
        names = set(self._probes)
        if not names:
            return 0.0
        (engine,) = self.llm.apply_model(
            lambda m: {n: p.detach().float().cpu() for n, p in m.named_parameters() if n in names}
        )
        ours = dict(model.named_parameters())
        gaps = [
            (engine[n] - ours[n].detach().to(self._engine_dtype).float().cpu()).abs().max().item()
            for n in names
            if n in engine
        ]
        if not gaps:  # the engine names them otherwise: say so rather than report a false 0
            raise RuntimeError(f"the vLLM engine has none of the weights {sorted(names)} to check a sync against")
        return max(gaps)

    # ----------------------------------------------------------------- sampling
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
        tok = self.tokenizer
        prompt_ids, prompt_mask = encode_repeated(tok, prompts, n, temperature)  # [B, Tp] each (checked)
        enc_ids, enc_mask = prompt_ids[::n], prompt_mask[::n]  # one row per prompt
        requests = [
            self._tokens_prompt(prompt_token_ids=ids[keep.bool()].tolist()) for ids, keep in zip(enc_ids, enc_mask)
        ]
        longest = max(len(r["prompt_token_ids"]) for r in requests)
        if longest + max_new_tokens > self.max_model_len:  # (9): refuse, never cut a response silently
            raise ValueError(
                f"a prompt of {longest} tokens + max_new_tokens={max_new_tokens} does not fit the vLLM engine's "
                f"max_model_len={self.max_model_len}; build the backend with every prompt it will sample "
                f"(make_backend(cfg, model, tokenizer, prompts=...)) or lower max_new_tokens"
            )
        greedy = temperature == 0
        common = dict(
            max_tokens=max_new_tokens,
            logprobs=0,
            stop_token_ids=self.eos_ids,
            detokenize=False,
        )
        if greedy:  # vLLM refuses n > 1 with greedy decoding; the n copies are identical anyway
            params = self._sampling_params(n=1, temperature=0.0, **common)
        else:
            params = [
                self._sampling_params(
                    n=n,
                    temperature=temperature,
                    top_k=top_k if top_k > 0 else self.top_k_off,
                    top_p=top_p,
                    seed=(seed + g * n) % 2**63,
                    **common,
                )
                for g in range(len(prompts))
            ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)

        rows: list[list[int]] = []
        row_logprobs: list[list[float]] = []
        for out in outputs:  # in prompt order
            completions = sorted(out.outputs, key=lambda c: c.index)
            if greedy:
                completions = completions * n
            for c in completions:
                ids = list(c.token_ids)
                rows.append(ids)
                row_logprobs.append([step[t].logprob for t, step in zip(ids, c.logprobs)])
        tr = max(len(ids) for ids in rows)
        B = len(rows)
        response_ids = torch.full((B, tr), tok.pad_token_id, dtype=torch.long)  # [B, Tr]
        logprobs = torch.zeros(B, tr)  # [B, Tr]
        for i, (ids, lps) in enumerate(zip(rows, row_logprobs)):
            response_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            logprobs[i, : len(lps)] = torch.tensor(lps)
        lengths = torch.tensor([len(ids) for ids in rows])  # [B]
        # the training model's device; masks, flags and texts exactly as the HF backend makes them
        return finish_batch(tok, self.eos_ids, prompt_ids, prompt_mask, response_ids, n, lengths, logprobs).to(
            self.device
        )
