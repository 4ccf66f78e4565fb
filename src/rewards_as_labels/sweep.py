"""The stability sweep: a named grid of short, ordinary training runs over (method, M, lr, seed),
and the per-run table that says where each method breaks.

A grid is a small YAML file, ``configs/sweeps/<name>.yaml`` (``./configs/sweeps/`` first, then the
package's own): the base ``profile``, ``steps``, the axes ``methods``, ``minibatches`` (M, optimiser
mini-batches per rollout batch: the first is on-policy, the other M - 1 off-policy), ``learning_rates``,
``seeds``, fixed ``overrides`` of every run, and the ``collapse`` rule's parameters. :func:`runs` expands
it into run names and their config overrides; the Makefile's targets of ``make sweep`` come from the
same function (:mod:`rewards_as_labels.makevars` writes them, one target and its overrides per run).

Runs live in ``runs/<profile>/sweep/<name>`` (``<method>-m<M>-lr<lr>-n<steps>-s<seed>``), so grids
that share a cell share its run, and the profile's own ``<method>-s<seed>`` runs are left alone.

Collapse (:func:`collapse_step`): the batch reward (fraction of the step's P x n rollouts that are
correct) stays at or below ``reward_below`` (default 0.02) for ``steps`` (default 10) consecutive
steps; the collapse step is the first of them. Why this rule: a group whose rollouts are all wrong
gives every one of the five methods a zero gradient (one-label groups carry no signal), so once almost
every group is all-wrong the policy has nothing to climb back with -- the state MEASURED.md saw at
lr 1e-3 (pass@1 below 3% within 25 steps, never recovering). 2% of 256 rollouts is 5 correct ones,
far below the warm start's ~15%, and 10 steps in a row rule out one unlucky batch. Entropy is not
used: a collapsed tiny policy can stay high-entropy (it samples wrong digits at random).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .config import METHODS, PACKAGE_PROFILES, USER_PROFILES, load_config
from .methods import OFFPOLICY_KEYS
from .results import paired_bootstrap, verdict

GRID_FIELDS = ("profile", "steps", "methods", "minibatches", "learning_rates", "seeds", "overrides", "collapse")
SPIKE_FACTOR = 5.0  # a step's largest mini-batch gradient norm above 5x the run's median (non-zero steps) is a spike


@dataclass
class Grid:
    """One named sweep grid (fields as in the YAML file; see the module docstring)."""

    name: str
    profile: str
    steps: int
    methods: list[str]
    minibatches: list[int]
    learning_rates: list[float]
    seeds: list[int]
    overrides: dict = field(default_factory=dict)
    collapse: dict = field(default_factory=dict)


def grid_path(name: str) -> Path:
    """The YAML file of grid ``name``: ``./configs/sweeps/`` first, then the package's own grids."""
    for folder in (USER_PROFILES / "sweeps", PACKAGE_PROFILES / "sweeps"):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    known = sorted({p.stem for f in (USER_PROFILES / "sweeps", PACKAGE_PROFILES / "sweeps") for p in f.glob("*.yaml")})
    raise ValueError(f"unknown sweep grid {name!r}; grids: {', '.join(known)} (SWEEP=<name>)")


def load_grid(name: str) -> Grid:
    """Read and check grid ``name``.

    >>> g = load_grid("smoke"); (g.profile, g.methods, g.minibatches)
    ('smoke', ['real', 'grpo'], [1, 2])
    """
    path = grid_path(name)
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - set(GRID_FIELDS))
    missing = sorted(set(GRID_FIELDS) - {"overrides", "collapse"} - set(raw))
    if unknown or missing:
        raise ValueError(f"sweep grid {path}: unknown keys {unknown}, missing keys {missing}; keys are {', '.join(GRID_FIELDS)}")
    bad = [m for m in raw["methods"] if m not in METHODS]
    if bad:
        raise ValueError(f"sweep grid {path}: unknown methods {bad}; valid methods: {', '.join(METHODS)}")
    grid = Grid(name=name, **{k: raw[k] for k in GRID_FIELDS if k in raw})
    grid.learning_rates = [float(lr) for lr in grid.learning_rates]
    grid.overrides = dict(grid.overrides or {})
    grid.collapse = dict(grid.collapse or {})
    return grid


def run_name(method: str, minibatches: int, lr: float, seed: int, steps: int) -> str:
    """Folder name of one sweep run.

    >>> run_name("real", 4, 6e-4, 1, 100)
    'real-m4-lr0.0006-n100-s1'
    """
    return f"{method}-m{minibatches}-lr{lr:g}-n{steps}-s{seed}"


def runs(grid: Grid) -> list[tuple[str, dict]]:
    """Every run of ``grid`` as ``(run_name, config overrides)``, method-major; each config is
    checked here (e.g. M must divide prompts_per_step), so a bad grid fails before any training.

    >>> [name for name, _ in runs(load_grid("smoke"))][:3]
    ['real-m1-lr0.0003-n2-s0', 'real-m1-lr0.001-n2-s0', 'real-m2-lr0.0003-n2-s0']
    """
    out = []
    for method, M, lr, seed in product(grid.methods, grid.minibatches, grid.learning_rates, grid.seeds):
        overrides = {**grid.overrides, "method": method, "seed": seed, "minibatches_per_step": M,
                     "learning_rate": lr, "total_steps": grid.steps}
        load_config(profile=grid.profile, overrides=overrides)  # raises a ValueError naming the bad field
        out.append((run_name(method, M, lr, seed, grid.steps), overrides))
    return out


def sweep_dir(profile_dir: str | Path) -> Path:
    """Folder of a profile's sweep runs."""
    return Path(profile_dir) / "sweep"


# ----------------------------------------------------------------------------- per-run summary
def collapse_step(rewards, reward_below: float = 0.02, steps: int = 10) -> int | None:
    """Index of the first of ``steps`` consecutive batch rewards ``<= reward_below``, or None.

    >>> collapse_step([0.2, 0.0, 0.01, 0.0, 0.3], steps=2), collapse_step([0.2, 0.0, 0.3], steps=2)
    (1, None)
    """
    low = np.asarray(rewards, dtype=float) <= reward_below
    run = 0
    for i, is_low in enumerate(low):
        run = run + 1 if is_low else 0
        if run == steps:
            return i - steps + 1
    return None


def grad_norm_spikes(norms, factor: float = SPIKE_FACTOR) -> int:
    """Steps whose gradient norm exceeds ``factor`` times the run's median over steps with a gradient
    (zeros -- steps whose groups were all one-label -- are left out, else a collapsed run's median is 0).

    >>> grad_norm_spikes([1.0, 1.2, 0.9, 8.0, 1.1]), grad_norm_spikes([1.0, 0.0, 0.0, 0.0, 1.1])
    (1, 0)
    """
    norms = np.asarray(norms, dtype=float)
    norms = norms[np.isfinite(norms) & (norms > 0)]
    return int((norms > factor * np.median(norms)).sum()) if norms.size else 0


def summarize_run(folder: str | Path, collapse: dict | None = None) -> dict:
    """One row of the stability table from a finished run's ``metrics.jsonl`` and ``final.json``."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    metrics = pd.DataFrame([json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()])
    final = json.loads((folder / "final.json").read_text())
    evals = metrics["eval/pass@1"].dropna().tolist() if "eval/pass@1" in metrics else []
    final_pass = final.get("eval/pass@1", math.nan)
    step = collapse_step(metrics["reward/mean"], **(collapse or {}))
    norm_col = "train/grad_norm_max" if "train/grad_norm_max" in metrics else "train/grad_norm"
    row = {
        "run": folder.name, "method": cfg["method"], "lr": cfg["learning_rate"], "minibatches": cfg["minibatches_per_step"],
        "seed": cfg["seed"], "steps": cfg["total_steps"],
        "final_pass@1": final_pass, "best_pass@1": max([*evals, final_pass]) if evals or not math.isnan(final_pass) else math.nan,
        "collapsed": step is not None, "collapse_step": step if step is not None else math.nan,
        "reward_last10": metrics["reward/mean"].tail(10).mean(), "entropy_last10": metrics["policy/entropy"].tail(10).mean(),
        "grad_norm_max": metrics[norm_col].max(), "grad_norm_spikes": grad_norm_spikes(metrics[norm_col]),
    }
    for key, how in OFFPOLICY_KEYS.items():  # NaN when the run had no off-policy mini-batch (M = 1)
        col = metrics[key].dropna() if key in metrics else pd.Series(dtype=float)
        row[key] = (col.max() if how == "max" else col.mean()) if len(col) else math.nan
    return row


def stability_table(grid: Grid, profile_dir: str | Path) -> pd.DataFrame:
    """One row per run of ``grid`` (:func:`summarize_run`); raises naming ``make sweep`` when a run is unfinished."""
    folders = [sweep_dir(profile_dir) / name for name, _ in runs(grid)]
    missing = [f.name for f in folders if not (f / "final.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(folders)} runs of sweep {grid.name!r} are unfinished under {sweep_dir(profile_dir)} "
            f"(e.g. {missing[0]}); run `make sweep SWEEP={grid.name}` first"
        )
    return pd.DataFrame([summarize_run(f, grid.collapse) for f in folders])


def load_sweep_metrics(grid: Grid, profile_dir: str | Path) -> pd.DataFrame:
    """Every logged step of every run of ``grid`` that has started, with columns run, method,
    minibatches, lr, seed beside the metrics (the final validation is one more row at ``step = steps``)."""
    frames = []
    for name, ov in runs(grid):
        folder = sweep_dir(profile_dir) / name
        if not (folder / "metrics.jsonl").exists():
            continue
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        if (folder / "final.json").exists():
            rows.append(json.loads((folder / "final.json").read_text()))
        frames.append(pd.DataFrame(rows).assign(run=name, method=ov["method"], minibatches=ov["minibatches_per_step"],
                                                lr=ov["learning_rate"], seed=ov["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_sweep_weight_samples(grid: Grid, profile_dir: str | Path, min_minibatches: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-rollout and per-token weight samples (``weight_samples.jsonl``: the last mini-batch of each
    evaluation step) of the runs with at least ``min_minibatches`` mini-batches -- off-policy ones.

    Returns ``(rollouts, tokens)`` like :func:`~rewards_as_labels.results.load_weight_samples`, with
    the run's method, minibatches, lr and seed on each row.
    """
    roll, tok = [], []
    for name, ov in runs(grid):
        path = sweep_dir(profile_dir) / name / "weight_samples.jsonl"
        if ov["minibatches_per_step"] < min_minibatches or not path.exists():
            continue
        key = {"method": ov["method"], "minibatches": ov["minibatches_per_step"], "lr": ov["learning_rate"], "seed": ov["seed"]}
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            roll.append(pd.DataFrame({k: rec[k] for k in ("s", "label", "w_real", "w_grad")}).assign(step=rec["step"], **key))
            tok.append(pd.DataFrame({k: rec[k] for k in ("s_token", "a_token", "w_grpo")}).assign(step=rec["step"], **key))
    empty = pd.DataFrame()
    return (pd.concat(roll, ignore_index=True) if roll else empty, pd.concat(tok, ignore_index=True) if tok else empty)


def cell_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, M, lr) cell: seeds, mean and sd over seeds of final and best pass@1, collapse rate."""
    g = table.groupby(["method", "minibatches", "lr"])
    out = g.agg(seeds=("seed", "count"), final_mean=("final_pass@1", "mean"), final_sd=("final_pass@1", "std"),
                best_mean=("best_pass@1", "mean"), collapse_rate=("collapsed", "mean"))
    return out.reset_index()


def paired_cells(grid: Grid, profile_dir: str | Path, reference: str = "grpo", **bootstrap) -> pd.DataFrame:
    """Each method's difference in final validation pass@1 to ``reference`` in every (M, lr) cell, with
    the paired bootstrap interval of :func:`~rewards_as_labels.results.paired_bootstrap` (paired by
    validation problem and seed: every run of a cell answers the same problems with the same seeds)
    and its verdict. One row per (method, minibatches, lr); ``diff``/``low``/``high`` in pass@1 units.
    Runs without per-problem counts in ``final.json`` (no final validation) are left out.
    """
    rows, finals = [], {}
    for name, ov in runs(grid):
        path = sweep_dir(profile_dir) / name / "final.json"
        final = json.loads(path.read_text()) if path.exists() else {}
        if "eval/per_problem_correct" in final:
            samples = json.loads((path.parent / "config.json").read_text())["eval_samples"]
            key = (ov["method"], ov["minibatches_per_step"], ov["learning_rate"])
            finals.setdefault(key, {})[ov["seed"]] = (final["eval/problem_ids"], np.asarray(final["eval/per_problem_correct"]) / samples)
    for (method, m, lr), by_seed in sorted(finals.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        ref = finals.get((reference, m, lr), {})
        seeds = sorted(set(by_seed) & set(ref))
        if method == reference or not seeds:
            continue
        for s in seeds:
            if by_seed[s][0] != ref[s][0]:
                raise ValueError(f"cell M={m}, lr={lr}, seed {s}: {method} and {reference} were validated on other problems")
        a = np.stack([by_seed[s][1] for s in seeds])  # [seeds, problems]
        b = np.stack([ref[s][1] for s in seeds])  # [seeds, problems]
        ci = paired_bootstrap(a, b, **bootstrap)
        rows.append({"method": method, "minibatches": m, "lr": lr, "seeds": len(seeds), "diff": ci["diff"],
                     "low": ci["low"], "high": ci["high"], "verdict": verdict(ci["low"], ci["high"], method, reference)})
    return pd.DataFrame(rows)
