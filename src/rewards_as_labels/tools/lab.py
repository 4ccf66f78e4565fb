"""JupyterLab on the package's notebooks, with kernels started where ``make`` runs them.

    python -m rewards_as_labels.tools.lab [--dry-run] [extra jupyter lab options ...]

``make lab`` calls this. It opens ``notebooks/`` with the package's kernel (the venv's
``python3`` kernelspec that ipykernel installs: jupyter_client starts it with the same Python
as the server, i.e. ``.venv/bin/python``).

One change from a plain ``jupyter lab``: a kernel starts in the project folder, not in the
notebook's folder. The notebooks read and write ``data/`` and ``runs/<profile>/`` relative to the
working folder, as they do under ``make`` (papermill runs them from the project folder); started in
``notebooks/``, a notebook stepped through by hand would write a second ``notebooks/runs/`` and
miss the warm start that ``make`` trained. :class:`ProjectRootContentsManager` does that.
``--dry-run`` prints the command instead of starting the server.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager


class ProjectRootContentsManager(AsyncLargeFileManager):
    """jupyter_server's default contents manager, except that every kernel starts in ``root_dir``."""

    def get_kernel_path(self, path, model=None):
        return ""  # relative to root_dir: the project folder


def lab_command(root: str | Path = ".", python: str = sys.executable, extra: list[str] | None = None) -> list[str]:
    """The ``jupyter lab`` command line: served from ``root``, opened on ``root/notebooks``.

    >>> cmd = lab_command("/proj", python="/proj/.venv/bin/python")
    >>> cmd[:4]
    ['/proj/.venv/bin/python', '-m', 'jupyterlab', '--ServerApp.root_dir=/proj']
    """
    root = Path(root).resolve()
    return [
        python,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.contents_manager_class=rewards_as_labels.tools.lab.ProjectRootContentsManager",
        "--MappingKernelManager.default_kernel_name=python3",
        "--LabApp.default_url=/lab/tree/notebooks",
        *(extra or []),
    ]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    dry = "--dry-run" in argv
    cmd = lab_command(".", extra=[a for a in argv if a != "--dry-run"])
    if not (Path(".") / "notebooks").is_dir():
        raise SystemExit(f"\nno notebooks/ folder in {Path('.').resolve()}: run `make lab` from the project folder\n")
    print(shlex.join(cmd), flush=True)
    if not dry:
        os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
