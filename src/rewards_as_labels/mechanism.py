"""The paper's mechanism, measured per token on the runs' own off-policy mini-batches (notebook 07).

Nothing here trains: every function reads what training saved, as DataFrames from
:mod:`rewards_as_labels.results` (``load_metrics``, ``load_weight_samples``):

- ``metrics``: one row per (run, step); the ``offpolicy/*`` scalars of
  :func:`~rewards_as_labels.methods.offpolicy_stats`, logged on every step with M >= 2;
- ``rollouts`` / ``tokens``: the samples of each evaluation step's last (most off-policy)
  mini-batch (:func:`~rewards_as_labels.methods.weight_samples`), joined on
  (method, seed, step, rollout).

The quantities:

- :func:`indexed`: the records that saved rollout indices (older runs did not);
- :func:`tokens_with_rollouts`: each token with its rollout's s_i, label and length, and
  ``s_within = s_t - s_i`` (where the token sits inside its own response);
- :func:`rollout_spread`: per rollout, the standard deviation of s_t around s_i -- what REAL's
  sequence score averages away, and what longer answers let grow;
- :func:`binned`: binned means with a quantile band (a cloud of points hides the trend);
- :func:`concentration`: the share of GRPO's negative-token weight that the top fraction of
  tokens carries (:func:`~rewards_as_labels.methods.top_share`, the top 1% is
  ``offpolicy/grpo_token/neg_top1pct_share``), with what equal weights would give;
- :func:`method_curves`: a metric over steps per run, smoothed, and its mean over seeds;
- :func:`mechanism_table`: the scalar mechanism metrics per method (``tables/mechanism.csv``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import METHODS
from .io import FIX_SPACE, write_error
from .methods import OFFPOLICY_KEYS, top_share

JOIN = ["method", "seed", "step", "rollout"]  # a rollout of one weight-samples record
DYNAMICS = {  # what the table keeps of the training dynamics: (column, which steps, how many)
    "policy/entropy": (("first", 10), ("last", 10)),
    "groups/all_correct_frac": (("first", 10), ("last", 10)),
    "reward/mean": (("first", 10), ("last", 10)),
    "eval/pass@1": (("last", 3),),
}


def _need(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing} (it has {list(df.columns)}); weight_samples.jsonl written before rollout "
            "indices were saved cannot be joined: retrain those runs (make train-all after removing their folders)"
        )


def indexed(rollouts: pd.DataFrame, tokens: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``(rollouts, tokens, dropped)``: the samples of records that saved rollout indices (``rollout``,
    ``length``), which the per-rollout joins need, and how many records had none (written by an older
    version; their other columns still serve the per-token and per-rollout plots).

    >>> r = pd.DataFrame({"method": "real", "seed": 0, "step": [0, 10], "s": [0.1, 0.2], "rollout": [0, None],
    ...                   "length": [1, None]})
    >>> t = pd.DataFrame({"method": "real", "seed": 0, "step": [0, 10], "s_token": [0.1, 0.2], "rollout": [0, None]})
    >>> [len(x) if isinstance(x, pd.DataFrame) else x for x in indexed(r, t)]
    [1, 1, 1]
    """
    if "rollout" not in rollouts or "length" not in rollouts or "rollout" not in tokens:
        records = rollouts[["method", "seed", "step"]].drop_duplicates() if len(rollouts) else rollouts
        return rollouts.iloc[:0], tokens.iloc[:0], len(records)
    keep_r, keep_t = rollouts["rollout"].notna() & rollouts["length"].notna(), tokens["rollout"].notna()
    dropped = len(rollouts.loc[~keep_r, ["method", "seed", "step"]].drop_duplicates())
    ints = {"rollout": int, "length": int}
    return rollouts[keep_r].astype(ints), tokens[keep_t].astype({"rollout": int}), dropped


def tokens_with_rollouts(rollouts: pd.DataFrame, tokens: pd.DataFrame) -> pd.DataFrame:
    """``tokens`` with their rollout's ``s``, ``label`` and ``length`` joined on (method, seed, step,
    rollout), and ``s_within = s_token - s`` (s is the mean of the rollout's s_t, so s_within sums to 0
    within a rollout). Raises ``ValueError`` when a column is missing (samples that predate rollout
    indices) or a token's rollout is not among the rollouts (the two frames are not of one record).

    >>> r = pd.DataFrame({"method": "grpo", "seed": 0, "step": 0, "rollout": [3], "s": [0.1], "label": [1],
    ...                   "length": [2]})
    >>> t = pd.DataFrame({"method": "grpo", "seed": 0, "step": 0, "rollout": [3, 3], "s_token": [0.3, -0.1]})
    >>> tokens_with_rollouts(r, t)["s_within"].round(3).tolist()
    [0.2, -0.2]
    """
    _need(rollouts, [*JOIN, "s", "label", "length"], "rollouts")
    _need(tokens, [*JOIN, "s_token"], "tokens")
    joined = tokens.merge(rollouts[[*JOIN, "s", "label", "length"]], on=JOIN, how="left", validate="many_to_one")
    if joined["s"].isna().any():
        lost = joined.loc[joined["s"].isna(), JOIN].drop_duplicates().head(3).to_dict("records")
        raise ValueError(
            f"tokens whose rollout is not among the rollout samples, e.g. {lost}; "
            "pass the rollouts and tokens of the same load_weight_samples call"
        )
    return joined.assign(s_within=joined["s_token"] - joined["s"])


def rollout_spread(rollouts: pd.DataFrame, tokens: pd.DataFrame) -> pd.DataFrame:
    """One row per sampled rollout: its keys, ``label``, ``length``, ``s`` and ``spread``, the standard
    deviation (ddof 0) of its tokens' s_t around s_i (0 for a one-token answer). Their mean over a
    mini-batch's rollouts is ``offpolicy/s_token_spread``. Raises ``ValueError`` when a rollout's
    sampled tokens do not number its ``length`` (a partial record).

    >>> r = pd.DataFrame({"method": "real", "seed": 0, "step": 0, "rollout": [0, 1], "s": [0.1, 0.5],
    ...                   "label": [1, 0], "length": [2, 1]})
    >>> t = pd.DataFrame({"method": "real", "seed": 0, "step": 0, "rollout": [0, 0, 1], "s_token": [0.3, -0.1, 0.5]})
    >>> rollout_spread(r, t)["spread"].round(3).tolist()
    [0.2, 0.0]
    """
    joined = tokens_with_rollouts(rollouts, tokens)
    per = (
        joined.assign(sq=joined["s_within"] ** 2)
        .groupby(JOIN, sort=False)
        .agg(tokens=("sq", "size"), spread=("sq", "mean"))
    )
    out = rollouts.merge(per.reset_index(), on=JOIN, how="left")
    out["tokens"] = out["tokens"].fillna(0).astype(int)
    bad = out["tokens"] != out["length"]
    if bad.any():
        row = out.loc[bad].iloc[0]
        raise ValueError(
            f"rollout {row[JOIN].to_dict()} has {row['tokens']} sampled tokens but length "
            f"{row['length']}; the weight samples are incomplete"
        )
    return out.assign(spread=np.sqrt(out["spread"])).drop(columns="tokens")


def binned(x, y, bins: int = 10, band: tuple[float, float] = (0.1, 0.9), min_per_bin: int = 10) -> pd.DataFrame:
    """Means of ``y`` in bins of ``x``, with a band of ``y``'s quantiles ``band`` in each bin.

    When ``x`` takes at most ``bins`` distinct values (response lengths of short answers), each value
    held by at least ``min_per_bin`` points is its own bin (rarer values are left out); otherwise the
    bins hold about equal numbers of points (quantile bins: resolution where the points are; tied
    values stay in one bin, so there may be fewer), and at most ``len(x) // min_per_bin`` of them, so
    that no mean rests on a handful of points. Columns: ``x`` (the median x of the bin), ``mean``,
    ``lo``, ``hi``, ``count``; empty input gives an empty frame.

    >>> binned([1, 2, 3, 4], [10, 20, 30, 40], bins=2, min_per_bin=1)[["x", "mean", "count"]].to_dict("list")
    {'x': [1.5, 3.5], 'mean': [15.0, 35.0], 'count': [2, 2]}
    >>> binned([3, 4, 4, 5], [1, 2, 4, 6], bins=10, min_per_bin=1)[["x", "mean", "count"]].to_dict("list")  # per length
    {'x': [3.0, 4.0, 5.0], 'mean': [1.0, 3.0, 6.0], 'count': [1, 2, 1]}
    """
    if bins < 1 or min_per_bin < 1 or not 0 <= band[0] <= band[1] <= 1:
        raise ValueError(
            f"need bins >= 1, min_per_bin >= 1 and 0 <= band[0] <= band[1] <= 1, got bins={bins}, "
            f"min_per_bin={min_per_bin}, band={band}"
        )
    df = pd.DataFrame({"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float)}).dropna()
    if df.empty:
        return pd.DataFrame(columns=["x", "mean", "lo", "hi", "count"])
    if df["x"].nunique() <= bins:
        df = df[df.groupby("x")["x"].transform("size") >= min_per_bin]
        key = df["x"]
    else:
        key = pd.qcut(df["x"], max(1, min(bins, len(df) // min_per_bin)), labels=False, duplicates="drop")
    groups = df.groupby(key)
    out = pd.DataFrame(
        {
            "x": groups["x"].median(),
            "mean": groups["y"].mean(),
            "lo": groups["y"].quantile(band[0]),
            "hi": groups["y"].quantile(band[1]),
            "count": groups["y"].size(),
        }
    )
    return out.reset_index(drop=True)


def concentration(
    tokens: pd.DataFrame, fractions=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), side: str = "neg", weight: str = "w_grpo"
) -> pd.DataFrame:
    """For each record (method, seed, step) and each top ``fraction`` of its ``side``'s tokens (``neg``:
    A < 0, ``pos``: A > 0), the share of their total ``weight`` those tokens carry (:func:`top_share`,
    the top ceil(fraction * N), at least one), and ``equal``: what equal weights would give.
    Records whose tokens carry no weight are left out.

    >>> t = pd.DataFrame({"method": "grpo", "seed": 0, "step": 0, "a_token": -1.0, "w_grpo": [5.0, 1.0, 1.0, 1.0]})
    >>> concentration(t, fractions=(0.25, 1.0))[["fraction", "share", "equal"]].to_dict("list")
    {'fraction': [0.25, 1.0], 'share': [0.625, 1.0], 'equal': [0.25, 1.0]}
    """
    if side not in ("neg", "pos"):
        raise ValueError(f"side must be 'neg' or 'pos', got {side!r}")
    _need(tokens, ["method", "seed", "step", "a_token", weight], "tokens")
    picked = tokens[tokens["a_token"] < 0] if side == "neg" else tokens[tokens["a_token"] > 0]
    rows = []
    for (method, seed, step), g in picked.groupby(["method", "seed", "step"], sort=False):
        w = torch.tensor(g[weight].to_numpy(dtype=float))  # a copy: pandas may hand out a read-only array
        for f in fractions:
            share = top_share(w, f)
            if share is not None:
                k = math.ceil(round(f * len(w), 9))
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "step": step,
                        "tokens": len(w),
                        "fraction": f,
                        "share": share,
                        "equal": k / len(w),
                    }
                )
    return pd.DataFrame(rows, columns=["method", "seed", "step", "tokens", "fraction", "share", "equal"])


def method_curves(metrics: pd.DataFrame, column: str, window: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs, means)`` of ``column`` over steps: ``runs`` has one row per (run, step) where it was
    logged, with ``value`` and ``smooth`` (a trailing rolling mean over ``window`` logged points of that
    run); ``means`` the mean and standard deviation over seeds of ``smooth`` per (method, step), and how
    many seeds logged it. A column no run logged gives empty frames.

    >>> m = pd.DataFrame({"run": ["a", "a", "b", "b"], "method": "real", "seed": [0, 0, 1, 1], "step": [0, 1, 0, 1],
    ...                   "x": [1.0, 3.0, 3.0, 5.0]})
    >>> method_curves(m, "x", window=2)[1][["step", "mean", "seeds"]].to_dict("list")
    {'step': [0, 1], 'mean': [2.0, 3.0], 'seeds': [2, 2]}
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    cols = ["run", "method", "seed", "step"]
    if column not in metrics:
        return (
            pd.DataFrame(columns=[*cols, "value", "smooth"]),
            pd.DataFrame(columns=["method", "step", "mean", "sd", "seeds"]),
        )
    runs = metrics[[*cols, column]].dropna(subset=[column]).rename(columns={column: "value"})
    runs = runs.sort_values(["run", "step"])
    runs["smooth"] = runs.groupby("run")["value"].transform(lambda v: v.rolling(window, min_periods=1).mean())
    means = runs.groupby(["method", "step"], sort=False)["smooth"].agg(["mean", "std", "count"]).reset_index()
    means = means.rename(columns={"std": "sd", "count": "seeds"})
    order = {m: i for i, m in enumerate(METHODS)}
    means = means.sort_values(
        ["method", "step"], key=lambda c: c.map(order).fillna(len(order)) if c.name == "method" else c
    ).reset_index(drop=True)
    return runs.reset_index(drop=True), means


def _per_run(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: each off-policy metric's mean over the steps that logged it, and the dynamics."""
    rows = []
    for run, g in metrics.sort_values("step").groupby("run", sort=False):
        row = {
            "method": g["method"].iloc[0],
            "run": run,
            "offpolicy_steps": int(g["offpolicy/s_abs_max"].notna().sum()) if "offpolicy/s_abs_max" in g else 0,
        }
        for key in OFFPOLICY_KEYS:
            col = g[key].dropna() if key in g else pd.Series(dtype=float)
            row[key] = col.mean() if len(col) else math.nan
        for col, parts in DYNAMICS.items():
            values = g[col].dropna() if col in g else pd.Series(dtype=float)
            for where, k in parts:
                part = values.head(k) if where == "first" else values.tail(k)
                row[f"{col} ({where} {k})"] = part.mean() if len(part) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def mechanism_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The scalar mechanism metrics per method, long format, for ``tables/mechanism.csv``.

    Each run's value of an ``offpolicy/*`` metric is its mean over the run's off-policy steps (every
    step that logged it; absent when M = 1 or no group held both labels); the dynamics rows are the
    mean of the first / last logged points (``policy/entropy (last 10)``: the last 10 steps;
    ``eval/pass@1 (last 3)``: the last 3 validations). Columns: ``metric``, ``method``, ``mean`` and
    ``sd`` over runs, ``runs`` (runs that logged it) and ``offpolicy_steps`` (their off-policy steps).
    Rows follow :data:`~rewards_as_labels.methods.OFFPOLICY_KEYS`, then the dynamics, methods in the
    paper's order.

    >>> m = pd.DataFrame({"run": ["real-s0", "real-s1"], "method": "real", "seed": [0, 1], "step": 0,
    ...                   "offpolicy/s_abs_max": [0.2, 0.4]})
    >>> mechanism_table(m).round(3).iloc[0][["metric", "method", "mean", "sd", "runs", "offpolicy_steps"]].to_dict()
    {'metric': 'offpolicy/s_abs_max', 'method': 'real', 'mean': 0.3, 'sd': 0.141, 'runs': 2, 'offpolicy_steps': 2}
    """
    _need(metrics, ["run", "method", "step"], "metrics")
    per_run = _per_run(metrics)
    names = [c for c in per_run.columns if c not in ("method", "run", "offpolicy_steps")]
    present = list(dict.fromkeys(per_run["method"]))
    methods = [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]
    rows = []
    for name in names:
        for method in methods:
            g = per_run[(per_run["method"] == method) & per_run[name].notna()]
            rows.append(
                {
                    "metric": name,
                    "method": method,
                    "mean": g[name].mean() if len(g) else math.nan,
                    "sd": g[name].std() if len(g) > 1 else math.nan,
                    "runs": len(g),
                    "offpolicy_steps": int(g["offpolicy_steps"].sum()) if name.startswith("offpolicy/") else 0,
                }
            )
    return pd.DataFrame(rows, columns=["metric", "method", "mean", "sd", "runs", "offpolicy_steps"])


def save_figure(fig, folder: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (150 dpi) and ``.pdf``, each to a temporary name in the
    folder renamed into place (a reader never sees half a figure); returns the two paths. A failed write
    raises ``OSError`` naming the file, and leaves the previous figure as it was."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        tmp = folder / f".{name}.{ext}.tmp-{os.getpid()}"
        try:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=150)
            os.replace(tmp, path)
        except OSError as exc:
            raise write_error(exc, f"could not write {path}", f"{path} is unchanged; {FIX_SPACE}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(path)
    return paths
