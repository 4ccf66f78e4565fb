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
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

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
    dtype = getattr(torch, cfg.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype={cfg.dtype!r} is not a torch dtype (use float32, bfloat16, ...)")
    return dtype


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def load_policy(cfg, path: str | Path | None = None):
    """Load ``(model, tokenizer)`` from ``path``, else ``cfg.model``, else the warm start.

    ``path``/``cfg.model`` may be a local folder or a hub id (``from_pretrained``). With both
    empty the profile's warm-started model at ``cfg.warmstart_dir / "model"`` is used; a
    missing one raises a ``ValueError`` that names ``make warmstart PROFILE=<profile>``.
    Also sets torch's intra-op threads to ``cfg.num_threads``.
    """
    torch.set_num_threads(cfg.num_threads)
    source = str(path or cfg.model or "")
    if not source:
        folder = Path(cfg.warmstart_dir) / "model"
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"no warm-started model at {folder}; run `make warmstart PROFILE={cfg.profile}` "
                f"first (or set model=<hub id or folder>)"
            )
        source = str(folder)
    elif not Path(source).exists() and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise ValueError(f"model folder {source!r} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(cfg))
    except OSError as exc:
        raise ValueError(
            f"cannot load model {source!r}: {exc}. If it is a hub id, this machine may be offline "
            f"(download it once where the hub is reachable, then pass the local folder)"
        ) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # hub chat models often lack a pad token; padding is masked out so any id works
        tokenizer.pad_token = tokenizer.eos_token
    model.to(cfg.device)
    model.eval()
    return model, tokenizer
