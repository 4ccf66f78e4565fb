r"""Real training sets and benchmarks from the Hugging Face hub, cached as JSONL of Problems.

``task: arithmetic`` is the embedded generated task (``task.py``); every other ``task`` and
every ``eval_sets`` entry is a name of this registry. The paper trains on DeepScaleR and
reports AIME 2024/2025, MATH-500, AMC 2023, Minerva Math and OlympiadBench.

Pipeline (``make data PROFILE=... DATA=<name> EVAL=<names>`` once, on a connected machine):

    source   hub:   load_dataset(hub_id, config, split=hub_split)              <- the only part
             files: load_dataset("parquet" | "json", data_files=..., split="train")   tests swap
      -> rows -> Problem(id, question, prompt, answer, level) by the spec's field mapping
      -> each gold parsed once with math-verify (inside \boxed{}): a gold it cannot parse
         drops its problem and is counted, so it can never be scored 1
      -> <data_dir>/cache/<name>/<hub split>.jsonl, then manifest.json (written last = complete)

Later, offline, :func:`load_split` / :func:`load_benchmark` only read the cache; a missing
or stale cache fails at once with the ``make data`` command to run, never a download.

Choices and deviations:
1) Prompt = question + ``INSTRUCTION`` ("Let's think step by step and output the final
   answer within \boxed{}.", the DeepScaleR/verl prompt); the verifier reads the last
   ``\boxed{}``. ``prompt_template`` (config) can rephrase it per model.
2) Our splits of a training set: ``validation`` = ``n_validation`` problems held out of the
   hub's train split (seeded by ``data_seed``); ``test`` = the hub's test split, or another
   ``n_test`` held out when it has none; ``train`` = the rest, capped at ``n_train`` (0 = all).
   The paper validates on AIME 2024; set ``eval_sets`` for benchmark numbers.
3) Gold answers: ``plain`` field, ``gsm8k`` (text after ``####``, thousands commas
   dropped), ``boxed`` (last ``\boxed{}`` of a solution) or a list (OlympiadBench's
   ``final_answer``: joined with ", "); surrounding ``$`` removed, integral floats
   written as integers. Exact duplicates of a question are dropped (DAPO-Math-17k
   repeats each problem about 100 times).
4) Problem ids are ``<name>-<hub split>-<row index>`` of the source row, stable across
   drops; ``level`` is the data set's difficulty level where it has one (MATH), else 0.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from .io import atomic_write_json, atomic_write_text
from .task import Problem

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
REGISTRY_VERSION = 1  # bump when the conversion changes, so old caches read as stale
MANIFEST = "manifest.json"
EMBEDDED = "arithmetic"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set lives on the hub and how its rows become :class:`Problem` s.

    question / answer: field paths, dots for nesting (``prompt.0.content``).
    answer_format: ``plain``, ``gsm8k`` or ``boxed`` (see the module docstring, 3).
    splits: hub split of each of our source splits (``{"train": "train", "test": "test"}``).
    configs: hub configurations concatenated in order (MATH has one per subject).
    """

    name: str
    hub_id: str
    splits: Mapping[str, str]
    question: str
    answer: str
    answer_format: str = "plain"
    configs: tuple[str | None, ...] = (None,)
    level: str | None = None
    strip: tuple[str, ...] = ()  # regexes removed from the question (e.g. DAPO's instruction)
    kind: str = "train"  # "train" or "benchmark"
    note: str = ""

    def fingerprint(self) -> str:
        blob = json.dumps({**asdict(self), "instruction": INSTRUCTION, "version": REGISTRY_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_DAPO_STRIP = (
    r"^Solve the following math problem step by step\..*?answer to the problem\.\s*",
    r"\s*Remember to put your answer on its own line after \"Answer:\"\.\s*$",
)
MATH_SUBJECTS = (
    "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
    "number_theory", "prealgebra", "precalculus",
)

TRAINING_SETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("deepscaler", "agentica-org/DeepScaleR-Preview-Dataset", {"train": "train"}, "problem", "answer",
                    note="the paper's training set (~40k AIME/AMC/Omni-MATH/STILL problems)"),
        DatasetSpec("gsm8k", "openai/gsm8k", {"train": "train", "test": "test"}, "question", "answer",
                    answer_format="gsm8k", configs=("main",)),
        DatasetSpec("math", "EleutherAI/hendrycks_math", {"train": "train", "test": "test"}, "problem", "solution",
                    answer_format="boxed", configs=MATH_SUBJECTS, level="level",
                    note="Hendrycks MATH (hendrycks/competition_math is no longer downloadable)"),
        DatasetSpec("numina_tir", "AI-MO/NuminaMath-TIR", {"train": "train", "test": "test"}, "problem", "solution",
                    answer_format="boxed", note="the ms-swift port's data (4,000 problems there)"),
        DatasetSpec("dapo17k", "BytedTsinghua-SIA/DAPO-Math-17k", {"train": "train"}, "prompt.0.content",
                    "reward_model.ground_truth", strip=_DAPO_STRIP, note="the paper's alternative training set"),
    )
}
BENCHMARKS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("math500", "HuggingFaceH4/MATH-500", {"test": "test"}, "problem", "answer", level="level",
                    kind="benchmark"),
        DatasetSpec("aime24", "HuggingFaceH4/aime_2024", {"test": "train"}, "problem", "answer", kind="benchmark"),
        DatasetSpec("aime25", "yentinglin/aime_2025", {"test": "train"}, "problem", "answer", kind="benchmark"),
        DatasetSpec("amc23", "math-ai/amc23", {"test": "test"}, "question", "answer", kind="benchmark"),
        DatasetSpec("minerva", "math-ai/minervamath", {"test": "test"}, "question", "answer", kind="benchmark"),
        DatasetSpec("olympiadbench", "Hothan/OlympiadBench", {"test": "train"}, "question", "final_answer",
                    configs=("OE_TO_maths_en_COMP",), kind="benchmark",
                    note="open-ended, text-only, English maths competition subset (675 problems)"),
    )
}
# the paper's column names, for tables
BENCHMARK_TITLES = {"aime24": "AIME24", "aime25": "AIME25", "math500": "MATH500", "amc23": "AMC23",
                    "minerva": "Minerva", "olympiadbench": "O-Bench"}


def spec_of(name: str) -> DatasetSpec:
    """The registry entry called ``name`` (training set or benchmark)."""
    if name in TRAINING_SETS:
        return TRAINING_SETS[name]
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    raise ValueError(
        f"unknown data set {name!r}; training sets: {EMBEDDED}, {', '.join(TRAINING_SETS)}; "
        f"benchmarks: {', '.join(BENCHMARKS)}"
    )


def check_names(task: str, eval_sets) -> None:
    """Raise ``ValueError`` unless ``task`` is a training set and every ``eval_sets`` entry a benchmark."""
    if task != EMBEDDED and task not in TRAINING_SETS:
        raise ValueError(f"unknown task {task!r}; training sets: {EMBEDDED}, {', '.join(TRAINING_SETS)}")
    bad = [name for name in eval_sets if name not in BENCHMARKS]
    if bad:
        raise ValueError(f"unknown benchmark(s) {bad} in eval_sets; benchmarks: {', '.join(BENCHMARKS)}")


# ----------------------------------------------------------------------------- row -> Problem
def field_value(row: Mapping[str, Any], path: str) -> Any:
    """``row`` at a dotted path; integer parts index lists.

    >>> field_value({"prompt": [{"content": "hi"}]}, "prompt.0.content")
    'hi'
    """
    value: Any = row
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
    return value


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def gold_answer(value: Any, answer_format: str) -> str | None:
    """The final answer inside a data set's answer field, or None when there is none.

    >>> gold_answer("She pays 3 * 4 = 12.\\n#### 1,200", "gsm8k"), gold_answer(27.0, "plain")
    ('1200', '27')
    >>> gold_answer("so $x = \\\\boxed{\\\\frac{1}{2}}$.", "boxed"), gold_answer(["$3$", "$4$"], "plain")
    ('\\\\frac{1}{2}', '3, 4')
    """
    from .verifier import _last_boxed

    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [gold_answer(v, answer_format) for v in value]
        return ", ".join(p for p in parts if p) or None
    if answer_format == "gsm8k":
        text = str(value)
        if "####" not in text:
            return None
        return text.rsplit("####", 1)[1].strip().replace(",", "") or None
    if answer_format == "boxed":
        boxed = _last_boxed(str(value))
        return _plain(boxed) if boxed else None
    if answer_format != "plain":
        raise ValueError(f"unknown answer_format {answer_format!r}; valid: plain, gsm8k, boxed")
    return _plain(value) or None


def _level(value: Any) -> int:
    match = re.search(r"\d+", str(value)) if value is not None else None
    return int(match.group(0)) if match else 0


def rows_to_problems(spec: DatasetSpec, rows, hub_split: str) -> tuple[list[Problem], dict[str, int]]:
    """Problems of one source split, and counts of the rows dropped (by reason).

    Each kept gold was parsed by math-verify here; call from the main thread.
    """
    from .verifier import parse_gold

    problems: list[Problem] = []
    dropped = {"no_question": 0, "no_answer": 0, "unparsable_gold": 0, "duplicate": 0}
    seen: set[str] = set()
    for index, row in enumerate(rows):
        try:
            question = field_value(row, spec.question)
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(
                f"{spec.name}: row {index} has no field {spec.question!r} (columns: {sorted(row)}); "
                f"the hub's schema changed? fix data_registry.{spec.name}"
            ) from exc
        question = str(question or "")
        for pattern in spec.strip:
            question = re.sub(pattern, "", question, flags=re.DOTALL)
        question = question.strip()
        if not question:
            dropped["no_question"] += 1
            continue
        if question in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(question)
        answer = gold_answer(field_value(row, spec.answer), spec.answer_format)
        if not answer:
            dropped["no_answer"] += 1
            continue
        if parse_gold(answer) is None:
            dropped["unparsable_gold"] += 1
            continue
        problems.append(
            Problem(
                id=f"{spec.name}-{hub_split}-{index:05d}",
                question=question,
                prompt=f"{question}\n\n{INSTRUCTION}",
                answer=answer,
                level=_level(row.get(spec.level)) if spec.level else 0,
            )
        )
    return problems, dropped


# ----------------------------------------------------------------------------- sources
def hub_source(spec: DatasetSpec, hub_split: str) -> list[tuple[str, dict]]:
    """``load_dataset`` arguments for one split on the hub: one call per configuration."""
    return [(spec.hub_id, {"name": config, "split": hub_split}) for config in spec.configs]


def file_source(files: str | list[str]) -> list[tuple[str, dict]]:
    """``load_dataset`` arguments for local files in the hub's column layout (parquet or JSON lines)."""
    files = [files] if isinstance(files, (str, Path)) else list(files)
    builder = "parquet" if str(files[0]).endswith(".parquet") else "json"
    return [(builder, {"data_files": [str(f) for f in files], "split": "train"})]


def fetch_rows(source: list[tuple[str, dict]]) -> list[dict]:
    """Rows of a source: ``datasets.load_dataset`` per entry, concatenated in order."""
    from datasets import load_dataset

    rows: list[dict] = []
    for path, kwargs in source:
        rows.extend(load_dataset(path, **kwargs))
    return rows


# ----------------------------------------------------------------------------- cache
def cache_dir(cfg, name: str) -> Path:
    return Path(cfg.data_dir) / "cache" / name


def _make_hint(cfg, name: str) -> str:
    flag = "EVAL" if name in BENCHMARKS else "DATA"
    return (
        f"run `make data PROFILE={cfg.profile} {flag}={name}` (or `python -m rewards_as_labels data "
        f"--profile {cfg.profile} --{'eval_sets' if flag == 'EVAL' else 'task'} {name}`) on a machine that "
        f"reaches the Hugging Face hub, then copy {cache_dir(cfg, name)} here"
    )


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def prepare(cfg, name: str, data_files: Mapping[str, Any] | None = None, force: bool = False) -> Path:
    """Download (or read ``data_files``), convert and cache data set ``name``; return its folder.

    ``data_files`` maps each hub split (e.g. ``"train"``) to local files in the hub's column
    layout; it replaces the hub and nothing else. Idempotent: a complete cache with the
    spec's fingerprint is kept unless ``force``. Offline without ``data_files`` it fails at
    once, saying where to run it.
    """
    spec = spec_of(name)
    folder = cache_dir(cfg, name)
    manifest = _read_manifest(folder)
    if not force and manifest and manifest.get("fingerprint") == spec.fingerprint() and all(
        (folder / f"{s}.jsonl").is_file() for s in spec.splits.values()
    ):
        return folder
    if data_files is None:
        from .hub import offline_reason

        reason = offline_reason()
        if reason:
            raise ValueError(f"cannot download {name!r} ({spec.hub_id}): {reason}; {_make_hint(cfg, name)}")
    counts: dict[str, dict] = {}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten last
    for hub_split in dict.fromkeys(spec.splits.values()):
        if data_files is None:
            source = hub_source(spec, hub_split)
        else:
            if hub_split not in data_files:
                raise ValueError(f"data_files for {name!r} lack the hub split {hub_split!r}")
            source = file_source(data_files[hub_split])
        rows = fetch_rows(source)
        problems, dropped = rows_to_problems(spec, rows, hub_split)
        if not problems:
            raise ValueError(f"{name!r} split {hub_split!r}: no usable problem among {len(rows)} rows ({dropped})")
        atomic_write_text(folder / f"{hub_split}.jsonl", "".join(json.dumps(asdict(p)) + "\n" for p in problems))
        counts[hub_split] = {"rows": len(rows), "problems": len(problems), "dropped": dropped}
    atomic_write_json(folder / MANIFEST, {
        "name": name, "hub_id": spec.hub_id, "configs": list(spec.configs), "fingerprint": spec.fingerprint(),
        "source": "hub" if data_files is None else "files", "splits": counts,
    })
    return folder


def _read_cached(cfg, name: str, hub_split: str) -> list[Problem]:
    spec = spec_of(name)
    folder = cache_dir(cfg, name)
    manifest = _read_manifest(folder)
    path = folder / f"{hub_split}.jsonl"
    if manifest is None or not path.is_file():
        raise ValueError(f"data set {name!r} is not prepared (no {path}); {_make_hint(cfg, name)}")
    if manifest.get("fingerprint") != spec.fingerprint():
        raise ValueError(f"stale cache in {folder}: it was made by another registry version or spec; {_make_hint(cfg, name)}")
    return [Problem(**json.loads(line)) for line in path.read_text().splitlines() if line]


def load_split(cfg, split: str) -> list[Problem]:
    """Our ``train`` / ``validation`` / ``test`` split of the training set ``cfg.task`` (docstring, 2)."""
    spec = spec_of(cfg.task)
    if spec.kind != "train":
        raise ValueError(f"task {cfg.task!r} is a benchmark; put it in eval_sets, not task")
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split {split!r} does not exist for {cfg.task!r}; splits: train, validation, test")
    pool = _read_cached(cfg, cfg.task, spec.splits["train"])
    random.Random(f"{cfg.data_seed}:{cfg.task}").shuffle(pool)
    n_val = min(int(cfg.n_validation), len(pool) // 10)  # never more than a tenth of the data
    validation, rest = pool[:n_val], pool[n_val:]
    if "test" in spec.splits:
        test = _read_cached(cfg, cfg.task, spec.splits["test"])
    else:
        n_test = min(int(cfg.n_test), len(rest) // 10)
        test, rest = rest[:n_test], rest[n_test:]
    train = rest[: cfg.n_train] if cfg.n_train > 0 else rest
    return {"train": train, "validation": validation, "test": test}[split]


def load_benchmark(cfg, name: str) -> list[Problem]:
    """All problems of benchmark ``name`` from the cache."""
    spec = spec_of(name)
    if spec.kind != "benchmark":
        raise ValueError(f"{name!r} is a training set, not a benchmark; benchmarks: {', '.join(BENCHMARKS)}")
    return _read_cached(cfg, name, spec.splits["test"])


def evaluation_sets(cfg) -> dict[str, list[Problem]]:
    """What ``evaluate`` scores: each of ``cfg.eval_sets``, else the task's own ``test`` split."""
    if cfg.eval_sets:
        return {name: load_benchmark(cfg, name) for name in cfg.eval_sets}
    from .task import load_split as task_load_split

    return {"test": task_load_split(cfg, "test")}


def cmd_data(cfg) -> list[Path]:
    """CLI entry point of ``make data``: the task's data (generated or cached) plus every eval set."""
    from .task import write_splits

    folders = []
    if cfg.task == EMBEDDED:
        folders.append(write_splits(cfg))
    else:
        folders.append(prepare(cfg, cfg.task))
    folders += [prepare(cfg, name) for name in cfg.eval_sets]
    for folder in folders:
        manifest = _read_manifest(folder) or {}
        sizes = manifest.get("sizes") or {k: v["problems"] for k, v in manifest.get("splits", {}).items()}
        dropped = {k: v["dropped"] for k, v in manifest.get("splits", {}).items() if any(v["dropped"].values())}
        print(f"data: {folder} " + " ".join(f"{k}={v}" for k, v in sizes.items())
              + (f" dropped={dropped}" if dropped else ""))
    return folders
