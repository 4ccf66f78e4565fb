"""Executed notebooks store results, not progress-bar refreshes (progress.progress_bar, tools.notebook)."""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from rewards_as_labels.progress import PROGRESS_ENV, progress_bar, to_terminal
from rewards_as_labels.tools.notebook import run_notebook

CODE = """\
import time
from rewards_as_labels.progress import progress_bar
total = 0
for i in progress_bar(range(40), desc="ours", mininterval=0, miniters=1):
    total += i
    time.sleep(0.005)
from transformers.utils.logging import tqdm as hf_tqdm  # transformers' "Loading weights" bar
for _ in hf_tqdm(range(20), desc="Loading weights", mininterval=0):
    pass
print("total", total)
"""


@pytest.mark.parametrize("widgets", [True, False], ids=["ipywidgets", "no-ipywidgets"])
def test_notebook_outputs_hold_results_not_bar_refreshes(tmp_path, capfd, monkeypatch, widgets):
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "PYTHONWARNINGS", PROGRESS_ENV):
        monkeypatch.delenv(name, raising=False)
    # ipykernel leaves file descriptors 1 and 2 alone when it sees this variable; under make it
    # redirects them into the notebook, which is the case to test (sys.__stderr__ would leak there)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    if not widgets:  # the kernel cannot import ipywidgets: where tqdm.auto warns "IProgress not found"
        (tmp_path / "shadow/ipywidgets").mkdir(parents=True)
        (tmp_path / "shadow/ipywidgets/__init__.py").write_text("raise ImportError('no ipywidgets here')\n")
        monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'shadow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    src = tmp_path / "bars.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE)]), src)
    run_notebook(src, tmp_path / "out.ipynb", progress=False)
    outputs = json.dumps(nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs)
    assert "total 780" in outputs
    for clutter in ("TqdmWarning", "IProgress", "it/s", "ours", "Loading weights", "\\r", "widget-view"):
        assert clutter not in outputs, clutter
    # our bar went to the kernel's real stderr, i.e. the runner's terminal (here: pytest's fd 2)
    assert "ours: 100%" in capfd.readouterr().err
    assert PROGRESS_ENV not in os.environ  # the runner restores the environment


def test_progress_bar_outside_the_runner_is_tqdm_auto(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert not to_terminal()
    from tqdm.auto import tqdm

    bar = progress_bar(range(2), disable=True)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1]
