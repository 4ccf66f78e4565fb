"""Crashes, full disks and failures: nothing finished is lost, and every error says what to do.

1  SIGKILL inside a checkpoint write leaves the previous checkpoint usable; the half-written
   ``ckpt_*.tmp-<pid>`` is ignored and removed by the next write.
2  An interrupted ``make reproduce`` (smoke profile, one run, in a copy of the tree) continues
   where it stopped; finished stages are not redone.
3  A non-finite loss or gradient stops the run naming step, method and quantity; the checkpoint
   before it loads, and metrics.jsonl has no row for the bad step.
4  A failing notebook names the notebook, the cell, the line and the copy to open; Make names
   the stage and the target that failed.
5  A full disk during metric or checkpoint writes, and an unwritable output folder, give errors
   that name the file or folder and the fix, with earlier rows and checkpoints intact. A real
   small tmpfs is mounted when this process may mount (root in a container usually may);
   otherwise the disk-full case is simulated at ``os.write``. Root ignores file permissions,
   so "unwritable" is a read-only tmpfs or a file sitting where a folder is expected.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch
from conftest import make_env, standin_venv

from rewards_as_labels import io as io_mod
from rewards_as_labels import trainer as trainer_mod
from rewards_as_labels.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from rewards_as_labels.config import load_config
from rewards_as_labels.io import JsonlWriter, ensure_writable_dir
from rewards_as_labels.modeling import build_tiny_model, build_tokenizer, load_policy

ROOT = Path(__file__).resolve().parents[1]
# a ~10k-parameter Qwen2: its checkpoints are ~0.1 MB, so a small tmpfs can hold exactly one
SMALL = {"hidden_size": "32", "num_heads": "1", "num_layers": "1", "intermediate_size": "64"}


# ----------------------------------------------------------------------------- helpers
def _tiny_state(seed: int = 0):
    """A small model, tokenizer, and an AdamW that has taken a step (so it has moments to save)."""
    torch.manual_seed(seed)
    tok = build_tokenizer()
    model = build_tiny_model(load_config(profile="smoke", overrides=SMALL), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[3, 4, 5]])).logits.sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    return model, tok, opt, sched


def _assert_loads(ckpt: Path, step: int) -> None:
    model, tok, opt, sched = _tiny_state(seed=1)
    assert load_trainer_state(ckpt, opt, sched) == step
    cfg = load_config(profile="smoke", overrides=SMALL)
    loaded, _ = load_policy(cfg, path=ckpt / "model")
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """Mount a tmpfs of ``size`` at ``path``; yields False (nothing mounted) where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    ok = shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
    ).returncode == 0  # fmt: skip
    try:
        yield bool(ok)
    finally:
        if ok:
            subprocess.run(["umount", str(path)], capture_output=True)


def _failing_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 3")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# a notebook that fails in its last cell"),
        params,
        nbformat.v4.new_code_cell("y = x + 1"),
        nbformat.v4.new_code_cell("# the failing cell\nz = y / (x - 3)"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- 1. SIGKILL inside a checkpoint write
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import torch
    from rewards_as_labels import checkpoint
    from test_hardening import _tiny_state

    run, mode = Path(sys.argv[1]), sys.argv[2]
    model, tok, opt, sched = _tiny_state()
    checkpoint.save_checkpoint(run, 1, model, tok, opt, sched, keep=2)
    if mode == "pause":  # stop inside the second write: model saved, trainer.pt saved, no state.json
        real_save = torch.save
        def save_then_wait(obj, f):
            real_save(obj, f)
            (run / "inside-write").touch()
            time.sleep(120)
        checkpoint.torch.save = save_then_wait
        checkpoint.save_checkpoint(run, 2, model, tok, opt, sched, keep=2)
    else:  # write checkpoints back to back until killed
        (run / "inside-write").touch()
        for step in range(2, 10**6):
            checkpoint.save_checkpoint(run, step, model, tok, opt, sched, keep=2)
    """
)


def _spawn_writer(tmp_path: Path, run: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent)))
    return subprocess.Popen([sys.executable, str(script), str(run), mode], env=make_env())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"the writer never got there (exit code {proc.poll()})"


def test_sigkill_inside_checkpoint_write_keeps_previous(tmp_path):
    run = tmp_path / "run"
    proc = _spawn_writer(tmp_path, run, "pause")
    _wait_for(run / "inside-write", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    leftovers = sorted(p.name for p in run.glob("ckpt_000002*"))
    assert leftovers == [f"ckpt_000002.tmp-{proc.pid}"]  # the half checkpoint, under its temp name
    assert latest_checkpoint(run) == run / "ckpt_000001"
    _assert_loads(run / "ckpt_000001", 1)

    model, tok, opt, sched = _tiny_state()
    save_checkpoint(run, 3, model, tok, opt, sched, keep=2)  # the next write cleans up
    assert sorted(p.name for p in run.glob("ckpt_*")) == ["ckpt_000001", "ckpt_000003"]
    _assert_loads(latest_checkpoint(run), 3)


@pytest.mark.slow
def test_sigkill_at_random_moments_of_back_to_back_writes(tmp_path):
    rng = random.Random(0)
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = _spawn_writer(tmp_path, run, "loop")
        _wait_for(run / "inside-write", proc)
        time.sleep(rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        latest = latest_checkpoint(run)
        assert latest is not None
        _assert_loads(latest, int(latest.name.split("_")[1]))
        assert not list(run.glob("*.tmp-*")) and not list(run.glob("*.old-*"))  # dead writer's leftovers tidied


# ----------------------------------------------------------------------------- 2. interrupted `make reproduce`
def _make_tree(dest: Path) -> tuple[Path, Path]:
    """A copy of the tree Make works on, and a stand-in venv whose python is ours, so no stage
    writes into the repository (runs/ holds real results) and no stale stamp reinstalls .venv."""
    repo, venv = dest / "repo", dest / "venv"
    repo.mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    for name in ("notebooks", "configs", "src", "requirements", "scripts"):
        shutil.copytree(
            ROOT / name, repo / name, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", ".ipynb_checkpoints")
        )
    return repo, standin_venv(venv)  # stamps newer than the copied requirements: set up


def _make(venv: Path, *targets: str) -> list[str]:
    return ["make", "--no-print-directory", *targets, "PROFILE=smoke", f"VENV={venv}", "JOBS=1", "ACCEL=cpu"]


def _kill_everything(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants at once -- also the Jupyter kernel, which runs in a
    session of its own (jupyter_client starts kernels with ``start_new_session``)."""
    import psutil

    procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_interrupted_reproduce_continues_where_it_stopped(tmp_path):
    repo, venv = _make_tree(tmp_path)
    cmd = _make(venv, "reproduce") + ["METHODS=real", "SEEDS=0"]
    run = repo / "runs/smoke"
    log1 = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=repo, env=make_env(), stdout=log1, stderr=subprocess.STDOUT)
    deadline = time.time() + 400
    while not (run / "real-s0/metrics.jsonl").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    _kill_everything(proc.pid)  # make, papermill and the kernel that trains: a crash, not a Ctrl-C
    proc.wait()
    log1.close()
    first = (tmp_path / "first.log").read_text()
    assert (run / "real-s0/metrics.jsonl").exists(), f"training never started:\n{first[-3000:]}"
    assert not (run / "real-s0/final.json").exists(), "killed too late: training had finished"

    finished = [run / "notebooks/01_derivations.ipynb", run / "notebooks/02_autograd_verification.ipynb",
                run / "stamps/data", run / "warmstart/metrics.json", run / "warmstart/model/config.json"]  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in finished}

    second = subprocess.run(cmd, cwd=repo, env=make_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    stages = [ln for ln in second.stdout.splitlines() if ln.startswith(">>> [smoke]")]
    assert stages[0] == ">>> [smoke] train real-s0", stages  # derive, verify, data, warmstart are not redone
    assert stages[-1].startswith(">>> [smoke] done")
    assert {p: p.stat().st_mtime_ns for p in finished} == before
    steps = [json.loads(line)["step"] for line in (run / "real-s0/metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]  # resumed or restarted, every step exactly once
    assert (run / "tables/comparison.csv").is_file()
    assert not list((run / "notebooks").glob(".*running*"))  # the killed papermill run's temp copy is gone

    third = subprocess.run(cmd, cwd=repo, env=make_env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0
    assert [ln for ln in third.stdout.splitlines() if ln.startswith(">>> [smoke]")] == [stages[-1]]  # nothing to do


# ----------------------------------------------------------------------------- 3. non-finite loss / gradient
@pytest.mark.parametrize("quantity", ["loss", "gradient norm"])
def test_nonfinite_stops_and_keeps_last_checkpoint(smoke_base, monkeypatch, quantity):
    root, base = smoke_base
    monkeypatch.chdir(root)
    bad_step, calls = 2, {"n": 0}
    # smoke: 2 mini-batches per step, so the first mini-batch of step 2 is call 5
    if quantity == "loss":
        real = trainer_mod.policy_loss

        def poisoned(cfg, mb, method=None):
            calls["n"] += 1
            loss, cut = real(cfg, mb, method)
            return (loss * float("nan") if calls["n"] == 2 * bad_step + 1 else loss), cut

        monkeypatch.setattr(trainer_mod, "policy_loss", poisoned)
    else:
        real = trainer_mod.backward_in_micro_batches

        def poisoned(model, batch, cfg, loss_fn, *args, **kwargs):
            calls["n"] += 1
            out = real(model, batch, cfg, loss_fn, *args, **kwargs)
            if calls["n"] == 2 * bad_step + 1:
                next(model.parameters()).grad[0, 0] = float("inf")
            return out

        monkeypatch.setattr(trainer_mod, "backward_in_micro_batches", poisoned)
    out = f"runs/smoke/nonfinite-{quantity.replace(' ', '-')}"
    cfg = load_config(
        profile="smoke", overrides={**base, "method": "real", "out": out, "total_steps": 4, "eval_every": 1}
    )
    with pytest.raises(trainer_mod.TrainingDiverged) as err:
        trainer_mod.train(cfg, progress=False)
    run = root / out
    message = str(err.value)
    assert f"non-finite {quantity} at step {bad_step} (method real)" in message and "ckpt_000002" in message
    assert latest_checkpoint(run) == run / "ckpt_000002"
    assert json.loads((run / "ckpt_000002/state.json").read_text())["next_step"] == 2
    model, _ = load_policy(cfg, path=run / "ckpt_000002/model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for log in ("metrics.jsonl", "weight_samples.jsonl"):
        steps = [json.loads(line)["step"] for line in (run / log).read_text().splitlines()]
        assert steps == [0, 1], log  # no row for the bad step
    # and the run resumes from that checkpoint (here without the poison) to the end
    monkeypatch.undo()
    monkeypatch.chdir(root)
    trainer_mod.train(cfg, resume=True, progress=False)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- 4. failing notebooks and stages
def test_failing_notebook_names_cell_line_and_copy(tmp_path):
    nb = _failing_notebook(tmp_path / "bad.ipynb")
    out = tmp_path / "out" / "bad_run.ipynb"
    res = subprocess.run([sys.executable, "-m", "rewards_as_labels.tools.notebook", str(nb), str(out), "-p", "x", "3",
                          "--no-progress"], capture_output=True, text=True, env=make_env())  # fmt: skip
    assert res.returncode == 1
    failed = tmp_path / "out" / "bad_run.FAILED.ipynb"
    assert f"notebook {nb} failed in cell In [4]" in res.stderr
    assert "at line 2: 'z = y / (x - 3)'" in res.stderr  # the statement, not the comment above it
    assert "ZeroDivisionError: division by zero" in res.stderr
    assert f"open the executed copy to see the traceback: {failed}" in res.stderr
    assert failed.is_file() and not out.exists()  # no output that could pass for a finished stage
    assert "Traceback" not in res.stderr

    res = subprocess.run([sys.executable, "-m", "rewards_as_labels.tools.notebook", str(tmp_path / "nope.ipynb"),
                          str(out), "--no-progress"], capture_output=True, text=True, env=make_env())  # fmt: skip
    assert res.returncode == 1 and "nope.ipynb does not exist" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_names_the_failing_stage(tmp_path):
    repo, venv = _make_tree(tmp_path)
    _failing_notebook(repo / "notebooks/01_derivations.ipynb")  # the copy's notebook 01 now fails
    res = subprocess.run(_make(venv, "derive"), cwd=repo, env=make_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert ">>> [smoke] derive: notebook 01" in res.stdout
    assert "notebook notebooks/01_derivations.ipynb failed in cell In [4]" in res.stderr
    assert "runs/smoke/notebooks/01_derivations.FAILED.ipynb" in res.stderr
    assert "runs/smoke/notebooks/01_derivations.ipynb] Error 1" in res.stderr  # Make's own line names the target
    assert not (repo / "runs/smoke/notebooks/01_derivations.ipynb").exists()  # so a rerun redoes the stage


# ----------------------------------------------------------------------------- 5. full disk, unwritable folders
def _rows(path: Path) -> list[int]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a half row was left at the end"
    return [json.loads(line)["step"] for line in text.splitlines()]


def _fill(writer: JsonlWriter, limit: int = 10_000) -> OSError:
    for step in range(limit):
        try:
            writer.write({"step": step, "padding": "x" * 900})
        except OSError as exc:
            return exc
    raise AssertionError("the disk never filled up")


def test_metrics_on_a_full_disk_simulated(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path, start_step=0)
    for step in range(3):
        writer.write({"step": step})
    real_write = os.write

    def disk_fills_midway(fd, data):  # takes part of the row, then refuses the rest
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_mod.os, "write", disk_fills_midway)
    with pytest.raises(OSError) as err:
        writer.write({"step": 3, "padding": "x" * 100})
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert f"could not append step 3 to {path}" in str(err.value)
    assert "No space left on device" in str(err.value) and "free disk space" in str(err.value)
    assert "earlier rows are intact" in str(err.value) and "--resume" in str(err.value)
    assert _rows(path) == [0, 1, 2]  # the partial row was cut off again


def test_metrics_and_checkpoints_on_a_real_full_tmpfs(tmp_path):
    with tmpfs(tmp_path / "small", "256k") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (the simulated test covers the metrics writer)")
        path = tmp_path / "small" / "metrics.jsonl"
        err = _fill(JsonlWriter(path, start_step=0))
        assert err.errno == errno.ENOSPC and str(path) in str(err) and "free disk space" in str(err)
        rows = _rows(path)
        assert rows == list(range(len(rows))) and len(rows) > 100
        JsonlWriter(path, start_step=len(rows))  # a resume keeps every complete row
        assert _rows(path) == rows
        path.unlink()

        run = tmp_path / "small" / "run"
        model, tok, opt, sched = _tiny_state()
        save_checkpoint(run, 1, model, tok, opt, sched, keep=2)  # ~0.1 MB: one fits, two do not
        filler = tmp_path / "small" / "filler"
        free = shutil.disk_usage(run).free
        filler.write_bytes(b"\0" * max(free - 60_000, 0))
        with pytest.raises(OSError) as ckpt_err:
            save_checkpoint(run, 2, model, tok, opt, sched, keep=2)
        message = str(ckpt_err.value)
        assert f"could not write checkpoint {run / 'ckpt_000002'}" in message
        assert f"earlier checkpoints in {run} are intact" in message and "free disk space" in message
        assert sorted(p.name for p in run.iterdir()) == ["ckpt_000001"]  # no half checkpoint left
        _assert_loads(latest_checkpoint(run), 1)


def test_unwritable_run_folder_is_named(smoke_base, tmp_path):
    root, base = smoke_base
    (tmp_path / "afile").write_text("not a folder")
    target = tmp_path / "afile" / "run"
    with pytest.raises(PermissionError, match=f"run folder {target} is not writable \\({tmp_path / 'afile'} is a file"):
        trainer_mod.train(load_config(profile="smoke", overrides={**base, "out": str(target)}), progress=False)
    # the CLI turns it into one line, no traceback
    res = subprocess.run([sys.executable, "-m", "rewards_as_labels", "train", "--profile", "smoke",
                          "--out", str(target), "--data_dir", base["data_dir"]],
                         capture_output=True, text=True, cwd=root, env=make_env())  # fmt: skip
    assert (
        res.returncode == 2 and f"run folder {target} is not writable" in res.stderr and "Traceback" not in res.stderr
    )
    # a folder that exists but cannot be written: read-only tmpfs when root can mount, else chmod for non-root
    locked = tmp_path / "locked"
    with tmpfs(locked, "64k", read_only=True) as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root ignores permissions and cannot mount a read-only tmpfs here")
            locked.chmod(0o500)
        try:
            with pytest.raises(PermissionError, match=f"run folder {locked / 'run'} is not writable"):
                ensure_writable_dir(locked / "run", "run folder", "choose another --out")
            nb = _failing_notebook(tmp_path / "bad.ipynb")
            res = subprocess.run([sys.executable, "-m", "rewards_as_labels.tools.notebook", str(nb),
                                  str(locked / "nb" / "out.ipynb")],
                                 capture_output=True, text=True, env=make_env())  # fmt: skip
            assert res.returncode == 1 and f"notebook output folder {locked / 'nb'} is not writable" in res.stderr
            assert "Traceback" not in res.stderr
        finally:
            if not mounted:
                locked.chmod(0o700)
