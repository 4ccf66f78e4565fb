"""All data behind one entry point: ``Problem``, ``load_split``, ``evaluation_sets``, ``cmd_data``.

A data set name (config ``task`` or an ``eval_sets`` entry) is one of three sources, and
every source ends in the same cache format (``problems.py``):

    arithmetic   the embedded task, generated        arithmetic.py -> <data_dir>/arithmetic/
    a name       of the registry, from the hub once   data_registry.py (spec) --+
    a path       your .parquet/.jsonl/.json/.csv      local_files.py (spec)   --+
                 file, or a folder of them              -> conversion.py (rows -> Problems,
                                                           each gold checked once)
                                                        -> <data_dir>/cache/<name>/<split>.jsonl
                                                           + manifest.json (written last)

``make data`` (:func:`cmd_data`) prepares every source of the config and prints, per
source, the problems kept and dropped, with examples. Every later stage only reads
(:func:`load_split`, :func:`load_benchmark`, :func:`evaluation_sets`), offline and at
once: a missing, stale, hand-written or damaged cache fails with what is wrong and the
``make data`` command to run, never with a download.

Our splits of a training set (a registry name or your file): ``validation`` =
``n_validation`` problems held out of the source's train split (seeded by ``data_seed``,
at most a tenth of it); ``test`` = the source's test split, or another ``n_test`` held out
(at most a tenth of the rest) when it has none, as for your file; ``train`` = the rest,
capped at ``n_train`` (0 = all). The paper validates on AIME 2024: set ``eval_sets`` for
benchmark numbers.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import arithmetic, local_files
from .conversion import rows_to_problems
from .data_registry import BENCHMARKS, EMBEDDED, NAMES_HINT, TRAINING_SETS, DatasetSpec, spec_of
from .io import atomic_write_json
from .problems import MANIFEST, Problem, read_manifest, read_problems, write_problems

OUR_SPLITS = ("train", "validation", "test")
SHOWN = 3  # dropped problems that make data prints per reason (the manifest lists more)


# ----------------------------------------------------------------------------- names
def is_file_source(name: str) -> bool:
    """True when ``name`` is a path to your files, not a name of the registry."""
    return (
        name != EMBEDDED and name not in TRAINING_SETS and name not in BENCHMARKS and local_files.looks_like_path(name)
    )


def data_name(name: str) -> str:
    """What caches, runs and tables call a data set: a file's stem, else the name itself.

    >>> data_name("benchmarks/aime24.parquet"), data_name("aime24")
    ('aime24', 'aime24')
    """
    return local_files.stem(name) if is_file_source(name) else name


def _role(kind: str) -> str:
    """The config field that names a data set of this kind, for messages about a user's file."""
    return "task" if kind == "train" else "eval_sets entry"


def check_names(task: str, eval_sets, data_fields: Mapping | None = None) -> None:
    """Raise ``ValueError`` unless the config's data sets exist and can be told apart.

    ``task``: ``arithmetic``, a registry training set or a path; each ``eval_sets`` entry:
    a registry benchmark or a path; no two of them share a :func:`data_name` (they would
    share a cache folder and a table column); ``data_fields``: empty or a valid mapping.
    """
    if task != EMBEDDED and task not in TRAINING_SETS:
        if not is_file_source(task):
            hint = " (it is a benchmark: put it in eval_sets)" if task in BENCHMARKS else ""
            raise ValueError(f"unknown task {task!r}; {NAMES_HINT}{hint}")
        local_files.files_of(task, _role("train"))
    bad = [name for name in eval_sets if name not in BENCHMARKS and not is_file_source(name)]
    if bad:
        raise ValueError(
            f"unknown benchmark(s) {bad} in eval_sets; benchmarks: {', '.join(BENCHMARKS)}, "
            "or a path to your own .parquet, .jsonl, .json or .csv file, or a folder of them"
        )
    for name in eval_sets:
        if is_file_source(name):
            local_files.files_of(name, _role("benchmark"))
    names = [data_name(n) for n in ([] if task == EMBEDDED else [task]) + list(eval_sets)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"task and eval_sets name the data set(s) {repeated} more than once (a file counts by its stem): "
            "each is cached and reported under its name, so rename a file or drop the repeat"
        )
    local_files.check_data_fields(data_fields)


def _kind(cfg, name: str) -> str:
    """``train`` or ``benchmark``: a path is the training set when it is ``cfg.task``."""
    if is_file_source(name):
        return "train" if name == cfg.task else "benchmark"
    return spec_of(name).kind


def cache_dir(cfg, name: str) -> Path:
    """Cache folder of data set ``name`` (a registry name or a path)."""
    return Path(cfg.data_dir) / "cache" / data_name(name)


def _make_hint(cfg, name: str, kind: str) -> str:
    flag, option = ("EVAL", "eval_sets") if kind == "benchmark" else ("DATA", "task")
    command = (
        f"run `make data PROFILE={cfg.profile} {flag}={name}` "
        f"(or `python -m rewards_as_labels data --profile {cfg.profile} --{option} {name}`)"
    )
    if is_file_source(name):
        return command
    return f"{command} on a machine that reaches the Hugging Face hub, then copy {cache_dir(cfg, name)} here"


# ----------------------------------------------------------------------------- sources
def hub_source(spec: DatasetSpec, hub_split: str) -> list[tuple[str, dict]]:
    """``load_dataset`` arguments for one split on the hub: one call per configuration."""
    return [(spec.hub_id, {"name": config, "split": hub_split}) for config in spec.configs]


def file_source(files: str | list[str]) -> list[tuple[str, dict]]:
    """``load_dataset`` arguments for local files in a registry entry's hub layout (parquet or JSON lines)."""
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
def _write_cache(folder: Path, spec: DatasetSpec, rows: Mapping[str, list], fix: str, manifest: dict) -> None:
    """Convert each split's rows, write them, then the manifest with each split's report."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until rewritten last
    reports = {}
    for split, split_rows in rows.items():
        problems, report = rows_to_problems(spec, split_rows, split, fix)
        if not problems:
            raise ValueError(
                f"{spec.name!r} split {split!r}: no usable problem among {len(split_rows)} rows "
                f"(dropped: {report['dropped']}); {fix}"
            )
        write_problems(folder / f"{split}.jsonl", problems)
        reports[split] = report
    atomic_write_json(folder / MANIFEST, {**manifest, "splits": reports})


def _is_current(folder: Path, fingerprint: str, splits) -> bool:
    manifest = read_manifest(folder)
    return (
        bool(manifest)
        and manifest.get("fingerprint") == fingerprint
        and all((folder / f"{s}.jsonl").is_file() for s in splits)
    )


def _prepare_files(cfg, path: str, kind: str, force: bool) -> Path:
    role = _role(kind)
    files = local_files.files_of(path, role)
    hashes = local_files.file_hashes(files)
    fingerprint = local_files.fingerprint(hashes, cfg.data_fields, kind)
    folder, split = cache_dir(cfg, path), "train" if kind == "train" else "test"
    if not force and _is_current(folder, fingerprint, [split]):
        return folder
    rows: list[dict] = []
    layouts: dict[str, tuple[DatasetSpec, str]] = {}
    for f in files:
        file_rows, columns = local_files.read_file(f)
        layouts[f.name] = local_files.layout_spec(data_name(path), columns, cfg.data_fields, kind, f"{role} {str(f)!r}")
        rows += file_rows
    spec, layout = next(iter(layouts.values()))
    if any(other != (spec, layout) for other in layouts.values()):
        found = {name: layout for name, (_, layout) in layouts.items()}
        raise ValueError(
            f"{role} {path!r}: its files have different layouts {found}; give them one layout or separate entries"
        )
    fix = f"check {path} (read in the {layout} layout) or map its columns with data_fields in the config"
    _write_cache(
        folder,
        spec,
        {split: rows},
        fix,
        {
            "name": data_name(path),
            "source": "files",
            "path": str(path),
            "layout": layout,
            "kind": kind,
            "files": hashes,
            "data_fields": cfg.data_fields,
            "fingerprint": fingerprint,
        },
    )
    return folder


def prepare(cfg, name: str, data_files: Mapping[str, Any] | None = None, force: bool = False) -> Path:
    """Convert and cache data set ``name`` (a registry name or a path); return its folder.

    A registry name is downloaded; ``data_files`` maps each of its hub splits (e.g.
    ``"train"``) to local files in the hub's column layout, and replaces the hub and
    nothing else. A path is read from disk in its own layout (``local_files.py``).
    Idempotent: a complete cache with the current fingerprint is kept unless ``force``.
    Offline, a registry name without ``data_files`` fails at once, saying where to run it.
    """
    if is_file_source(name):
        if data_files is not None:
            raise ValueError(f"{name!r} is a path, read as it is; data_files replaces the hub for registry names only")
        return _prepare_files(cfg, name, _kind(cfg, name), force)
    spec = spec_of(name)
    folder = cache_dir(cfg, name)
    hub_splits = list(dict.fromkeys(spec.splits.values()))
    if not force and _is_current(folder, spec.fingerprint(), hub_splits):
        return folder
    if data_files is None:
        from .hub import offline_reason

        reason = offline_reason()
        if reason:
            raise ValueError(f"cannot download {name!r} ({spec.hub_id}): {reason}; {_make_hint(cfg, name, spec.kind)}")
    elif missing := [s for s in hub_splits if s not in data_files]:
        raise ValueError(f"data_files for {name!r} lack the hub split(s) {missing}")
    rows = {
        s: fetch_rows(hub_source(spec, s) if data_files is None else file_source(data_files[s])) for s in hub_splits
    }
    _write_cache(
        folder,
        spec,
        rows,
        f"the hub's schema changed? fix data_registry.{name}",
        {
            "name": name,
            "hub_id": spec.hub_id,
            "configs": list(spec.configs),
            "fingerprint": spec.fingerprint(),
            "source": "hub" if data_files is None else "files",
        },
    )
    return folder


def _stale_reason(cfg, manifest: dict, hashes: dict | None, kind: str) -> str:
    """Why a cache's fingerprint is not the expected one, in the user's terms."""
    if hashes is None:
        return "it was made by another registry version or spec, or from a file of the same name"
    old = manifest.get("files") or {}
    if old != hashes:
        changed = sorted(n for n in set(old) | set(hashes) if old.get(n) != hashes.get(n))
        return f"{', '.join(changed)} changed since `make data` (the content's sha256 differs)"
    if manifest.get("data_fields") != cfg.data_fields:
        return f"data_fields changed since `make data` ({manifest.get('data_fields')} then, {cfg.data_fields} now)"
    if manifest.get("kind") != kind:
        return f"it was made as a {manifest.get('kind')} set and is now used as a {kind} set"
    return "it was made by another version of this package or from a registry data set of the same name"


def _read_cached(cfg, name: str, split: str, kind: str) -> list[Problem]:
    folder = cache_dir(cfg, name)
    hint = _make_hint(cfg, name, kind)
    manifest = read_manifest(folder)
    path = folder / f"{split}.jsonl"
    if manifest is None or not path.is_file():
        raise ValueError(f"data set {name!r} is not prepared (no {path}); {hint}")
    if "fingerprint" not in manifest:
        raise ValueError(
            f"{folder / MANIFEST} has no 'fingerprint' field, so nothing says what the cache was made "
            f"from (hand-written, or another tool's cache?); {hint} to rebuild it"
        )
    hashes = None
    if is_file_source(name):
        hashes = local_files.file_hashes(local_files.files_of(name, _role(kind)))
        expected = local_files.fingerprint(hashes, cfg.data_fields, kind)
    else:
        expected = spec_of(name).fingerprint()
    if manifest["fingerprint"] != expected:
        raise ValueError(f"stale cache in {folder}: {_stale_reason(cfg, manifest, hashes, kind)}; {hint}")
    return read_problems(path, f"the cache is damaged or was not written by `make data`; {hint} to rebuild it")


# ----------------------------------------------------------------------------- loading
def load_split(cfg, split: str) -> list[Problem]:
    """Split ``split`` of the training set ``cfg.task`` (generated, registry or your file).

    ``arithmetic`` has ``sft, train, validation, test``; any other training set has our
    ``train, validation, test`` (module docstring).
    """
    if cfg.task == EMBEDDED:
        return arithmetic.read_split(cfg, split)
    if split not in OUR_SPLITS:
        raise ValueError(f"split {split!r} does not exist for {cfg.task!r}; splits: {', '.join(OUR_SPLITS)}")
    if is_file_source(cfg.task):
        pool, test = _read_cached(cfg, cfg.task, "train", "train"), None
    else:
        spec = spec_of(cfg.task)
        if spec.kind != "train":
            raise ValueError(f"task {cfg.task!r} is a benchmark; put it in eval_sets, not task")
        pool = _read_cached(cfg, cfg.task, spec.splits["train"], "train")
        test = _read_cached(cfg, cfg.task, spec.splits["test"], "train") if "test" in spec.splits else None
    random.Random(f"{cfg.data_seed}:{data_name(cfg.task)}").shuffle(pool)
    n_val = min(int(cfg.n_validation), len(pool) // 10)  # never more than a tenth of the data
    validation, rest = pool[:n_val], pool[n_val:]
    if test is None:
        n_test = min(int(cfg.n_test), len(rest) // 10)
        test, rest = rest[:n_test], rest[n_test:]
    train = rest[: cfg.n_train] if cfg.n_train > 0 else rest
    return {"train": train, "validation": validation, "test": test}[split]


def load_benchmark(cfg, name: str) -> list[Problem]:
    """All problems of benchmark ``name`` (a registry name or a path) from the cache."""
    if is_file_source(name):
        return _read_cached(cfg, name, "test", "benchmark")
    spec = spec_of(name)
    if spec.kind != "benchmark":
        raise ValueError(f"{name!r} is a training set, not a benchmark; benchmarks: {', '.join(BENCHMARKS)}")
    return _read_cached(cfg, name, spec.splits["test"], "benchmark")


def evaluation_sets(cfg) -> dict[str, list[Problem]]:
    """What ``evaluate`` scores, by :func:`data_name`: each of ``cfg.eval_sets``, else the task's ``test`` split."""
    if cfg.eval_sets:
        return {data_name(name): load_benchmark(cfg, name) for name in cfg.eval_sets}
    return {"test": load_split(cfg, "test")}


# ----------------------------------------------------------------------------- make data
def describe(name: str, folder: Path, manifest: Mapping) -> list[str]:
    """``make data``'s lines for one cached source: per split, problems kept and dropped, with examples."""
    where = manifest.get("path") or manifest.get("hub_id") or name
    layout = f", {manifest['layout']} layout" if manifest.get("layout") else ""
    splits = manifest.get("splits", {})
    lines = []
    for split, report in splits.items():
        dropped = {reason: n for reason, n in report["dropped"].items() if n}
        alternatives = report["dropped_alternatives"]
        label = data_name(name) + (f" {split}" if len(splits) > 1 else "")
        lines.append(
            f"data: {label}: {report['kept']} kept, {sum(dropped.values())} dropped"
            + (f" ({', '.join(f'{r} {n}' for r, n in dropped.items())})" if dropped else "")
            + (f", {len(alternatives)} alternative gold(s) dropped" if alternatives else "")
            + f"  [{where}{layout} -> {folder}]"
        )
        for reason in dropped:
            for d in [d for d in report["dropped_problems"] if d["reason"] == reason][:SHOWN]:
                lines.append(f"  dropped {d['id']} ({reason}): gold {d['gold']!r}: {d['why']}")
        for a in alternatives[:SHOWN]:
            lines.append(f"  dropped an alternative of {a['id']}: gold {a['gold']!r}: {a['why']}")
        if report.get("other_messages"):
            lines.append(
                f"  prompts with other chat messages (e.g. a system prompt) not kept: {report['other_messages']}; "
                "set system_prompt in the config to send one"
            )
        if dropped or alternatives:
            lines.append(f"  (listed in {folder / MANIFEST})")
    return lines


def cmd_data(cfg) -> list[Path]:
    """CLI entry point of ``make data``: the task's data (generated or cached) plus every eval set.

    Prints one line per source (the generated task: its split sizes) as it is ready.
    """
    folders = []
    if cfg.task == EMBEDDED:
        folder = arithmetic.write_splits(cfg)
        sizes = read_manifest(folder)["sizes"]
        print(f"data: {folder} " + " ".join(f"{k}={v}" for k, v in sizes.items()))
        folders.append(folder)
    for name in ([] if cfg.task == EMBEDDED else [cfg.task]) + list(cfg.eval_sets):
        folder = prepare(cfg, name)
        print("\n".join(describe(name, folder, read_manifest(folder) or {})))
        folders.append(folder)
    return folders
