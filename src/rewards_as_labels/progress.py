"""Progress bars that go where a person watches: the terminal under papermill, a widget in Jupyter.

Every bar the package makes comes from :func:`progress_bar`. Under the notebook runner
(``tools.notebook``, which sets ``REWARDS_AS_LABELS_PROGRESS=terminal`` for its kernel) a bar is a
plain tqdm bar on the kernel's real stderr -- the runner's terminal and the Make log -- so the
executed notebook stores results, not one output line per refresh. Anywhere else it is
``tqdm.auto``: a widget bar in an interactive Jupyter (ipywidgets), a text bar in a terminal.

The runner also sets ``HF_HUB_DISABLE_PROGRESS_BARS`` and ``HF_DATASETS_DISABLE_PROGRESS_BARS``
for the kernel, which turn off transformers' ("Loading weights"), huggingface_hub's and datasets'
own bars: they cannot be pointed at another stream, and their refreshes would fill the notebook.
It silences tqdm's "IProgress not found" warning there too (``PYTHONWARNINGS``, if not already set).

Why not ``sys.__stderr__``: ipykernel redirects file descriptor 2 itself into a pipe that it
forwards to the notebook, so ``sys.__stderr__`` lands in the stored outputs too. The kernel's
``sys.stderr.fileno()`` is the copy of the original descriptor that ipykernel keeps, i.e. the
terminal the kernel was started from; in a plain Python process it is 2.
"""

from __future__ import annotations

import functools
import io
import os
import sys

PROGRESS_ENV = "REWARDS_AS_LABELS_PROGRESS"
# what the notebook runner sets for its kernel: our bars to the terminal, the libraries' bars off,
# and tqdm.auto's "IProgress not found" warning silenced (no widget is wanted there; importing
# transformers imports tqdm.auto, which warns where ipywidgets is missing)
RUNNER_ENV = {
    PROGRESS_ENV: "terminal",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "PYTHONWARNINGS": "ignore:IProgress not found",
}


def to_terminal() -> bool:
    """True under the notebook runner: bars go to the terminal, not into the notebook."""
    return os.environ.get(PROGRESS_ENV, "").lower() == "terminal"


@functools.lru_cache(maxsize=1)
def terminal_stream():
    """A text stream on the process's original stderr, behind any redirection by ipykernel."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.__stderr__
    return open(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")


def progress_bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)`` on the terminal under the notebook runner, else ``tqdm.auto``.

    >>> list(progress_bar(range(3), disable=True))
    [0, 1, 2]
    """
    if to_terminal():
        from tqdm.std import tqdm

        kwargs.setdefault("file", terminal_stream())
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
