"""Is the Hugging Face hub reachable? Answered in milliseconds, not after a minute of retries.

``transformers`` and ``datasets`` retry an unreachable hub for 40-90 s (measured on this
offline machine: ``load_dataset("openai/gsm8k")`` failed after 42 s,
``AutoTokenizer.from_pretrained(<hub id>)`` after 93 s) before raising an error that does
not say what to do. Every place that would download first asks :func:`offline_reason`:

1) ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set to a true
   value: offline, by request.
2) A proxy in the environment (``HTTPS_PROXY`` ...): we cannot probe past it cheaply, so
   we let the libraries try.
3) Otherwise one TCP connection to the endpoint's host (``HF_ENDPOINT``, default
   huggingface.co) with a 3 s timeout; a DNS failure returns at once.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be reached, or ``None`` when it (probably) can.

    >>> import os; os.environ["HF_HUB_OFFLINE"] = "1"; offline_reason()
    'HF_HUB_OFFLINE=1 is set'
    >>> del os.environ["HF_HUB_OFFLINE"]
    """
    for name in OFFLINE_VARIABLES:
        if _truthy(os.environ.get(name)):
            return f"{name}={os.environ[name]} is set"
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc.__class__.__name__}: {exc})"
    return None
