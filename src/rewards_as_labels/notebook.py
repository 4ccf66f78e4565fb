"""Run one notebook with papermill and report a failure a person can act on.

    python -m rewards_as_labels.notebook IN.ipynb OUT.ipynb [-p name value ...]

Values are parsed as YAML (``-p seed 1`` gives an int, ``-p taus "[0.5, 1]"`` a list). On
failure it prints the notebook, the failing cell (index and first source line), the error,
and the executed copy to open, then exits 1 so Make names the stage that failed.
The executed copy is written next to OUT under a temporary name and renamed on success,
so a stale OUT never passes for a fresh one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml


def run_notebook(src: str | Path, dst: str | Path, parameters: dict | None = None, progress: bool = True) -> Path:
    import papermill as pm

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.running-{os.getpid()}.ipynb")
    failed = dst.with_name(f"{dst.stem}.FAILED.ipynb")
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=parameters or {}, progress_bar=progress, kernel_name="python3")
        os.replace(tmp, dst)
    except pm.PapermillExecutionError as exc:
        os.replace(tmp, failed)
        source = _cell_source(failed, exc.exec_count)
        raise SystemExit(
            f"\nnotebook {src} failed in cell [{exc.exec_count}] ({source!r}):\n"
            f"  {exc.ename}: {exc.evalue}\n"
            f"open the executed copy to see the traceback: {failed}\n"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    failed.unlink(missing_ok=True)
    return dst


def _cell_source(path: Path, exec_count) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.get("execution_count") == exec_count and cell.cell_type == "code":
            return cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    params = {name: yaml.safe_load(value) for name, value in args.parameter}
    run_notebook(args.input, args.output, params, progress=not args.no_progress)


if __name__ == "__main__":
    main()
    sys.exit(0)
