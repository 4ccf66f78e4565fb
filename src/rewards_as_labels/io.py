"""Crash-safe file and folder writes shared by data, warm start, checkpoints and metrics.

Every artefact a later stage reads (JSONL splits, manifests, model folders, metrics) is
written to a temporary name in the *same* folder and then renamed into place, so a reader
sees either the old complete artefact or the new complete one, never a half-written file
(``os.replace`` is atomic within one file system; a temp file elsewhere, e.g. ``/tmp``,
could sit on another device and turn the rename into a copy).

Choices:
1) Temp names carry the process id (``.name.tmp-<pid>`` / ``name.tmp-<pid>``) so two
   processes writing the same target never share a temp path; the last rename wins.
2) Replacing a *folder* takes two renames (old -> ``name.old-<pid>``, new -> ``name``), so
   there is a brief window where ``name`` is absent; readers that find it missing should
   treat the artefact as not yet written, which is what every caller here does anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    >>> p = atomic_write_text("/tmp/_ral_doc.txt", "hi")
    >>> p.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            # fsync before the rename: otherwise a power cut can leave a renamed, empty file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (sorted keys, trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Context manager that yields a temporary folder and publishes it as ``path`` on success.

    Write everything into the yielded folder; when the ``with`` block ends without an
    exception the folder is renamed to ``path``, replacing an old ``path`` if there is one.
    On an exception the temporary folder is deleted and an old ``path`` is left untouched.

    >>> with atomic_directory("/tmp/_ral_doc_dir") as tmp:
    ...     _ = (tmp / "a.txt").write_text("x")
    >>> sorted(p.name for p in Path("/tmp/_ral_doc_dir").iterdir())
    ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    # leftovers of an earlier crash of a process that had the same pid
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
