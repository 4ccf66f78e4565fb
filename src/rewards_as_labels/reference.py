"""Reference results kept in the repository, and how a fresh run differs from them.

``make publish`` copies a profile's small summary tables (the ones below, as far as the run folder
has them) from ``runs/<profile>/tables/`` to ``results/<profile>/`` and writes ``provenance.json``
beside them: the commit (and whether the tree had uncommitted changes), the machine, the package
versions and the command. Those files are committed; every number the README quotes comes from them,
and the README's tables are copied from them between markers (``<!-- results/tiny/comparison.md -->``
... ``<!-- end results -->``) by ``python -m rewards_as_labels.reference readme --write``; a test
checks that the copies match.

``make compare`` answers "does my rerun agree with the reference?": per method, the fresh run's test
pass@1 minus the reference's, paired by seed and test problem, with the hierarchical interval of
:func:`~rewards_as_labels.results.paired_bootstrap`. On one machine a rerun repeats the reference bit
for bit; across machines floating-point kernels differ and a long trajectory amplifies it, so an
interval that excludes 0 says the rerun moved, not that either is wrong.

Finished runs travel too, as their records without weights (:data:`RECORD`: metrics, final.json,
test.json, ...; ~150 KB a SmolLM2 run): ``make publish`` writes each finished, test-evaluated run's record to
``results/<profile>/runs/<run>/``, and ``make restore`` brings the records back into ``runs/<profile>/``
where that run's folder is absent, after checking that the run was trained with this profile. A set of
runs too long for one sitting (or one machine) is so completed over several: each publishes what it
finished, the next restores it and trains only the rest; ``make evaluate`` reads a restored run's
test.json, the figures and the ledger its metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .config import load_config, parse_overrides
from .io import atomic_directory, atomic_write_json, atomic_write_text, package_versions
from .results import paired_bootstrap, run_folders, verdict
from .run_names import parse_run

RESULTS = Path("results")
# the tables a profile's runs write that are small enough to keep (globs, under runs/<profile>/tables/)
TABLES = (
    "comparison.csv",
    "comparison.md",
    "evaluation.csv",
    "per_problem.csv",
    "benchmarks_pass@1.csv",
    "stability.csv",
    "mechanism.csv",
    "protocols-*.csv",
    "protocols-*.md",
    "engines.csv",
    "engines.md",
    "headroom.csv",
    "headroom.md",
    "dynamics.csv",
    "derivation_checks.csv",
)  # the last two: what the claims ledger reads besides
# a finished run's record: everything in its folder but the weights (checkpoints); test.json is its test
# evaluation (make's per-run target), weight_samples.jsonl what notebook 07 reads
RECORD = ("config.json", "versions.json", "metrics.jsonl", "final.json", "test.json", "weight_samples.jsonl")
# Config fields that say where a run ran and how it was scheduled, not what it learned: a published run
# restores into a profile that agrees with its config.json on every other field
PLACEMENT_FIELDS = frozenset(
    {
        "out",
        "run_root",
        "data_dir",
        "check_memory",
        "concurrent_jobs",
        "num_threads",
        "checkpoint_every",
        "keep_checkpoints",
        "device",
        "vllm_kv_cache_gb",
        "gpu_memory_utilization",
    }
)
MARKER = re.compile(r"<!-- (results/[^ ]+) -->\n(.*?)<!-- end results -->", re.S)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(command: str = "") -> dict:
    """Where results come from: commit (and uncommitted changes), machine, package versions, command, date."""
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": {
            "system": platform.system(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": package_versions(),
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def publish(run_dir: str | Path, out_dir: str | Path, command: str = "") -> list[Path]:
    """Copy the summary tables of ``run_dir/tables`` to ``out_dir`` (each atomically) with ``provenance.json``,
    and each finished run's record to ``out_dir/runs/<run>/`` (:func:`archive_runs`).

    Raises ``FileNotFoundError`` naming ``make reproduce`` when the run folder has no table to publish.
    A table that ``out_dir`` holds but the run did not write is left as it is (a sweep published earlier),
    and so is its provenance: ``provenance.json`` describes this publish at its top level and keeps, under
    ``by_table``, the commit, date, command and run folder of every table ``out_dir`` holds, so a study
    published from another run folder does not erase where the profile's own tables came from. A run
    record's provenance is kept under ``by_table`` as ``runs/<run>``, updated only when its files change.
    """
    tables = Path(run_dir) / "tables"
    found = sorted({p for pattern in TABLES for p in tables.glob(pattern)})
    if not found:
        raise FileNotFoundError(
            f"{tables} holds none of {', '.join(TABLES)}; run `make reproduce` (or make sweep/study) first"
        )
    out_dir = Path(out_dir)
    origin = provenance(command)  # before writing: the tables this publish rewrites are not "uncommitted changes"
    written = [atomic_write_text(out_dir / p.name, p.read_text()) for p in found]
    archived = archive_runs(run_dir, out_dir)
    runs = sorted({f"runs/{p.parent.name}" for p in archived})
    record = {**origin, "run": str(run_dir), "tables": [p.name for p in found], "runs": runs}
    by_table = _earlier_sources(out_dir / "provenance.json")
    source = {k: record[k] for k in ("commit", "uncommitted_changes", "date", "command", "run")}
    by_table.update({name: source for name in [p.name for p in found] + runs})
    record["by_table"] = dict(sorted(by_table.items()))
    written.append(atomic_write_json(out_dir / "provenance.json", record))
    return written + archived


def archive_runs(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Copy the :data:`RECORD` of every finished run of ``run_dir`` that has its test evaluation
    (``final.json`` and ``test.json``) to ``out_dir/runs/<run>/``, each file atomically; runs still
    training, and sweep runs (under ``sweep/``), are left out. A file the archive already holds as it is
    is not rewritten (a run restored from it keeps its first provenance). Returns the files written."""
    written = []
    for folder in run_folders(run_dir):
        if not ((folder / "final.json").exists() and (folder / "test.json").exists()):
            continue
        dest = Path(out_dir) / "runs" / folder.name
        for name in RECORD:
            text = (folder / name).read_text() if (folder / name).exists() else None
            if text is not None and not ((dest / name).exists() and (dest / name).read_text() == text):
                written.append(atomic_write_text(dest / name, text))
    return written


def restore(ref_dir: str | Path, run_dir: str | Path, profile: str, overrides: dict | None = None) -> list[Path]:
    """Bring the published runs of ``ref_dir/runs/`` back into ``run_dir`` (each run folder atomically),
    so that ``make`` finds them finished and trains only the runs still missing.

    A run whose folder ``run_dir`` already has is kept as it is (printed): nothing written is replaced.
    Every record is checked first against the config this profile (with ``overrides``) would train that
    run with; a field other than :data:`PLACEMENT_FIELDS` that differs raises ``ValueError`` naming the
    run, the field and both values, and nothing is restored: numbers from another protocol would be
    compared as this one's. Raises ``FileNotFoundError`` when ``ref_dir`` holds no published run."""
    runs = Path(ref_dir) / "runs"
    records = sorted(p for p in runs.glob("*") if (p / "final.json").exists()) if runs.is_dir() else []
    if not records:
        raise FileNotFoundError(f"{runs} holds no published run; make publish writes them from finished runs")
    todo, problems = [], []
    for record in records:
        dest = Path(run_dir) / record.name
        if dest.exists():
            print(f"kept {dest}: it exists (remove it to bring back the published record)")
            continue
        run = parse_run(record.name)
        want = load_config(profile=profile, overrides={**(overrides or {}), "method": run.method, "seed": run.seed})
        want = json.loads(json.dumps(want.to_dict()))  # the types config.json holds
        got = json.loads((record / "config.json").read_text())
        problems += [
            f"{record.name}: {key}={got.get(key)!r} where profile {profile} has {want.get(key)!r}"
            for key in sorted(set(want) | set(got))
            if key not in PLACEMENT_FIELDS and want.get(key) != got.get(key)
        ]
        todo.append((record, dest))
    if problems:
        raise ValueError(
            "published runs trained under another config, restored none: "
            + "; ".join(problems)
            + ". Rerun with the profile they were trained with, or retrain them (make reproduce)"
        )
    written = []
    for record, dest in todo:
        with atomic_directory(dest) as tmp:
            for name in RECORD:
                if (record / name).exists():
                    (tmp / name).write_text((record / name).read_text())
        written.append(dest)
    return written


def _earlier_sources(path: Path) -> dict:
    """``by_table`` of an earlier ``provenance.json`` (one written before ``by_table`` existed: its own
    tables from its top-level record); empty when there is none."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if "by_table" in old:
        return dict(old["by_table"])
    source = {k: old.get(k) for k in ("commit", "uncommitted_changes", "date", "command", "run")}
    return {name: source for name in old.get("tables", [])}


def compare(run_dir: str | Path, ref_dir: str | Path, **bootstrap) -> pd.DataFrame:
    """Per method (base included): the fresh run's test pass@1, the reference's, and their difference
    with its paired hierarchical interval (seeds the two share, then problems) and verdict.
    Raises ``FileNotFoundError`` naming the missing ``per_problem.csv``."""
    frames = {}
    for name, folder in (("fresh", Path(run_dir) / "tables"), ("reference", Path(ref_dir))):
        path = folder / "per_problem.csv"
        if not path.exists():
            fix = "make evaluate" if name == "fresh" else "make publish on the machine that made the reference"
            raise FileNotFoundError(f"{path} is missing ({name} results); run `{fix}` first")
        df = pd.read_csv(path, dtype={"seed": str, "benchmark": str, "problem_id": str})
        frames[name] = df.assign(value=df["correct"] / df["samples"])
    rows = []
    for method in dict.fromkeys(frames["reference"]["method"]):
        pivots = [
            f[f.method == method].pivot_table(index="seed", columns=["benchmark", "problem_id"], values="value")
            for f in (frames["fresh"], frames["reference"])
        ]
        seeds = sorted(set(pivots[0].index) & set(pivots[1].index), key=lambda s: (len(s), s))
        problems = pivots[1].columns.intersection(pivots[0].columns)
        if not seeds or len(problems) == 0:
            rows.append({"method": method, "seeds": 0, "verdict": "not in the fresh run"})
            continue
        a, b = (p.loc[seeds, problems].to_numpy() for p in pivots)  # [seeds, problems] each
        ci = paired_bootstrap(a, b, **bootstrap)
        same = "the same (bit for bit)" if (a == b).all() else verdict(ci["low"], ci["high"], "fresh", "reference")
        rows.append(
            {
                "method": method,
                "seeds": len(seeds),
                "fresh pass@1": a.mean(),
                "reference pass@1": b.mean(),
                "diff": ci["diff"],
                "low": ci["low"],
                "high": ci["high"],
                "verdict": same,
            }
        )
    return pd.DataFrame(rows)


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(results file, the text between its markers)`` for every marked block of the README."""
    return [(m.group(1), m.group(2)) for m in MARKER.finditer(text)]


def sync_readme(readme: str | Path = "README.md", root: str | Path = ".", write: bool = False) -> list[str]:
    """The README's marked blocks whose text differs from their results file (``write``: replace them).

    >>> import tempfile; tmp = tempfile.TemporaryDirectory(); d = Path(tmp.name); (d / "results").mkdir()
    >>> _ = (d / "results/t.md").write_text("| a |\\n")
    >>> _ = (d / "README.md").write_text("x\\n<!-- results/t.md -->\\nold\\n<!-- end results -->\\n")
    >>> sync_readme(d / "README.md", d), sync_readme(d / "README.md", d, write=True), sync_readme(d / "README.md", d)
    (['results/t.md'], ['results/t.md'], [])
    >>> tmp.cleanup()
    """
    readme, root = Path(readme), Path(root)
    text = readme.read_text()
    stale = []

    def fill(match: re.Match) -> str:
        path = root / match.group(1)
        if not path.exists():
            raise FileNotFoundError(
                f"{readme} quotes {match.group(1)}, which does not exist; run make publish or drop the block"
            )
        body = path.read_text().rstrip("\n") + "\n"
        if body != match.group(2):
            stale.append(match.group(1))
        return f"<!-- {match.group(1)} -->\n{body}<!-- end results -->"

    new = MARKER.sub(fill, text)
    if write and stale:
        atomic_write_text(readme, new)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewards_as_labels.reference", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="copy runs/<profile>/tables to results/<profile> with provenance.json")
    p.add_argument("--run", required=True, help="the run folder, e.g. runs/tiny")
    p.add_argument("--out", required=True, help="the results folder, e.g. results/tiny")
    p.add_argument("--command", dest="made_by", default="", help="the command that made the run (for provenance.json)")
    c = sub.add_parser("compare", help="a fresh run's test pass@1 against the committed reference, per method")
    c.add_argument("--run", required=True)
    c.add_argument("--ref", required=True)
    a = sub.add_parser("restore", help="bring results/<profile>/runs back into runs/<profile> (runs absent there)")
    a.add_argument("--ref", required=True, help="the results folder, e.g. results/smollm2")
    a.add_argument("--run", required=True, help="the run folder, e.g. runs/smollm2")
    a.add_argument("--profile", required=True, help="the profile the runs must have been trained with")
    a.add_argument("overrides", nargs="*", help="the profile's overrides (make's MODEL=, DATA=, ...), field=value")
    r = sub.add_parser("readme", help="check (or --write) the README's tables against results/")
    r.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "publish":
            for path in publish(args.run, args.out, args.made_by):
                print("wrote", path)
        elif args.command == "restore":
            for path in restore(args.ref, args.run, args.profile, parse_overrides(args.overrides)):
                print("restored", path)
        elif args.command == "compare":
            table = compare(args.run, args.ref)
            for col in ("fresh pass@1", "reference pass@1"):
                table[col] = table[col].map("{:.3f}".format)
            table["fresh - reference (points, 95% CI)"] = [
                f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                for d, lo, hi in zip(table["diff"], table["low"], table["high"])
            ]
            print(f"{args.run} against the reference {args.ref} (test pass@1, paired by seed and problem):")
            print(table.drop(columns=["diff", "low", "high"]).to_string(index=False))
        else:
            stale = sync_readme(write=args.write)
            print(
                ("rewrote: " if args.write else "differ from results/: ") + ", ".join(stale)
                if stale
                else "README tables match results/"
            )
            return 1 if stale and not args.write else 0
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
