"""Run one notebook with papermill and report a failure a person can act on.

    python -m rewards_as_labels.tools.notebook IN.ipynb OUT.ipynb [-p name value ...] [field=value ...]

Values are parsed as YAML (``-p seed 1`` gives an int, ``-p taus "[0.5, 1]"`` a list);
``field=value`` words are config overrides, handed to the notebook as its ``overrides``
parameter in the CLI's format (``config.parse_overrides``). On
failure it prints the notebook, the failing cell (its ``In [n]``, the line that raised), the
error, and the executed copy to open (``OUT`` with ``.FAILED`` before ``.ipynb``), then exits
1, so that Make stops and names the target that failed.
The executed copy is written next to OUT under a temporary name and renamed on success,
so a stale OUT never passes for a fresh one.
The kernel gets ``progress.RUNNER_ENV``: the package's progress bars draw on the terminal (and
the Make log) instead of being stored in the notebook, one output line per refresh, and the
bars of transformers, huggingface_hub and datasets are off. A variable already set is kept.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import yaml

from ..config import parse_overrides
from ..io import ensure_writable_dir
from ..progress import RUNNER_ENV


def run_notebook(src: str | Path, dst: str | Path, parameters: dict | None = None, progress: bool = True) -> Path:
    import papermill as pm

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise SystemExit(f"\nnotebook {src} does not exist (asked to write {dst})\n")
    try:
        ensure_writable_dir(dst.parent, "notebook output folder", "fix it or pick another output path")
    except PermissionError as exc:
        raise SystemExit(f"\n{exc}\n") from None
    tmp = dst.with_name(f".{dst.stem}.running-{os.getpid()}.ipynb")
    failed = dst.with_name(f"{dst.stem}.FAILED.ipynb")
    for stale in dst.parent.glob(f".{dst.stem}.running-*.ipynb"):  # left by a killed run
        stale.unlink(missing_ok=True)
    added = {k: v for k, v in RUNNER_ENV.items() if k not in os.environ}  # the kernel inherits os.environ
    os.environ.update(added)
    try:
        pm.execute_notebook(
            str(src), str(tmp), parameters=parameters or {}, progress_bar=progress, kernel_name="python3"
        )
        os.replace(tmp, dst)
    except pm.PapermillExecutionError as exc:
        os.replace(tmp, failed)
        raise SystemExit(
            f"\nnotebook {src} failed in cell In [{exc.exec_count}] (cell {exc.cell_index + 1} of the executed copy)"
            f"{_failing_line(exc)}:\n  {exc.ename}: {exc.evalue}\n"
            f"open the executed copy to see the traceback: {failed}\n"
        ) from None
    except Exception as exc:  # the kernel died (e.g. out of memory), could not start, or papermill failed
        if tmp.exists():
            os.replace(tmp, failed)
        where = (
            f"open the partly executed copy: {failed}" if failed.exists() else f"no executed copy was written ({dst})"
        )
        raise SystemExit(f"\nnotebook {src} did not run: {type(exc).__name__}: {exc}\n{where}\n") from None
    finally:
        for k in added:
            os.environ.pop(k, None)
        if tmp.exists():
            tmp.unlink()
    failed.unlink(missing_ok=True)
    return dst


def _failing_line(exc) -> str:
    """`` at line 2: z = y / 0`` -- the line of the cell that raised, from IPython's traceback
    (its first ``---->`` marker), else the cell's first line of code."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(exc.traceback or []))  # drop ANSI colours
    marked = re.search(r"^-*>\s*(\d+)\s(.*)$", text, flags=re.M)
    if marked:
        return f" at line {marked.group(1)}: {marked.group(2).strip()!r}"
    code = [ln.strip() for ln in (exc.source or "").splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return f" ({code[0]!r})" if code else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="FIELD=VALUE",
        help="config overrides, passed to the notebook as its `overrides` parameter (as the CLI takes them)",
    )
    args = parser.parse_intermixed_args(argv)
    params = {name: yaml.safe_load(value) for name, value in args.parameter}
    if args.overrides:
        try:
            params["overrides"] = {**params.get("overrides", {}), **parse_overrides(args.overrides)}
        except ValueError as exc:
            parser.error(str(exc))
    run_notebook(args.input, args.output, params, progress=not args.no_progress)


if __name__ == "__main__":
    main()
    sys.exit(0)
