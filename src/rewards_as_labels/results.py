"""Read what training and evaluation saved, as tidy DataFrames for the figure notebook.

Nothing here trains or evaluates: ``make figures`` only reads ``runs/<profile>/``.
Run folders are recognised by their ``metrics.jsonl`` and named ``<method>-s<seed>``
(:func:`~rewards_as_labels.config.run_name`), or ``trl-<method>-s<seed>`` for a run that TRL's
trainer made (``make train-trl``); how the two engines are told apart and keyed in the tables:
:mod:`~rewards_as_labels.run_names`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import METHODS
from .io import atomic_write_text, read_jsonl
from .run_names import ENGINES, arm, arm_order, parse_run, reference_arm


def run_folders(profile_dir: str | Path) -> list[Path]:
    """Run folders under ``profile_dir``: our trainer's first, then each other engine's
    (:data:`~rewards_as_labels.run_names.ENGINES`), each in the paper's method order then seed; other names last."""
    found = [p.parent for p in Path(profile_dir).glob("*/metrics.jsonl")]
    order = {m: i for i, m in enumerate(METHODS)}

    def key(folder: Path):
        try:
            run = parse_run(folder.name)
        except ValueError:
            return len(ENGINES), 0, folder.name, 0
        return ENGINES.index(run.engine), order[run.method], run.method, run.seed

    return sorted(found, key=key)


def run_metrics(folder: str | Path) -> pd.DataFrame:
    """One row per logged step of the run in ``folder`` (``metrics.jsonl``), plus, once the run has
    finished, its ``final.json`` (the validation after the last step, at ``step = total_steps``) as one
    more row holding only its ``eval/*`` values, so held-out curves end at the trained policy."""
    folder = Path(folder)
    rows = read_jsonl(folder / "metrics.jsonl")
    if (folder / "final.json").exists():
        rows.append(json.loads((folder / "final.json").read_text()))
    return pd.DataFrame(rows)


# weight_samples.jsonl's lists -> their column; token_rollout becomes "rollout",
# the key that joins a token to its rollout
WEIGHT_SAMPLE_COLUMNS = {
    "rollouts": {
        "s": "s",
        "label": "label",
        "w_real": "w_real",
        "w_grad": "w_grad",
        "rollout": "rollout",
        "length": "length",
    },
    "tokens": {"s_token": "s_token", "a_token": "a_token", "w_grpo": "w_grpo", "token_rollout": "rollout"},
}


def run_weight_samples(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rollouts, tokens)`` of the run in ``folder`` (``weight_samples.jsonl``: the last mini-batch
    of each evaluation step), each row tagged with its ``step`` and ``method``; two empty frames without
    columns when the run saved none. Columns: those of :data:`WEIGHT_SAMPLE_COLUMNS` the run saved,
    plus step and method."""
    path = Path(folder) / "weight_samples.jsonl"
    records = read_jsonl(path) if path.exists() else []
    frames = {
        kind: [
            pd.DataFrame({col: rec[k] for k, col in cols.items() if k in rec}).assign(
                step=rec["step"], method=rec["method"]
            )
            for rec in records
        ]
        for kind, cols in WEIGHT_SAMPLE_COLUMNS.items()
    }
    return tuple(pd.concat(f, ignore_index=True) if f else pd.DataFrame() for f in frames.values())


def load_metrics(profile_dir: str | Path) -> pd.DataFrame:
    """One row per (run, step) with every logged metric (:func:`run_metrics`); columns ``run``,
    ``method``, ``seed``, ``step``, ``engine``, ``algorithm``, ... ``method`` is the run's arm (the
    method, or ``trl-<method>`` for a TRL run: :mod:`~rewards_as_labels.run_names`), ``algorithm`` the
    method alone. Raises ``FileNotFoundError`` naming ``make train-all`` when there is no run to read.
    """
    folders = run_folders(profile_dir)
    if not folders:
        raise FileNotFoundError(f"no run folders with metrics.jsonl under {profile_dir}; run `make train-all` first")
    return pd.concat([run_metrics(p).assign(run=p.name, **_run_keys(p.name)) for p in folders], ignore_index=True)


def _run_keys(name: str) -> dict:
    """The columns that key a run folder's rows: its arm as ``method``, ``engine`` and ``algorithm``
    (nothing for a folder that is not named as a run)."""
    try:
        run = parse_run(name)
    except ValueError:
        return {}
    return {"method": run.arm, "engine": run.engine, "algorithm": run.method}


ROLLOUT_SAMPLES = ("s", "label", "w_real", "w_grad", "rollout", "length")  # weight_samples.jsonl's per-rollout lists
# weight_samples.jsonl's per-token lists -> their column (token_rollout becomes "rollout", the join key)
TOKEN_SAMPLES = {"s_token": "s_token", "a_token": "a_token", "w_grpo": "w_grpo", "token_rollout": "rollout"}


def load_weight_samples(profile_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-rollout and per-token gradient-weight samples saved by training (:func:`run_weight_samples`).

    Returns ``(rollouts, tokens)``: ``rollouts`` has columns s, label, w_real, w_grad, rollout, length,
    step, method, seed; ``tokens`` has s_token, a_token, w_grpo, rollout, step, method, seed. ``rollout``
    is the rollout's row in its mini-batch in both, so (method, seed, step, rollout) joins a token to its
    rollout (:func:`rewards_as_labels.mechanism.tokens_with_rollouts`). Samples written before rollout
    indices were saved lack ``rollout`` and ``length``.
    """
    parts = [(folder, run_weight_samples(folder)) for folder in run_folders(profile_dir)]
    return concat_weight_samples([(r, t, {"seed": parse_run(folder.name).seed}) for folder, (r, t) in parts])


def concat_weight_samples(parts: list[tuple[pd.DataFrame, pd.DataFrame, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(rollouts, tokens)`` of several runs (``(rollouts, tokens, keys)`` each, from :func:`run_weight_samples`)
    as one pair of frames, each run's rows tagged with its ``keys`` as columns."""
    # a run with samples but no rows (no group held both labels) still gives the frames their columns
    roll = [r.assign(**key) for r, _, key in parts if len(r.columns)]
    tok = [t.assign(**key) for _, t, key in parts if len(t.columns)]
    return (
        pd.concat(roll, ignore_index=True) if roll else pd.DataFrame(),
        pd.concat(tok, ignore_index=True) if tok else pd.DataFrame(),
    )


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
    if not (evaluation.method == "base").any():
        raise ValueError(
            f"no 'base' row among the evaluated models {sorted(set(evaluation.method))}; "
            "run `make evaluate`, which evaluates the base model first"
        )
    base = evaluation.loc[evaluation.method == "base", metric].iloc[0]
    trained = evaluation[evaluation.method != "base"]
    gain = (
        trained.groupby("method", sort=False)[metric]
        .agg(["mean", "std", "min", "max"])
        .sub([base, 0, base, base], axis=1)
    )
    gain.columns = ["gain over base (mean)", "std over seeds", "worst seed gain", "best seed gain"]
    return (100 * gain).rename_axis(f"{metric} points")


# ----------------------------------------------------------------------------- robust scores and lr selection
LAST_K_EVALS = 3  # a run's validation score: the mean of its last 3 evaluations (the final one included)


def last_evals(folder: str | Path, k: int = LAST_K_EVALS) -> tuple[list[str], np.ndarray]:
    """``(problem_ids, fraction correct per problem)`` averaged over the run's last ``k`` validation
    evaluations (``metrics.jsonl``'s evaluation rows, then ``final.json``): the score that one noisy
    checkpoint cannot swing (between evaluations 10 steps apart a tiny run's pass@1 moved by up to 10
    points). Raises ``ValueError`` naming the run when it has no per-problem evaluation."""
    folder = Path(folder)
    rows = read_jsonl(folder / "metrics.jsonl") if (folder / "metrics.jsonl").exists() else []
    final = folder / "final.json"
    if final.exists():
        rows.append(json.loads(final.read_text()))
    rows = [r for r in rows if "eval/per_problem_correct" in r][-k:]
    if not rows:
        raise ValueError(
            f"{folder}: no validation with per-problem counts (eval_every > 0 and a run of this "
            "version are needed); retrain it"
        )
    ids = rows[-1]["eval/problem_ids"]
    if any(r["eval/problem_ids"] != ids for r in rows):
        raise ValueError(f"{folder}: its evaluations answered different validation problems; retrain it")
    samples = json.loads((folder / "config.json").read_text())["eval_samples"]
    return ids, np.mean([r["eval/per_problem_correct"] for r in rows], axis=0) / samples


def select_learning_rates(scan: pd.DataFrame, score: str = "val_score") -> dict[str, float]:
    """The tuned protocol's choice: per method, the learning rate whose runs have the highest mean
    ``score`` over seeds -- a VALIDATION column; ties go to the smaller lr. Only ``method``, ``lr`` and
    ``score`` are read, so test results cannot leak into the choice (a test checks it).

    >>> scan = pd.DataFrame({"method": ["real"] * 4, "lr": [1e-4, 1e-4, 3e-4, 3e-4], "seed": [0, 1, 0, 1],
    ...                      "val_score": [0.30, 0.34, 0.40, 0.20], "test_pass@1": [0.9, 0.9, 0.1, 0.1]})
    >>> select_learning_rates(scan)
    {'real': 0.0001}
    """
    if score.startswith("test"):
        raise ValueError(f"learning rates are chosen on validation, never on test; got score={score!r}")
    missing = {"method", "lr", score} - set(scan.columns)
    if missing:
        raise ValueError(f"the lr scan table lacks columns {sorted(missing)}; it has {list(scan.columns)}")
    means = scan[["method", "lr", score]].groupby(["method", "lr"])[score].mean().reset_index()
    means = means.sort_values(["method", score, "lr"], ascending=[True, False, True])
    return {m: float(g["lr"].iloc[0]) for m, g in means.groupby("method", sort=False)}


BASE_RULE = "gain > seed spread and every seed above base"


def base_verdicts(evaluation: pd.DataFrame, metric: str = "pass@1") -> pd.DataFrame:
    """Whether each method is *clearly above the base model* in ``metric``: its mean gain exceeds the
    spread over seeds (the sd; 0 with one seed) **and** every seed ends above the base. A gain inside the
    seed spread, or one seed at or below the base, is "not clearly above": with 2-3 seeds that is what a
    rerun can undo (README, "How much a rerun moves").

    ``evaluation``: one row per model, the base's method "base" (``tables/evaluation.csv``). One row per
    trained method (paper's order) with ``mean`` and ``base`` (``metric``, 0-1), ``gain`` and ``sd``
    (points), ``clearly_above`` and ``verdict`` (the sentence the figure notebook prints).

    >>> ev = pd.DataFrame({"method": ["base", "real", "real", "grpo", "grpo"], "pass@1": [0.2, 0.3, 0.32, 0.1, 0.5]})
    >>> base_verdicts(ev)[["gain", "clearly_above"]].round(1).to_dict("index")
    {'real': {'gain': 11.0, 'clearly_above': True}, 'grpo': {'gain': 10.0, 'clearly_above': False}}
    """
    gains = gain_over_base(evaluation, metric)  # points
    base = evaluation.loc[evaluation.method == "base", metric].iloc[0]
    sd = gains["std over seeds"].fillna(0.0)  # one seed: no spread to beat
    clear = (gains["gain over base (mean)"] > sd) & (gains["worst seed gain"] > 0)
    out = pd.DataFrame(
        {
            "mean": base + gains["gain over base (mean)"] / 100,
            "base": base,
            "gain": gains["gain over base (mean)"],
            "sd": sd,
            "clearly_above": clear.astype(bool),
            "verdict": np.where(clear, f"clearly above the base ({BASE_RULE})", "not clearly above the base"),
        }
    )
    order = [m for m in METHODS if m in out.index]
    return out.loc[order + [m for m in out.index if m not in order]].rename_axis("method")


# ----------------------------------------------------------------------------- paired statistics
CANNOT_TELL = "cannot be told apart at this budget"


def paired_bootstrap(
    a,
    b,
    *,
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    paired: bool = True,
    hierarchical: bool = True,
) -> dict:
    """Bootstrap confidence interval of ``mean(a) - mean(b)``, paired by problem and seed.

    ``a`` and ``b`` hold one statistic per (seed, problem) of two methods, shape ``[seeds, problems]``
    (a 1-D array is one seed), e.g. each problem's fraction of correct samples; row ``s`` of both is
    the same seed and column ``p`` the same problem. The estimate is the mean over seeds and problems
    of the difference ``d = a - b``; pairing cancels how hard each problem is.

    ``hierarchical=True`` (the default) resamples what varies between two reruns of the study, in
    two levels: a replicate draws ``seeds`` seeds with replacement (training runs: trajectory and
    checkpoint noise), then, for each drawn seed, ``problems`` problems with replacement (the test
    draw), and averages ``d`` over both. So seeds that disagree widen the interval, which a
    problems-only bootstrap cannot show. With 3 seeds there are only 10 distinct seed draws: the
    seed level is coarse, and ``seeds`` is reported beside every interval for that reason.
    ``hierarchical=False`` keeps the seeds fixed and draws one set of problem indices for every
    seed (the interval conditional on the trained runs). ``paired=False`` (with
    ``hierarchical=False``) resamples the two methods' problems independently (for comparison only).

    Returns ``{"diff", "low", "high", "confidence", "n_boot", "replicates"}`` (``replicates``:
    ``[n_boot]``); deterministic given ``seed`` (a ``numpy.random.Generator``).
    Raises ``ValueError`` when the shapes differ or a value is not finite.

    >>> a = np.array([[1.0, 0.5, 0.0, 1.0, 0.5, 1.0, 0.5, 0.0],    # seed 0: 8 problems
    ...               [1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 1.0, 0.5]])   # seed 1
    >>> r = paired_bootstrap(a, a - 0.25 * (a > 0), hierarchical=False)  # b: 0.25 lower wherever a is not 0
    >>> round(r["diff"], 4), round(r["low"], 4), round(r["high"], 4), verdict(r["low"], r["high"], "a", "b")
    (0.2031, 0.1406, 0.25, 'a better than b')
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = (a[None, :] if a.ndim == 1 else a), (b[None, :] if b.ndim == 1 else b)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(
            f"a and b must be [seeds, problems] arrays of one shape, got {a.shape} and {b.shape}; "
            "pair them by seed and problem first (paired_difference_table does)"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite; a NaN usually means a problem missing from one run")
    if n_boot < 1 or not 0 < confidence < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < confidence < 1, got {n_boot} and {confidence}")
    if hierarchical and not paired:
        raise ValueError("the hierarchical bootstrap is paired; pass hierarchical=False with paired=False")
    S, n = a.shape
    rng = np.random.default_rng(seed)
    uniform = np.full(n, 1.0 / n)
    d = a - b  # [seeds, problems]
    if hierarchical:
        drawn = rng.integers(S, size=(n_boot, S))  # [n_boot, S]: the seeds of each replicate
        replicates = np.zeros(n_boot)
        for j in range(S):  # one drawn seed slot at a time: [n_boot, problems] arrays, not [n_boot, S, problems]
            counts = rng.multinomial(n, uniform, size=n_boot)  # [n_boot, problems]: fresh problems for this slot
            replicates += (counts * d[drawn[:, j]]).sum(axis=1) / n
        replicates /= S
    else:
        counts = rng.multinomial(n, uniform, size=n_boot)  # [n_boot, problems]: times each problem is drawn
        if paired:
            replicates = counts @ d.mean(axis=0) / n  # [n_boot]
        else:
            counts_b = rng.multinomial(n, uniform, size=n_boot)  # [n_boot, problems]
            replicates = (counts @ a.mean(axis=0) - counts_b @ b.mean(axis=0)) / n  # [n_boot]
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        "diff": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "confidence": confidence,
        "n_boot": n_boot,
        "replicates": replicates,
    }


def verdict(low: float, high: float, name_a: str, name_b: str) -> str:
    """What an interval of ``a - b`` says: which is better, or that they cannot be told apart.

    >>> verdict(-0.01, 0.03, "real", "grpo"), verdict(0.01, 0.03, "real", "grpo")
    ('cannot be told apart at this budget', 'real better than grpo')
    """
    if low <= 0 <= high:
        return CANNOT_TELL
    return f"{name_a} better than {name_b}" if low > 0 else f"{name_b} better than {name_a}"


def load_per_problem(profile_dir: str | Path) -> pd.DataFrame:
    """``tables/per_problem.csv`` (written by ``make evaluate``): one row per (method, seed,
    benchmark, problem_id) with ``correct`` of ``samples`` draws and ``pass@1 = correct / samples``.
    ``profile_dir`` may also name the CSV file itself (a committed copy, ``results/<profile>/per_problem.csv``).
    Raises ``FileNotFoundError`` naming ``make evaluate`` when it is missing."""
    path = Path(profile_dir)
    path = path if path.suffix == ".csv" else path / "tables" / "per_problem.csv"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; run `make evaluate` (notebook 04) to write it "
            "(`make -B evaluate` when evaluation.csv predates per_problem.csv)"
        )
    df = pd.read_csv(path, dtype={"seed": str, "benchmark": str, "problem_id": str})
    return df.assign(**{"pass@1": df["correct"] / df["samples"]})


def paired_arrays(
    per_problem: pd.DataFrame, method: str, reference: str, value: str = "pass@1"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(a, b, seeds)``: ``value`` of ``method`` and ``reference`` as ``[seeds, problems]`` arrays,
    rows the seeds both have (sorted), columns the problems in one order. ``per_problem`` has columns
    method, seed, problem_id, ``value``. Raises ``ValueError`` naming what does not match: a method
    with no rows, seeds that only one method has, or problems missing from a run."""
    tables = {}
    for m in (method, reference):
        rows = per_problem[per_problem["method"] == m]
        if rows.empty:
            raise ValueError(
                f"no per-problem rows for method {m!r}; methods present: {sorted(set(per_problem['method']))}"
            )
        if rows.duplicated(["seed", "problem_id"]).any():
            raise ValueError(f"method {m!r} has a (seed, problem_id) twice; filter per_problem to one benchmark first")
        tables[m] = rows.pivot(index="seed", columns="problem_id", values=value)
    ta, tb = tables[method], tables[reference]
    if set(ta.index) != set(tb.index):
        raise ValueError(
            f"seeds differ: {method} has {sorted(ta.index)}, {reference} has {sorted(tb.index)}; "
            "pairing needs the same seeds (train the missing runs or drop the extra ones)"
        )
    if set(ta.columns) != set(tb.columns) or ta.isna().any().any() or tb.isna().any().any():
        raise ValueError(
            f"{method} and {reference} did not answer the same problems in every seed; rerun `make evaluate`"
        )
    seeds = sorted(ta.index, key=lambda s: (len(s), s))
    cols = sorted(ta.columns)
    return ta.loc[seeds, cols].to_numpy(), tb.loc[seeds, cols].to_numpy(), seeds


def paired_difference_table(
    per_problem: pd.DataFrame,
    reference: str = "grpo",
    value: str = "pass@1",
    methods: list[str] | None = None,
    **bootstrap,
) -> pd.DataFrame:
    """Each method's difference in ``value`` to ``reference`` with a paired bootstrap interval and a verdict.

    One row per method other than ``reference`` (and "base"), each against the ``reference`` run of its
    own engine (:func:`~rewards_as_labels.run_names.reference_arm`: ``trl-real`` against ``trl-grpo``;
    an engine without its reference run is left out unless ``methods`` names it): ``diff`` (mean over seeds and
    problems, in the units of ``value``), ``low`` / ``high`` (the interval of
    :func:`paired_bootstrap`), ``seeds`` and ``verdict``. With several benchmarks each is
    resampled on its own and the replicates averaged, like the macro average (Avg) of the tables.
    ``bootstrap``: keyword arguments of :func:`paired_bootstrap` (n_boot, confidence, seed).

    >>> pp = pd.DataFrame({"method": ["grpo"] * 4 + ["real"] * 4, "seed": ["0", "0", "1", "1"] * 2,
    ...                    "benchmark": "test", "problem_id": ["p1", "p2"] * 4,
    ...                    "pass@1": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]})
    >>> paired_difference_table(pp, n_boot=100).loc["real"].to_dict()
    {'diff': 0.0, 'low': 0.0, 'high': 0.0, 'seeds': 2, 'verdict': 'cannot be told apart at this budget'}
    """
    if "benchmark" not in per_problem:
        per_problem = per_problem.assign(benchmark="test")
    arms = set(per_problem["method"])
    if methods is None:  # every arm that has its own engine's reference (a TRL run: TRL's GRPO run)
        methods = [m for m in arm_order(arms) if m != "base" and reference_arm(m, reference) in arms - {m}]
    rows = {}
    for m in methods:
        ref = reference_arm(m, reference)
        pairs = [paired_arrays(g, m, ref, value) for _, g in per_problem.groupby("benchmark", sort=False)]
        diff, low, high = _macro_interval(pairs, **bootstrap)
        rows[m] = {
            "diff": diff,
            "low": low,
            "high": high,
            "seeds": len(pairs[0][2]),
            "verdict": verdict(low, high, m, ref),
        }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["diff", "low", "high", "seeds", "verdict"])


# ----------------------------------------------------------------------------- the comparison table (make figures)
def comparison_table(
    evaluation: pd.DataFrame, paired: pd.DataFrame | None = None, reference: str = "grpo"
) -> pd.DataFrame:
    """The final comparison that ``make figures`` writes (``tables/comparison.csv``): per model, mean ± sd
    over seeds of pass@1, pass@k and greedy (:func:`mean_std_table`, base first), and, given ``paired``
    (:func:`paired_difference_table` against ``reference``), each method's difference in pass@1 to
    ``reference`` in points with its interval, and the verdict.

    ``evaluation``: ``tables/evaluation.csv`` (one row per model; columns method, pass@1, pass@<k>, greedy).
    Raises ``ValueError`` when it has no pass@k column (k > 1).

    >>> ev = pd.DataFrame({"method": ["base", "real", "real", "grpo"], "pass@1": [0.2, 0.3, 0.5, 0.4],
    ...                    "pass@8": [0.5, 0.6, 0.7, 0.6], "greedy": [0.3, 0.4, 0.5, 0.4]})
    >>> paired = pd.DataFrame({"diff": [0.01], "low": [-0.02], "high": [0.04], "seeds": [1], "verdict": [CANNOT_TELL]},
    ...                       index=["real"])
    >>> comparison_table(ev, paired).loc["real"].astype(str).tolist()[:5]
    ['0.400 ± 0.141', '0.650 ± 0.071', '0.450 ± 0.071', '2', '+1.0 [-2.0, +4.0]']
    """
    k_cols = [c for c in evaluation if c.startswith("pass@") and c != "pass@1"]
    if not k_cols:
        raise ValueError(
            f"evaluation has no pass@k column (k > 1) among {list(evaluation.columns)}; "
            "rerun `make evaluate` (test_samples must be > 1)"
        )
    table = mean_std_table(evaluation, ["pass@1", k_cols[0], "greedy"])
    if paired is not None:
        diff_col, verdict_col = f"pass@1 − {reference} (points, 95% CI: seeds, then problems)", f"vs {reference}"
        table[diff_col], table[verdict_col] = "", ""
        for m, r in paired.iterrows():
            table.loc[m, diff_col] = f"{100 * r['diff']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
            table.loc[m, verdict_col] = r["verdict"]
        for ref in {reference_arm(m, reference) for m in paired.index} | {reference}:
            if ref in table.index:
                table.loc[ref, verdict_col] = "(reference)"
    return table


def _macro_interval(pairs: list[tuple[np.ndarray, np.ndarray, list]], **bootstrap) -> tuple[float, float, float]:
    """``(diff, low, high)`` of ``mean(a) - mean(b)`` over the benchmarks of ``pairs`` (one
    :func:`paired_arrays` triple each): one benchmark's :func:`paired_bootstrap` interval, or for several
    the macro average's, averaging the benchmarks' replicates one by one."""
    parts = [paired_bootstrap(a, b, **bootstrap) for a, b, _ in pairs]
    if len(parts) == 1:
        low, high = parts[0]["low"], parts[0]["high"]
    else:
        replicates = np.mean([p["replicates"] for p in parts], axis=0)  # [n_boot]
        conf = parts[0]["confidence"]
        low, high = np.quantile(replicates, [(1 - conf) / 2, (1 + conf) / 2])
    return float(np.mean([p["diff"] for p in parts])), float(low), float(high)


def engine_comparison(
    per_problem: pd.DataFrame, engine: str = "trl", value: str = "pass@1", **bootstrap
) -> pd.DataFrame:
    """Do the two engines agree? Per method that both our trainer and ``engine`` trained: ``engine``'s
    runs minus ours in ``value``, paired by seed and problem over the seeds both have, with the
    hierarchical interval of :func:`paired_bootstrap` and its verdict. Rows indexed by method; columns
    ``ours`` and ``<engine>`` (the two means over those seeds), ``diff``, ``low``, ``high``, ``seeds``,
    ``verdict``. Empty when no method was trained by both.
    """
    if "benchmark" not in per_problem:
        per_problem = per_problem.assign(benchmark="test")
    rows = {}
    for method in METHODS:
        theirs = arm(engine, method)
        seeds = set(per_problem.seed[per_problem.method == method]) & set(
            per_problem.seed[per_problem.method == theirs]
        )
        if not seeds:
            continue
        shared = per_problem[per_problem.seed.isin(seeds)]
        pairs = [paired_arrays(g, theirs, method, value) for _, g in shared.groupby("benchmark", sort=False)]
        diff, low, high = _macro_interval(pairs, **bootstrap)
        rows[method] = {
            "ours": float(np.mean([b.mean() for _, b, _ in pairs])),
            engine: float(np.mean([a.mean() for a, _, _ in pairs])),
            "diff": diff,
            "low": low,
            "high": high,
            "seeds": len(seeds),
            "verdict": verdict(low, high, engine, "ours"),
        }
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["ours", engine, "diff", "low", "high", "seeds", "verdict"]
    )


def engine_table(comparison: pd.DataFrame, engine: str = "trl") -> pd.DataFrame:
    """:func:`engine_comparison`'s rows as printed: each mean to 3 decimals, the difference in points with
    its interval, the seeds and the verdict."""
    return pd.DataFrame(
        {
            "ours pass@1": comparison["ours"].map("{:.3f}".format),
            f"{engine} pass@1": comparison[engine].map("{:.3f}".format),
            f"{engine} − ours (points, 95% CI: seeds, then problems)": [
                f"{100 * r['diff']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
                for _, r in comparison.iterrows()
            ],
            "seeds": comparison["seeds"],
            "verdict": comparison["verdict"],
        },
        index=comparison.index.rename("method"),
    )


def write_comparison(table: pd.DataFrame, tables_dir: str | Path, name: str = "comparison") -> list[Path]:
    """Write a table (:func:`comparison_table`'s, or :func:`engine_table`'s with ``name="engines"``) as
    ``<name>.csv`` and ``<name>.md`` in ``tables_dir`` (atomically; the Markdown keeps the numbers as
    printed). Returns the two paths."""
    tables_dir = Path(tables_dir)
    try:
        markdown = table.to_markdown(disable_numparse=True)
    except ImportError:  # pandas needs `tabulate` for Markdown; plain text still reads
        markdown = table.to_string()
    return [
        atomic_write_text(tables_dir / f"{name}.csv", table.to_csv()),
        atomic_write_text(tables_dir / f"{name}.md", markdown),
    ]


# ----------------------------------------------------------------------------- headroom
SOLVED_RATE = 7 / 8  # a method "solves" a problem when at least this share of its samples (all seeds) is correct
SATURATED_SHARE = 0.8  # the task saturates when at least this share of problems is decided alike for every method


def headroom(
    per_problem: pd.DataFrame, solved: float = SOLVED_RATE, saturated_share: float = SATURATED_SHARE
) -> tuple[pd.DataFrame, dict]:
    """How much of the test set can still tell the trained methods apart (every arm but ``base``).

    Per problem (benchmark and problem id), each method's solve rate is its correct samples over all its
    seeds' samples. A problem is *solved by every method* when each rate is >= ``solved``, *solved by
    none* when no sample of any trained run is correct; only the rest can separate the methods. The task
    **saturates** when the first two together are >= ``saturated_share`` of the problems: the methods'
    means then differ on a few problems at most, whatever the training did.

    Returns ``(table, summary)``: one row per arm (base first) with its pass@1, the share of problems it
    solves in at least one sample and in >= ``solved`` of them; and the shares, counts, ``saturated`` and
    ``sentence`` (the finding in words, with the rule)."""
    pp = per_problem.assign(key=per_problem["benchmark"].astype(str) + "/" + per_problem["problem_id"].astype(str))
    sums = pp.groupby(["method", "key"])[["correct", "samples"]].sum()
    rate = (sums["correct"] / sums["samples"]).unstack("method")  # [problem, arm]
    arms = [m for m in dict.fromkeys(pp["method"]) if m != "base"]
    if not arms:
        raise ValueError(
            "headroom needs trained runs besides the base in per_problem.csv; run make evaluate after training"
        )
    trained = rate[arms]
    n = len(rate)
    by_all = int((trained.min(axis=1) >= solved).sum())
    by_none = int((trained.max(axis=1) == 0).sum())
    left = n - by_all - by_none
    table = pd.DataFrame(
        {
            "pass@1": rate.mean(),
            "solved at least once": (rate > 0).mean(),
            f"solved in >= {solved:g} of samples": (rate >= solved).mean(),
        }
    ).loc[[m for m in ["base"] if m in rate] + arms]
    table.index.name = "method"
    saturated = (by_all + by_none) / n >= saturated_share
    lo, hi = table.loc[arms, "pass@1"].min(), table.loc[arms, "pass@1"].max()
    ceiling = float((trained.max(axis=1) > 0).mean())
    sentence = (
        f"The task {'saturates' if saturated else 'does not saturate'} for these methods: of {n} test problems, "
        f"{by_all / n:.0%} are solved by every method in at least {solved:g} of its samples and "
        f"{by_none / n:.0%} by no trained run in any sample, which leaves {left} ({left / n:.0%})"
        f" on which the methods can differ. Their pass@1 spans "
        f"{lo:.3f}-{hi:.3f} under a ceiling of {ceiling:.3f} (problems some trained run solved at least once). "
        f"(Rule: the task saturates when >= {saturated_share:.0%} of the problems are decided alike for every method.)"
    )
    summary = {
        "problems": n,
        "solved_by_every_method": by_all / n,
        "solved_by_none": by_none / n,
        "separating": left / n,
        "ceiling": ceiling,
        "saturated": saturated,
        "sentence": sentence,
    }
    return table, summary


def write_headroom(per_problem: pd.DataFrame, tables_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """:func:`headroom` as ``headroom.csv`` (the table) and ``headroom.md`` (the sentence, then the table)
    in ``tables_dir``, atomically. Returns what :func:`headroom` returns."""
    table, summary = headroom(per_problem)
    tables_dir = Path(tables_dir)
    atomic_write_text(tables_dir / "headroom.csv", table.to_csv())
    atomic_write_text(tables_dir / "headroom.md", summary["sentence"] + "\n\n" + table.round(3).to_markdown() + "\n")
    return table, summary
