"""Mutation checks for notebook 01's completed derivation (sections 7-10).

Each case breaks one closed form of ``rewards_as_labels.symbolic`` in a copy of the package,
puts that copy first on the kernel's PYTHONPATH, runs the notebook, and asserts that it fails
*at the check of that formula* (the assertion message names it). A notebook that still ran
clean would mean its check does not look at the formula it claims to verify.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

ROOT = Path(__file__).resolve().parents[1]

# (the formula, the exact source line in symbolic.py, its broken version, the check that must fail)
MUTATIONS = [
    (
        "anchor-free loss",
        "return sp.log(sum(sp.exp(-s / t) for s in pos)) + sp.log(sum(sp.exp(s / t) for s in neg))",
        "return sp.log(1 + sum(sp.exp(-s / t) for s in pos)) + sp.log(sum(sp.exp(s / t) for s in neg))",
        "no anchor, |O+| = 1: |W+| = 1/tau",
    ),
    (
        "per-class weight sum",
        "return (1 / t) * u / (1 + u)",
        "return (1 / t) * u / (2 + u)",
        "sum over O+ of |dL/ds_k| = closed form",
    ),
    (
        "coupling d|W_k|/ds_j",
        "return (1 if positive else -1) * w_k * w_j",
        "return (1 if positive else -1) * w_k * w_j * tau",
        "d|W_k|/ds_j = +|W_k||W_j| (positives)",
    ),
    (
        "zero-temperature hinge",
        "return sp.Max(0, -sp.Min(*pos)) + sp.Max(0, sp.Max(*neg))",
        "return sp.Max(0, -sp.Max(*pos)) + sp.Max(0, sp.Max(*neg))",
        "|tau real_loss - hinge|",
    ),
    (
        "GRPO |A| closed form",
        "std = sp.sqrt(n_pos * (n - n_pos) / (n * (n - 1)))",
        "std = sp.sqrt(n_pos * (n - n_pos) / (n * n))",
        "group_advantages |A+|, |A-| vs closed form",
    ),
]


@pytest.mark.slow  # about 15-20 s per case: the notebook runs up to the broken check
@pytest.mark.parametrize("formula, line, broken, check", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_derivations_notebook_fails_when_a_new_formula_breaks(tmp_path, monkeypatch, formula, line, broken, check):
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "rewards_as_labels", src / "rewards_as_labels", ignore=shutil.ignore_patterns("__pycache__")
    )
    symbolic = src / "rewards_as_labels" / "symbolic.py"
    text = symbolic.read_text()
    assert text.count(line) == 1, f"{formula}: the line to mutate is gone from symbolic.py: {line!r}"
    symbolic.write_text(text.replace(line, broken))
    monkeypatch.setenv("PYTHONPATH", str(src))  # the kernel inherits it: the mutated copy wins

    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "01_derivations.ipynb"),
            str(tmp_path / "executed.ipynb"),
            parameters={
                "profile": "smoke",
                "overrides": {"run_root": str(tmp_path / "run")},
                "n_points": 10,
                "group": "++--",
            },
            kernel_name="python3",
            progress_bar=False,
        )
    assert failure.value.ename == "AssertionError", failure.value
    assert check in failure.value.evalue, f"{formula}: failed elsewhere: {failure.value.evalue}"
