"""Run the two math notebooks end to end through papermill, on small parameters.

The notebooks assert on their own (sympy derivation vs package, autograd vs closed forms), so a
clean run is already the main check. Here we also check that they leave the artefacts the
Makefile and the paper figures rely on, that the verification table holds every formula within
1e-10, and that the kernel ran *this* interpreter (the venv's, through the default ``python3``
kernelspec that ipykernel installs into ``.venv/share/jupyter/kernels``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")
pd = pytest.importorskip("pandas")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, tmp_path: Path, **parameters) -> tuple[Path, Path]:
    """Execute ``notebooks/<name>`` on the smoke profile with its folder in ``tmp_path``;
    return (executed notebook, the profile folder that holds figures/ and tables/)."""
    out_dir = tmp_path / "run"
    executed = tmp_path / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(executed),
        parameters={"profile": "smoke", "overrides": {"run_root": str(out_dir)}, **parameters},
        kernel_name="python3",
        progress_bar=False,
    )
    return executed, out_dir


def _kernel_python(executed: Path) -> str:
    """The interpreter the kernel reported: the setup cell prints ``python <sys.executable>``."""
    for cell in json.loads(executed.read_text())["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", ""))
            if output.get("name") == "stdout" and text.startswith("python "):
                return text.splitlines()[0].removeprefix("python ")
    raise AssertionError(f"{executed.name} did not print its interpreter")


@pytest.mark.slow  # about 30 s: sympy simplifications
def test_derivations_notebook(tmp_path):
    executed, out_dir = _execute("01_derivations.ipynb", tmp_path, n_points=20, group="++-")

    assert Path(_kernel_python(executed)).parent == Path(sys.executable).parent
    for ext in ("png", "pdf"):
        figure = out_dir / "figures" / f"gradient_magnitude.{ext}"
        assert figure.is_file() and figure.stat().st_size > 10_000, figure
    checks = pd.read_csv(out_dir / "tables" / "derivation_checks.csv")
    assert set(checks.kind) == {"symbolic", "numeric", "property"}
    numeric = checks[checks.kind == "numeric"]
    assert (numeric.max_rel_err < 1e-10).all(), numeric[numeric.max_rel_err >= 1e-10]
    # every weight function of the package was checked against the derivation
    for fn in ("grpo_weights", "real_weights", "grad_weights", "real_context_constants", "real_loss"):
        assert numeric.check.str.contains(fn).any(), fn
    # the completed derivation (sections 7-10) recorded its checks, of every kind it uses
    for section in ("7 anchor", "8 class bound", "9 tau limits", "9 REAL vs GRPO", "10 coupling"):
        assert (checks.section == section).any(), section
    assert numeric.check.str.contains("group_advantages").any()


def test_autograd_verification_notebook(tmp_path):
    executed, out_dir = _execute(
        "02_autograd_verification.ipynb", tmp_path, n_batches=2, group_sizes=[2, 8], taus=[0.5, 2.0]
    )

    assert Path(_kernel_python(executed)).parent == Path(sys.executable).parent
    table = pd.read_csv(out_dir / "tables" / "autograd_verification.csv")
    assert (table.max_rel_err < 1e-10).all(), table[table.max_rel_err >= 1e-10]
    overall = table[table.family == "all"].set_index("formula")
    for method in ("REAL", "GRAD", "GRPO", "DAPO", "GSPO"):
        rows = overall[overall.index.str.startswith(method)]
        assert len(rows) and (rows.n_nonzero > 0).all(), f"{method}: no non-zero gradient was compared"
    assert set(table.family) >= {"mixed", "all-correct", "all-wrong", "single positive", "single negative", "extreme"}
    properties = pd.read_csv(out_dir / "tables" / "autograd_properties.csv")
    assert properties.holds.all()
