"""The stability sweep: a named grid of short, ordinary training runs over (method, M, lr, seed),
and the per-run table that says where each method breaks.

A grid is a small YAML file, ``configs/sweeps/<name>.yaml`` (``./configs/sweeps/`` first, then the
package's own): the base ``profile``, ``steps``, the axes ``methods``, ``minibatches`` (M, optimiser
mini-batches per rollout batch: the first is on-policy, the other M - 1 off-policy), ``learning_rates``,
``seeds`` and optionally ``grad_clips`` (``fixed``, ``off``, ``relative``: Config.grad_clip; default
``[fixed]``), the fixed ``prompts_per_minibatch``, fixed ``overrides`` of every run, and the ``collapse``
rule's parameters. :func:`runs` expands it into run names and their config overrides; the Makefile's
targets of ``make sweep`` and ``make study`` come from the same function (:mod:`rewards_as_labels.makevars`
writes them, one target and its overrides per run).

Runs live in ``runs/<profile>/sweep/<name>``
(``<method>-m<M>-p<prompts per mini-batch>-lr<lr>-<clip>-n<steps>-s<seed>``), so grids that share a cell
share its run, and the profile's own ``<method>-s<seed>`` runs are left alone.

Off-policy without shrinking the batch: every run of a grid updates on mini-batches of the same
``prompts_per_minibatch`` prompts, and takes M of them per rollout batch (``prompts_per_step`` = M x
prompts_per_minibatch), as the release scales it (32 prompts per mini-batch, 4 per rollout batch). So
M changes how far the later updates are off-policy, not how noisy each update is.

Each run is scored by :func:`~rewards_as_labels.results.last_evals`: the mean validation pass@1 of its
last ``LAST_K_EVALS`` evaluations (the final one included), which one checkpoint's noise cannot swing.

Collapse (:func:`collapse_step`): the batch reward (fraction of the step's P x n rollouts that are
correct) stays at or below ``reward_below`` (default 0.02) for ``steps`` (default 10) consecutive
steps; the collapse step is the first of them. Why this rule: a group whose rollouts are all wrong
gives every one of the five methods a zero gradient (one-label groups carry no signal), so once almost
every group is all-wrong the policy has nothing to climb back with -- the state a pre-package experiment
reached at lr 1e-3 (pass@1 below 3% within 25 steps, never recovering; docs/measurements.md), and the
default grid's runs reach at lr 1e-3 with M >= 4 in every seed (README, "The stability map"). 2% of
256 rollouts is 5 correct ones, far below the warm start's ~15%, and 10 steps in a row rule out one unlucky batch.
Entropy is not used: a collapsed tiny policy can stay high-entropy (it samples wrong digits at random).
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

from .config import GRAD_CLIPS, METHODS, PACKAGE_PROFILES, USER_PROFILES, load_config
from .io import read_jsonl
from .methods import OFFPOLICY_KEYS
from .results import (
    concat_weight_samples,
    last_evals,
    paired_bootstrap,
    paired_difference_table,
    run_metrics,
    run_weight_samples,
    select_learning_rates,
    verdict,
)

GRID_FIELDS = (
    "profile",
    "steps",
    "methods",
    "minibatches",
    "prompts_per_minibatch",
    "learning_rates",
    "seeds",
    "grad_clips",
    "overrides",
    "collapse",
)
OPTIONAL_FIELDS = {"grad_clips", "overrides", "collapse"}
CELL = ("method", "minibatches", "lr", "grad_clip")  # what identifies a cell of the stability map
SPIKE_FACTOR = 5.0  # a step's largest mini-batch gradient norm above 5x the run's median (non-zero steps) is a spike


@dataclass
class Grid:
    """One named sweep grid (fields as in the YAML file; see the module docstring)."""

    name: str
    profile: str
    steps: int
    methods: list[str]
    minibatches: list[int]
    prompts_per_minibatch: int
    learning_rates: list[float]
    seeds: list[int]
    grad_clips: list[str] = field(default_factory=lambda: ["fixed"])
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
    missing = sorted(set(GRID_FIELDS) - OPTIONAL_FIELDS - set(raw))
    if unknown or missing:
        raise ValueError(
            f"sweep grid {path}: unknown keys {unknown}, missing keys {missing}; keys are {', '.join(GRID_FIELDS)}"
        )
    bad = [m for m in raw["methods"] if m not in METHODS]
    if bad:
        raise ValueError(f"sweep grid {path}: unknown methods {bad}; valid methods: {', '.join(METHODS)}")
    grid = Grid(name=name, **{k: raw[k] for k in GRID_FIELDS if k in raw})
    grid.learning_rates = [float(lr) for lr in grid.learning_rates]
    grid.grad_clips = ["off" if c is False else c for c in grid.grad_clips]  # YAML 1.1 reads a bare `off` as false
    bad = [c for c in grid.grad_clips if c not in GRAD_CLIPS]
    if bad:
        raise ValueError(f"sweep grid {path}: unknown grad_clips {bad}; valid: {', '.join(GRAD_CLIPS)}")
    taken = sorted({"minibatches_per_step", "prompts_per_step", "grad_clip"} & set(grid.overrides or {}))
    if taken:
        raise ValueError(f"sweep grid {path}: overrides {taken} are set by the grid's axes; remove them from overrides")
    grid.overrides = dict(grid.overrides or {})
    grid.collapse = dict(grid.collapse or {})
    return grid


def run_name(method: str, minibatches: int, prompts: int, lr: float, clip: str, seed: int, steps: int) -> str:
    """Folder name of one sweep run.

    >>> run_name("real", 4, 16, 6e-4, "fixed", 1, 100)
    'real-m4-p16-lr0.0006-fixed-n100-s1'
    """
    return f"{method}-m{minibatches}-p{prompts}-lr{lr:g}-{clip}-n{steps}-s{seed}"


def runs(grid: Grid) -> list[tuple[str, dict]]:
    """Every run of ``grid`` as ``(run_name, config overrides)``, method-major; each config is
    checked here, so a bad grid fails before any training.

    >>> [name for name, _ in runs(load_grid("smoke"))][:2]
    ['real-m1-p2-lr0.0003-fixed-n2-s0', 'real-m1-p2-lr0.0003-off-n2-s0']
    """
    out = []
    axes = product(grid.methods, grid.minibatches, grid.learning_rates, grid.grad_clips, grid.seeds)
    for method, M, lr, clip, seed in axes:
        overrides = {
            **grid.overrides,
            "method": method,
            "seed": seed,
            "minibatches_per_step": M,
            "prompts_per_step": M * grid.prompts_per_minibatch,
            "learning_rate": lr,
            "grad_clip": clip,
            "total_steps": grid.steps,
        }
        load_config(profile=grid.profile, overrides=overrides)  # raises a ValueError naming the bad field
        out.append((run_name(method, M, grid.prompts_per_minibatch, lr, clip, seed, grid.steps), overrides))
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
    metrics = pd.DataFrame(read_jsonl(folder / "metrics.jsonl"))
    final = json.loads((folder / "final.json").read_text())
    evals = metrics["eval/pass@1"].dropna().tolist() if "eval/pass@1" in metrics else []
    final_pass = final.get("eval/pass@1", math.nan)
    step = collapse_step(metrics["reward/mean"], **(collapse or {}))
    norm_col = "train/grad_norm_max" if "train/grad_norm_max" in metrics else "train/grad_norm"
    M = cfg["minibatches_per_step"]
    row = {
        "run": folder.name,
        "method": cfg["method"],
        "lr": cfg["learning_rate"],
        "minibatches": M,
        "prompts_per_minibatch": cfg["prompts_per_step"] // M,
        "grad_clip": cfg.get("grad_clip", "fixed"),
        "seed": cfg["seed"],
        "steps": cfg["total_steps"],
        "val_score": float(last_evals(folder)[1].mean()) if "eval/per_problem_correct" in final else math.nan,
        "final_pass@1": final_pass,
        "best_pass@1": max([*evals, final_pass]) if evals or not math.isnan(final_pass) else math.nan,
        "collapsed": step is not None,
        "collapse_step": step if step is not None else math.nan,
        "reward_last10": metrics["reward/mean"].tail(10).mean(),
        "entropy_last10": metrics["policy/entropy"].tail(10).mean(),
        "grad_norm_max": metrics[norm_col].max(),
        "grad_norm_spikes": grad_norm_spikes(metrics[norm_col]),
        "grad_norm_median": metrics["train/grad_norm"].median(),
        # how often the gradient clip scaled an update down (NaN for runs logged before it was recorded)
        "clip_bound_frac": metrics["train/clip_bound_frac"].mean() if "train/clip_bound_frac" in metrics else math.nan,
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
            f"{len(missing)} of {len(folders)} runs of sweep {grid.name!r} are unfinished "
            f"under {sweep_dir(profile_dir)} "
            f"(e.g. {missing[0]}); run `make sweep SWEEP={grid.name}` first"
        )
    return pd.DataFrame([summarize_run(f, grid.collapse) for f in folders])


def load_sweep_metrics(grid: Grid, profile_dir: str | Path) -> pd.DataFrame:
    """Every logged step of every run of ``grid`` that has started (:func:`~rewards_as_labels.results.run_metrics`),
    with columns run, method, minibatches, lr, grad_clip, seed beside the metrics (the final validation is one more
    row at ``step = steps``)."""
    frames = []
    for name, ov in runs(grid):
        folder = sweep_dir(profile_dir) / name
        if (folder / "metrics.jsonl").exists():
            frames.append(run_metrics(folder).assign(run=name, **_cell_keys(ov)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_sweep_weight_samples(
    grid: Grid, profile_dir: str | Path, min_minibatches: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-rollout and per-token weight samples (``weight_samples.jsonl``: the last mini-batch of each
    evaluation step) of the runs with at least ``min_minibatches`` mini-batches -- off-policy ones.

    Returns ``(rollouts, tokens)`` like :func:`~rewards_as_labels.results.load_weight_samples`, with
    the run's method, minibatches, lr, grad_clip and seed on each row.
    """
    parts = [
        (*run_weight_samples(sweep_dir(profile_dir) / name), _cell_keys(ov))
        for name, ov in runs(grid)
        if ov["minibatches_per_step"] >= min_minibatches
    ]
    return concat_weight_samples(parts)


def _cell_keys(overrides: dict) -> dict:
    """A sweep run's grid coordinates, as the columns its rows carry."""
    return {
        "method": overrides["method"],
        "minibatches": overrides["minibatches_per_step"],
        "lr": overrides["learning_rate"],
        "grad_clip": overrides["grad_clip"],
        "seed": overrides["seed"],
    }


def cell_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, M, lr, clip) cell: seeds, mean and sd over seeds of the validation score (mean of the
    last evaluations), final and best pass@1, collapse rate, and how often the clip bound."""
    g = table.groupby(list(CELL))
    out = g.agg(
        seeds=("seed", "count"),
        score_mean=("val_score", "mean"),
        score_sd=("val_score", "std"),
        final_mean=("final_pass@1", "mean"),
        best_mean=("best_pass@1", "mean"),
        collapse_rate=("collapsed", "mean"),
        clip_bound_frac=("clip_bound_frac", "mean"),
    )
    return out.reset_index()


def paired_cells(grid: Grid, profile_dir: str | Path, reference: str = "grpo", **bootstrap) -> pd.DataFrame:
    """Each method's difference in validation score to ``reference`` in every (M, lr, clip) cell: per
    problem the fraction correct over the run's last evaluations (:func:`~rewards_as_labels.results.last_evals`),
    paired by validation problem and seed (every run of a cell answers the same problems with the same
    seeds), with the hierarchical interval of :func:`~rewards_as_labels.results.paired_bootstrap` (seeds,
    then problems) and its verdict. One row per (method, minibatches, lr, grad_clip); ``diff``/``low``/``high``
    in pass@1 units. Runs without per-problem validation are left out.
    """
    rows, scores = [], {}
    for name, ov in runs(grid):
        folder = sweep_dir(profile_dir) / name
        if (folder / "final.json").exists() and "eval/per_problem_correct" in json.loads(
            (folder / "final.json").read_text()
        ):
            key = (ov["method"], ov["minibatches_per_step"], ov["learning_rate"], ov["grad_clip"])
            scores.setdefault(key, {})[ov["seed"]] = last_evals(folder)
    for (method, m, lr, clip), by_seed in sorted(
        scores.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0])
    ):
        ref = scores.get((reference, m, lr, clip), {})
        seeds = sorted(set(by_seed) & set(ref))
        if method == reference or not seeds:
            continue
        for s in seeds:
            if by_seed[s][0] != ref[s][0]:
                raise ValueError(
                    f"cell M={m}, lr={lr}, clip={clip}, seed {s}: "
                    f"{method} and {reference} were validated on other problems"
                )
        a = np.stack([by_seed[s][1] for s in seeds])  # [seeds, problems]
        b = np.stack([ref[s][1] for s in seeds])  # [seeds, problems]
        ci = paired_bootstrap(a, b, **bootstrap)
        rows.append(
            {
                "method": method,
                "minibatches": m,
                "lr": lr,
                "grad_clip": clip,
                "seeds": len(seeds),
                "diff": ci["diff"],
                "low": ci["low"],
                "high": ci["high"],
                "verdict": verdict(ci["low"], ci["high"], method, reference),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- protocol studies: test scores of grid runs
def per_problem_on_test(grid: Grid, profile_dir: str | Path) -> pd.DataFrame:
    """Every run's test evaluation (``<run>/test.json``, written by ``python -m rewards_as_labels test``):
    one row per (run, benchmark, problem) with method, seed (a string, as in ``per_problem.csv``), lr,
    grad_clip, minibatches, ``correct`` of ``samples`` draws and ``pass@1``. Raises naming ``make study``
    when a run has no test evaluation yet."""
    frames, missing = [], []
    for name, ov in runs(grid):
        path = sweep_dir(profile_dir) / name / "test.json"
        if not path.exists():
            missing.append(name)
            continue
        res = json.loads(path.read_text())
        for bench, b in res["benchmarks"].items():
            frames.append(
                pd.DataFrame(
                    {
                        "run": name,
                        "method": ov["method"],
                        "seed": str(ov["seed"]),
                        "lr": ov["learning_rate"],
                        "grad_clip": ov["grad_clip"],
                        "minibatches": ov["minibatches_per_step"],
                        "benchmark": bench,
                        "problem_id": b["problem_ids"],
                        "correct": b["per_problem_correct"],
                        "samples": res["samples"],
                    }
                )
            )
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} runs of grid {grid.name!r} have no test evaluation (e.g. {missing[0]}); "
            f"run `make study STUDY={grid.name}` first"
        )
    df = pd.concat(frames, ignore_index=True)
    return df.assign(**{"pass@1": df["correct"] / df["samples"]})


def protocol_comparison(grid: Grid, profile_dir: str | Path, reference: str = "grpo", **bootstrap) -> pd.DataFrame:
    """Each method against ``reference`` on the TEST split under both learning-rate protocols, per (M, gradient clip).

    * ``one lr``: the paper's protocol, every method at the profile's learning rate (it must be on the grid);
    * ``tuned lr``: each method at its own best learning rate of the grid, chosen on VALIDATION
      (:func:`~rewards_as_labels.results.select_learning_rates` on each run's validation score, the mean of
      its last evaluations) and then scored on test with the same budget (steps, seeds). Only with >= 2 lrs.

    Differences and intervals are those of :func:`~rewards_as_labels.results.paired_difference_table`
    (hierarchical bootstrap: seeds, then test problems). One row per (protocol, grad_clip, method):
    ``lr`` used, ``test_pass@1`` (mean over seeds and problems), ``diff``/``low``/``high`` to the reference
    in pass@1 units (NaN for the reference), ``seeds`` and ``verdict``; per M of the grid as well.
    """
    paper_lr = load_config(profile=grid.profile).learning_rate
    if paper_lr not in grid.learning_rates:
        raise ValueError(
            f"grid {grid.name!r} must include its profile's learning rate {paper_lr:g} (the one-lr protocol); "
            f"it has {grid.learning_rates}"
        )
    runs_table, pp = stability_table(grid, profile_dir), per_problem_on_test(grid, profile_dir)
    out = []
    for M, clip in product(grid.minibatches, grid.grad_clips):
        cell_runs, cell = (
            runs_table[(runs_table.minibatches == M) & (runs_table.grad_clip == clip)],
            pp[(pp.minibatches == M) & (pp.grad_clip == clip)],
        )
        choices = {"one lr": {m: paper_lr for m in grid.methods}}
        if len(grid.learning_rates) > 1:
            choices["tuned lr"] = select_learning_rates(cell_runs)
        for protocol, chosen in choices.items():
            sel = pd.concat([cell[(cell.method == m) & (cell.lr == lr)] for m, lr in chosen.items()])
            scores = sel.groupby("method")["pass@1"].mean()
            table = paired_difference_table(sel, reference=reference, **bootstrap)
            for m in grid.methods:
                row = table.loc[m].to_dict() if m in table.index else {"seeds": sel[sel.method == m].seed.nunique()}
                out.append(
                    {
                        "protocol": protocol,
                        "minibatches": M,
                        "grad_clip": clip,
                        "method": m,
                        "lr": chosen[m],
                        "test_pass@1": scores.get(m, math.nan),
                        **row,
                    }
                )
    cols = [
        "protocol",
        "minibatches",
        "grad_clip",
        "method",
        "lr",
        "test_pass@1",
        "diff",
        "low",
        "high",
        "seeds",
        "verdict",
    ]
    return pd.DataFrame(out).reindex(columns=cols)
