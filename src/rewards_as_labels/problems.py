"""The :class:`Problem` record and the one cache format every data source writes.

A prepared data set is a folder: one JSONL file of Problems per split, then
``manifest.json``, written last, so its presence means the folder is complete. The
generated task (``arithmetic.py``), the hub's data sets (``data_registry.py``) and your
own files (``local_files.py``) all end up here; ``data.py`` is the entry point that
chooses the source and checks the manifest.

Gold answers: ``answer`` is one string, or a tuple of accepted alternatives when the
source lists several (any of them is correct). On disk a tuple is a JSON list.

Rows read back are checked field by field, so a hand-written or foreign cache fails
with the file, the line, the field and the fix, never with a ``TypeError`` from
``Problem(**row)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .io import atomic_write_text, iter_jsonl

Gold = str | tuple[str, ...]  # one answer, or alternatives (any is correct)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Problem:
    """One task instance.

    >>> Problem(id="test-00000", question="47+385", prompt="47+385=", answer="432", level=3).prompt
    '47+385='
    >>> Problem("minerva-test-00001", "Rate?", "Rate?", ("0.01", "0.02"), 0).answer  # alternatives
    ('0.01', '0.02')
    """

    id: str
    question: str
    prompt: str
    answer: Gold
    level: int


FIELD_TYPES = {"id": str, "question": str, "prompt": str, "answer": (str, list), "level": int}
assert list(FIELD_TYPES) == [f.name for f in fields(Problem)]


def read_manifest(folder: Path) -> dict | None:
    """``folder``'s manifest, or None when it is missing or not JSON (an incomplete folder)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_problems(path: Path, problems: list[Problem]) -> None:
    """``problems`` as JSON lines, written atomically (a tuple answer becomes a JSON list)."""
    atomic_write_text(path, "".join(json.dumps(asdict(p)) + "\n" for p in problems))


def problem_from_row(row, where: str, fix: str) -> Problem:
    """A :class:`Problem` from one cached row, or a ``ValueError`` naming the bad field and ``fix``.

    >>> problem_from_row({"id": "a", "question": "q", "prompt": "q", "answer": ["1", "2"], "level": 0}, "x", "").answer
    ('1', '2')
    """
    if not isinstance(row, dict):
        raise ValueError(
            f"{where} is a {type(row).__name__}, not an object with fields {', '.join(FIELD_TYPES)}; {fix}"
        )
    extra = [k for k in row if k not in FIELD_TYPES]
    missing = [k for k in FIELD_TYPES if k not in row]
    if extra or missing:
        what = "; ".join(
            ([f"has field(s) {extra} that a Problem does not have"] if extra else [])
            + ([f"lacks field(s) {missing}"] if missing else [])
        )
        raise ValueError(f"{where} {what} (a cached Problem has exactly {', '.join(FIELD_TYPES)}); {fix}")
    for name, kind in FIELD_TYPES.items():
        value = row[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(
                f"{where}: field {name!r} is {value!r}, expected {getattr(kind, '__name__', 'a string or list')}; {fix}"
            )
    answer = row["answer"]
    if isinstance(answer, list):
        if not answer or not all(isinstance(a, str) and a for a in answer):
            raise ValueError(f"{where}: field 'answer' is {answer!r}, expected a non-empty list of strings; {fix}")
        answer = tuple(answer)
    return Problem(**{**row, "answer": answer})


def read_problems(path: Path, fix: str) -> list[Problem]:
    """All Problems of one JSONL cache file; each bad line fails with its number and ``fix``."""
    return [problem_from_row(row, f"{path} line {number}", fix) for number, row in iter_jsonl(path, fix)]
