r"""Your own data files: a path wherever a data set name is accepted (``task``, ``eval_sets``).

A path names a ``.parquet``, ``.jsonl``, ``.json`` or ``.csv`` file, or a folder of them
(its files of those kinds, in name order, concatenated), relative to the working folder
or absolute. Each file is read with ``datasets.load_dataset("parquet" | "json" | "csv",
data_files=...)``, and its layout is recognised from its columns, first match wins:

    data_fields  the config's mapping, when every field it names is a column, e.g.
                 ``data_fields: {question: query, answer: target}`` (keys: ``FIELD_KEYS``)
    verl         ``prompt`` (chat messages, instruction included) and ``reward_model``
                 with ``ground_truth`` (a string, a number, or a list of accepted
                 alternatives); ``data_source`` and ``extra_info`` are not needed.
                 The prompt is used as given: the file's instruction, not ours
    flat         ``problem`` or ``question``, with ``answer`` or else a ``solution``
                 whose last ``\boxed{}`` is the answer; prompt = question + our instruction

The data set is named after the file's stem (``benchmarks/aime24.parquet`` -> ``aime24``,
a folder after its own name): its cache is ``<data_dir>/cache/<stem>/``, its column in
the benchmark table ``aime24`` (titled AIME24, as the registry's). The cache is
fingerprinted with the sha256 of every file's bytes, so an edited file is converted again
by ``make data`` and refused by the loaders until then -- even when its modification
time was kept, which is all that ``datasets``' own cache looks at (so we bypass it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .conversion import ANSWER_FORMATS, GOLD_LISTS
from .data_registry import INSTRUCTION, REGISTRY_VERSION, DatasetSpec

SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
FIELD_KEYS = {
    "question": "field of the question (required)",
    "answer": "field of the gold answer (required)",
    "prompt": "field of a prompt to use as given (chat messages or text); default question + our instruction",
    "answer_format": "plain (default), boxed (last \\boxed{} of a solution) or gsm8k (after ####)",
    "gold_list": "what a list of answers means: alternatives (default) or parts of one answer",
    "level": "field of a difficulty level (its first integer); default 0",
}
LAYOUTS = (
    "verl: prompt (chat messages) + reward_model.ground_truth; "
    "flat: problem or question, with answer or with a solution holding \\boxed{}; "
    "or set data_fields in the config, e.g. --data_fields '{question: <column>, answer: <column>}'"
)


def looks_like_path(name: str) -> bool:
    """True when ``name`` can only be a path: a data file suffix, a separator, or an existing folder.

    >>> looks_like_path("benchmarks/aime24.parquet"), looks_like_path("aime24.jsonl"), looks_like_path("aime24")
    (True, True, False)
    """
    return Path(name).suffix.lower() in SUFFIXES or "/" in name or os.sep in name or Path(name).is_dir()


def stem(path: str) -> str:
    """The data set name of a path: the file's stem, or the folder's name.

    >>> stem("benchmarks/aime24.parquet"), stem("/data/math500/")
    ('aime24', 'math500')
    """
    p = Path(path)
    return p.stem if p.suffix.lower() in SUFFIXES else p.name


def files_of(path: str, role: str) -> list[Path]:
    """The data files a path names, or a ``ValueError`` that says what is wrong with it."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{role} {path!r}: a {p.suffix or 'suffix-less'} file; use one of {', '.join(SUFFIXES)}")
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
        if not files:
            found = sorted(f.name for f in p.iterdir())[:10]
            raise ValueError(f"{role} {path!r}: the folder holds no {', '.join(SUFFIXES)} file (found: {found})")
        return files
    raise ValueError(
        f"{role} {path!r}: no such file or folder (relative paths start at the working folder {Path.cwd()})"
    )


def check_data_fields(data_fields) -> None:
    """Raise ``ValueError`` unless ``data_fields`` is empty or a valid mapping (``FIELD_KEYS``)."""
    if not data_fields:
        return
    keys = "; ".join(f"{k}: {v}" for k, v in FIELD_KEYS.items())
    if not isinstance(data_fields, dict) or not all(isinstance(v, str) and v for v in data_fields.values()):
        raise ValueError(f"data_fields must map keys to field names (strings), got {data_fields!r}; keys: {keys}")
    unknown = sorted(set(data_fields) - set(FIELD_KEYS))
    missing = [k for k in ("question", "answer") if k not in data_fields]
    if unknown or missing:
        raise ValueError(f"data_fields {data_fields!r}: unknown keys {unknown}, missing keys {missing}; keys: {keys}")
    for key, valid in (("answer_format", ANSWER_FORMATS), ("gold_list", GOLD_LISTS)):
        if data_fields.get(key, valid[0]) not in valid:
            raise ValueError(f"data_fields {key}={data_fields[key]!r}; valid: {', '.join(valid)}")


def file_hashes(files: list[Path]) -> dict[str, str]:
    """sha256 of each file's bytes, by file name."""
    hashes = {}
    for f in files:
        digest = hashlib.sha256()
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        hashes[f.name] = digest.hexdigest()
    return hashes


def fingerprint(hashes: dict[str, str], data_fields: dict, kind: str) -> str:
    """What a cache of these files depends on: their bytes, the mapping, the role, our conversion."""
    blob = {
        "files": hashes,
        "data_fields": data_fields,
        "kind": kind,
        "instruction": INSTRUCTION,
        "version": REGISTRY_VERSION,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _fields_present(columns: list[str], *paths: str | None) -> bool:
    return all(p.split(".")[0] in columns for p in paths if p)


def layout_spec(name: str, columns: list[str], data_fields: dict, kind: str, where: str) -> tuple[DatasetSpec, str]:
    """The spec that reads a file with these columns, and the layout's name (module docstring)."""
    split = "train" if kind == "train" else "test"
    base = {"name": name, "hub_id": "", "splits": {split: split}, "kind": kind}
    mapped = [data_fields.get(k) for k in ("question", "answer", "prompt", "level")]
    if data_fields and _fields_present(columns, *mapped):
        spec = DatasetSpec(
            **base,
            question=data_fields["question"],
            answer=data_fields["answer"],
            answer_format=data_fields.get("answer_format", "plain"),
            gold_list=data_fields.get("gold_list", "alternatives"),
            prompt=data_fields.get("prompt"),
            level=data_fields.get("level"),
        )
        return spec, "data_fields"
    if "prompt" in columns and "reward_model" in columns:
        return DatasetSpec(**base, question="prompt", answer="reward_model.ground_truth", prompt="prompt"), "verl"
    question = next((c for c in ("problem", "question") if c in columns), None)
    answer = next((c for c in ("answer", "solution") if c in columns), None)
    if question and answer:
        answer_format = "plain" if answer == "answer" else "boxed"
        return DatasetSpec(
            **base, question=question, answer=answer, answer_format=answer_format
        ), f"flat {question}/{answer}"
    mapping = f"; data_fields {data_fields} name fields it lacks" if data_fields else ""
    raise ValueError(f"{where}: no supported layout among its columns {columns}{mapping}. Layouts: {LAYOUTS}")


def read_file(path: Path) -> tuple[list[dict], list[str]]:
    """All rows of one data file and its columns, read afresh (``datasets``' cache trusts modification times)."""
    from datasets import load_dataset

    builder = SUFFIXES[path.suffix.lower()]
    try:
        rows = load_dataset(builder, data_files=[str(path)], split="train", download_mode="force_redownload")
    except Exception as exc:  # datasets raises many kinds; the user needs the file's name and the cause
        raise ValueError(f"{path}: datasets cannot read it as {builder} ({type(exc).__name__}: {exc})") from exc
    return list(rows), list(rows.column_names)
