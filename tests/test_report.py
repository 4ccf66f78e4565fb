"""make report: a tiny fake run folder rendered to HTML, and every link of the index resolves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

pytest.importorskip("nbconvert")

from rewards_as_labels.tools.report import build_report, main  # noqa: E402

# a 1x1 PNG
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def fake_run(root: Path) -> Path:
    run = root / "runs/fake"
    (run / "notebooks").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# A title"), nbformat.v4.new_code_cell("1 + 1")]
    )
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)]
    nbformat.write(nb, run / "notebooks/01_toy.ipynb")
    nbformat.write(nb, run / "notebooks/03_train-real-s0.FAILED.ipynb")
    (run / "figures").mkdir()
    (run / "figures/curve.png").write_bytes(PNG)
    (run / "figures/curve.pdf").write_bytes(b"%PDF-1.4\n")
    (run / "tables").mkdir()
    (run / "tables/comparison.csv").write_text("method,pass@1\nreal,0.469\ngrpo,0.461\n")
    return run


def test_report_index_links_resolve(tmp_path, capsys):
    run = fake_run(tmp_path)
    main(["--run", str(run)])
    index = run / "report/index.html"
    assert f"open {index}" in capsys.readouterr().out
    text = index.read_text()
    targets = [unquote(t) for t in re.findall(r'(?:href|src)="([^"]+)"', text)]
    assert targets, text
    for target in targets:
        assert (index.parent / target).resolve().is_file(), target
    assert {
        "notebooks/01_toy.html",
        "tables/comparison.html",
        "../figures/curve.png",
        "../figures/curve.pdf",
        "notebooks/03_train-real-s0.FAILED.html",
    } <= set(targets)
    assert '<img src="../figures/curve.png"' in text
    assert "<td>0.469</td>" in text  # a short table is shown on the index too
    assert "failed" in text.split("03_train-real-s0.FAILED")[0].rsplit("<h2", 1)[1]  # listed under the failures
    page = (run / "report/notebooks/01_toy.html").read_text()
    assert "A title" in page and "<pre>2</pre>" in page  # the markdown and the stored output
    table = (run / "report/tables/comparison.html").read_text()
    assert "<table" in table and "<td>0.469</td>" in table


def test_report_rebuild_replaces_and_empty_run_fails(tmp_path):
    run = fake_run(tmp_path)
    build_report(run)
    (run / "tables/comparison.csv").unlink()
    build_report(run)  # a second build replaces the first: no stale table page
    assert not (run / "report/tables/comparison.html").exists()
    assert not [p for p in run.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    with pytest.raises(SystemExit, match="nothing to report in .*make reproduce"):
        build_report(tmp_path / "runs/empty")


def test_make_reproduce_ends_with_the_report(tmp_path):
    from conftest import make_env, standin_venv

    root = Path(__file__).resolve().parents[1]
    if shutil.which("make") is None:
        pytest.skip("no make")
    venv = standin_venv(tmp_path / "venv")  # make -n runs the package (makevars) to list the runs
    lines = (
        subprocess.run(
            ["make", "-n", "-B", "reproduce", "PROFILE=smoke", f"VENV={venv}", "ACCEL=cpu"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            env=make_env(),
        )
        .stdout.strip()
        .splitlines()
    )
    report = [i for i, line in enumerate(lines) if "-m rewards_as_labels.tools.report --run runs/smoke" in line]
    figures = [i for i, line in enumerate(lines) if "05_figures.ipynb" in line]
    assert report and figures and report[0] > figures[-1], "\n".join(lines[-5:])
