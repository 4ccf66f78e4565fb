"""Read what training and evaluation saved, as tidy DataFrames for the figure notebook.

Nothing here trains or evaluates: ``make figures`` only reads ``runs/<profile>/``.
Run folders are recognised by their ``metrics.jsonl`` and named ``<method>-s<seed>``
(:func:`~rewards_as_labels.config.run_name`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .config import METHODS, parse_run_name


def run_folders(profile_dir: str | Path) -> list[Path]:
    """Run folders under ``profile_dir``, in the paper's method order then seed (other names last)."""
    found = [p.parent for p in Path(profile_dir).glob("*/metrics.jsonl")]
    order = {m: i for i, m in enumerate(METHODS)}

    def key(folder: Path):
        try:
            method, seed = parse_run_name(folder.name)
        except ValueError:
            return len(METHODS) + 1, folder.name, 0
        return order.get(method, len(METHODS)), method, seed

    return sorted(found, key=key)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_metrics(profile_dir: str | Path) -> pd.DataFrame:
    """One row per (run, step) with every logged metric; columns ``method``, ``seed``, ``step``, ...

    A finished run's ``final.json`` (the validation after the last step, at ``step = total_steps``)
    is one more row holding only its ``eval/*`` values, so held-out curves end at the trained policy.
    Raises ``FileNotFoundError`` naming ``make train`` when there is no run to read.
    """
    folders = run_folders(profile_dir)
    if not folders:
        raise FileNotFoundError(f"no run folders with metrics.jsonl under {profile_dir}; run `make train-all` first")
    frames = []
    for p in folders:
        rows = _read_jsonl(p / "metrics.jsonl")
        if (p / "final.json").exists():
            rows.append(json.loads((p / "final.json").read_text()))
        frames.append(pd.DataFrame(rows).assign(run=p.name))
    return pd.concat(frames, ignore_index=True)


def load_weight_samples(profile_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-rollout and per-token gradient-weight samples saved by training.

    Returns ``(rollouts, tokens)``: ``rollouts`` has columns method, seed, step, s, label,
    w_real, w_grad; ``tokens`` has method, seed, step, s_token, a_token, w_grpo.
    """
    roll, tok = [], []
    for folder in run_folders(profile_dir):
        path = folder / "weight_samples.jsonl"
        if not path.exists():
            continue
        for rec in _read_jsonl(path):
            key = {"method": rec["method"], "seed": parse_run_name(folder.name)[1], "step": rec["step"]}
            roll.append(pd.DataFrame({k: rec[k] for k in ("s", "label", "w_real", "w_grad")}).assign(**key))
            tok.append(pd.DataFrame({k: rec[k] for k in ("s_token", "a_token", "w_grpo")}).assign(**key))
    empty = pd.DataFrame()
    return (pd.concat(roll, ignore_index=True) if roll else empty, pd.concat(tok, ignore_index=True) if tok else empty)


def mean_std_table(df: pd.DataFrame, value_cols: list[str], by: str = "method") -> pd.DataFrame:
    """``mean ± std`` over seeds of each value column, one row per ``by`` (paper's method order);
    a single value (one seed, or the base model) is printed alone, since it has no spread.

    >>> df = pd.DataFrame({"method": ["real", "real", "grad"], "acc": [0.2, 0.4, 0.5]})
    >>> mean_std_table(df, ["acc"])["acc"].to_dict()
    {'real': '0.300 ± 0.141', 'grad': '0.500'}
    """
    agg = df.groupby(by)[value_cols].agg(["mean", "std", "count"])
    out = pd.DataFrame(index=agg.index)
    for col in value_cols:
        mean, std, count = agg[(col, "mean")], agg[(col, "std")], agg[(col, "count")]
        out[col] = [f"{m:.3f} ± {s:.3f}" if c > 1 else f"{m:.3f}" for m, s, c in zip(mean, std, count)]
    out["seeds"] = agg[(value_cols[0], "count")].astype(int)
    order = [m for m in ["base", *METHODS] if m in out.index]
    return out.loc[order + [m for m in out.index if m not in order]]


def gain_over_base(evaluation: pd.DataFrame, metric: str = "pass@1") -> pd.DataFrame:
    """Points (x100) of ``metric`` each method gains over the base model: mean, spread over seeds,
    worst and best seed (``evaluation``: one row per model, the base's method is "base").

    >>> ev = pd.DataFrame({"method": ["base", "real", "real"], "pass@1": [0.2, 0.3, 0.5]})
    >>> gain_over_base(ev).round(1).to_dict("index")["real"]["gain over base (mean)"]
    20.0
    """
    base = evaluation.loc[evaluation.method == "base", metric].iloc[0]
    trained = evaluation[evaluation.method != "base"]
    gain = trained.groupby("method", sort=False)[metric].agg(["mean", "std", "min", "max"]).sub([base, 0, base, base], axis=1)
    gain.columns = ["gain over base (mean)", "std over seeds", "worst seed gain", "best seed gain"]
    return (100 * gain).rename_axis(f"{metric} points")
