"""The claims ledger: which of the paper's claims this package reproduces, where, and how sure it is.

One row per (claim, setting), built only from tables that runs wrote (nothing here trains or
evaluates). A setting is a shipped profile (:func:`ledger_profiles`: tiny, long, smollm2,
paper_small, ...; the test-only ``smoke`` profile is left out). Each table is read from
``runs/<profile>/tables/<file>`` when that run wrote it, else from the committed copy
``results/<profile>/<file>`` (``make publish``); the ``source`` column names the file. A claim whose
table is in neither place is ``not run``, and ``command`` says what would run it.

Columns (:data:`COLUMNS`): ``claim``, ``paper_evidence`` (docs/paper.md), ``setting``, ``protocol``
(where the number comes from: learning-rate protocol, gradient clip, score, seeds, interval; for a
protocol study the arm), ``measured``, ``verdict`` (one of :data:`VERDICTS`), ``source``, ``command``.

The verdict rules, one per kind of claim, each written once below:

* **pairwise** (:func:`pairwise_verdict`; "A beats B"): the 95% interval of A - B.
  ``reproduced`` when it lies entirely above 0, ``contradicted`` entirely below 0, else
  ``cannot be told apart``. On test pass@1 the difference is paired by seed and problem with the
  hierarchical bootstrap (seeds, then problems: :func:`results.paired_difference_table`, against the
  other method as reference); several benchmarks are macro-averaged replicate by replicate.
* **ordering** (:func:`ordering_verdict`; "A >= B >= C >= D"): each adjacent pair by the pairwise
  rule; ``reproduced`` when every pair is, ``contradicted`` when any pair is, else ``cannot be told
  apart``.
* **stability** ("REAL is more stable off-policy"): the pairwise rule on the stability sweep's
  validation score (``stability.csv``: the mean of a run's last 3 validations), REAL minus GRPO over
  every off-policy cell (M >= 2, every learning rate) of one gradient-clip arm, paired by cell and
  seed, interval from the same hierarchical bootstrap with cells in place of problems (seeds, then
  cells). A method that collapses more ends lower, so the score carries the collapses too.
* **entropy** (:func:`entropy_verdict`; "GRPO's entropy collapses while REAL's stays up"): per run
  the entropy *kept*, ``entropy_end / entropy_start`` (mean over the last 10% of logged steps, over
  the step-0 entropy: the same starting policy for every method; ``dynamics.csv``). A method
  *collapses* when its kept entropy, averaged over seeds, is below :data:`ENTROPY_COLLAPSE` = 0.2.
  ``reproduced`` when GRPO collapses, REAL does not, and REAL keeps more than GRPO in every seed
  both ran; ``contradicted`` when REAL collapses or keeps no more than GRPO in every seed; else
  ``cannot be told apart``. Why 0.2: the paper gives end values (GRPO about 0.02, REAL about 0.25),
  not starts; a threshold of 0.2 on the kept fraction separates the two for any starting entropy
  between 0.1 and 1.25 nats (0.02 / H0 < 0.2 < 0.25 / H0), and a ratio does not depend on the
  vocabulary's scale, which differs between our models.
* **weights** (:func:`weights_verdict`; "monotone in s and bounded by 1/tau"): the derivation's
  check -- notebook 01 writes ``derivation_checks.csv`` only when every assertion held, and the rows
  :data:`DERIVATION_CHECKS` (sympy signs of d|W|/ds, the per-class bound, and ``real_weights`` swept
  over s) must be there -- AND the largest |W| tau measured on real off-policy mini-batches below 1
  (``offpolicy/real/max_w_times_tau``, each run's max over its steps, from ``dynamics.csv`` and the
  sweep's ``stability.csv``). ``contradicted`` when the measured max reaches 1; ``reproduced`` when
  both hold; ``not run`` when either is missing.
* **per-token threshold** (:func:`threshold_verdict`; the mechanism of eq. (2) on GRPO's own runs,
  ``mechanism.csv``): the 95% Student-t interval over runs of a metric's per-run mean (mean, sd and
  runs from the table) against a threshold: ``reproduced`` when the interval lies above it,
  ``contradicted`` below it, else ``cannot be told apart`` (one run gives no interval). Misassignment
  among positives: ``offpolicy/grpo_token/pos_corr_w_s`` (correlation of a positive rollout's GRPO
  weight with its s) above 0, weight rising with s as eq. (2) says. Domination by a few negatives:
  ``offpolicy/grpo_token/neg_top1pct_share`` (the top 1% of negative tokens' share of GRPO's
  negative weight) above 0.5, i.e. that 1% outweighs the other 99% together -- the paper's "outweigh
  everything else".

Protocol studies (``protocols-<grid>.csv``, notebook 08) add one "REAL beats GRPO" row per arm
(lr protocol x gradient clip x M) by the pairwise rule on the table's interval, so a reader sees
whether the verdict survives each arm.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import METHODS, PACKAGE_PROFILES, USER_PROFILES, Config, load_config
from .io import atomic_write_text
from .results import load_per_problem, paired_bootstrap, paired_difference_table, run_folders, run_metrics
from .run_names import ENGINES
from .run_names import arm as run_arm
from .sweep import Grid, load_grid

COLUMNS = ["claim", "paper_evidence", "setting", "protocol", "measured", "verdict", "source", "command"]
REPRODUCED, CONTRADICTED, CANNOT_TELL, NOT_RUN = "reproduced", "contradicted", "cannot be told apart", "not run"
VERDICTS = (REPRODUCED, CONTRADICTED, CANNOT_TELL, NOT_RUN)
PROFILE_ORDER = ("tiny", "long", "smollm2", "paper_small")  # the settings' order in the ledger; others follow
SKIP_PROFILES = ("smoke",)  # seconds-long test profile: no claim is measured on it
ENTROPY_COLLAPSE = 0.2  # kept entropy (end / start) below this: collapsed (module docstring: why 0.2)
END_FRACTION = 0.1  # "the end of training": the last 10% of a run's logged steps
MISASSIGN_ABOVE = 0.0  # GRPO positives: weight rising with s (correlation > 0)
DOMINATE_ABOVE = 0.5  # GRPO negatives: the top 1% of tokens carry more than the other 99% together
CONFIDENCE = 0.95
DERIVATION_CHECKS = (  # notebook 01's rows that together are the derivation's "monotone and bounded"
    "d|W+|/ds_k < 0 (sympy, C > 0)",
    "d|W-|/ds_k > 0 (sympy, C > 0)",
    "real_weights, positive: <= 1/tau on the sweep",
    "real_weights, positive: monotone on the sweep",
    "real_weights, negative: <= 1/tau on the sweep",
    "real_weights, negative: monotone on the sweep",
    "1/tau - sum over O+ > 0 (sympy)",
    "1/tau - sum over O- > 0 (sympy)",
)
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom (no scipy in the pinned set)
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)

PAPER = {  # the paper's evidence per claim, from docs/paper.md
    "real_grpo": "Table 1 (1.5B): REAL .526 vs GRPO .431 avg pass@1 over six benchmarks; 7B: .632 vs .592",
    "ordering": "Table 1 (1.5B) avg: REAL .526 >= GSPO .519 >= DAPO .459 >= GRPO .431 (7B: DAPO .570 < GRPO .592)",
    "grad_dapo": "BCE ablation (1.5B): GRAD beats DAPO by 4.5 points avg",
    "entropy": "1.5B, 1,400 steps: GRPO's entropy falls to ~0.02 within 200 steps; REAL holds ~0.25",
    "stability": "1.5B, 4 mini-batches (3 off-policy): GRPO's validation turns down after ~step 400 while REAL's "
    "keeps climbing; eq. (5)'s bounded, monotone weights are the argument",
    "weights": "eq. (5): a positive's |W| falls and a negative's rises with s, and |W| < 1/tau for every s",
    "misassign": "eq. (2): a positive token's weight |A| e^(s_t) grows with s_t (unlikely correct tokens barely "
    "pushed) until the clip zeroes it",
    "dominate": "eq. (2): e^(s_t) is unbounded for A < 0, so a few confident wrong tokens can outweigh "
    "everything else in the update",
}
CLAIMS = {  # key -> the claim in words
    "real_grpo": "REAL beats GRPO",
    "ordering": "REAL >= GSPO >= DAPO >= GRPO (Table 1 ordering)",
    "grad_dapo": "GRAD (per-rollout BCE) beats DAPO",
    "entropy": "GRPO's entropy collapses while REAL's stays up",
    "stability": "REAL is more stable off-policy than GRPO",
    "weights": "REAL's weights are monotone in s and bounded by 1/tau",
    "misassign": "GRPO misassigns weight among positives",
    "dominate": "a few negative tokens dominate GRPO's update",
}


# ----------------------------------------------------------------------------- the verdict rules
def pairwise_verdict(low: float, high: float) -> str:
    """The pairwise rule on the interval of ``A - B`` for the claim "A beats B".

    >>> pairwise_verdict(0.01, 0.05), pairwise_verdict(-0.05, -0.01), pairwise_verdict(-0.01, 0.02)
    ('reproduced', 'contradicted', 'cannot be told apart')
    """
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"need a finite interval low <= high, got [{low}, {high}]")
    return REPRODUCED if low > 0 else CONTRADICTED if high < 0 else CANNOT_TELL


def ordering_verdict(pair_verdicts: list[str]) -> str:
    """The ordering rule: every adjacent pair reproduced -> reproduced; any contradicted -> contradicted.

    >>> ordering_verdict([REPRODUCED, REPRODUCED]), ordering_verdict([REPRODUCED, CANNOT_TELL, CONTRADICTED])
    ('reproduced', 'contradicted')
    >>> ordering_verdict([REPRODUCED, CANNOT_TELL])
    'cannot be told apart'
    """
    if not pair_verdicts or any(v not in VERDICTS[:3] for v in pair_verdicts):
        raise ValueError(f"need one measured verdict per adjacent pair, got {pair_verdicts}")
    if all(v == REPRODUCED for v in pair_verdicts):
        return REPRODUCED
    return CONTRADICTED if CONTRADICTED in pair_verdicts else CANNOT_TELL


def entropy_verdict(kept_real: dict, kept_grpo: dict, collapse: float = ENTROPY_COLLAPSE) -> str:
    """The entropy rule on the entropy kept (end / start) per seed of REAL and of GRPO.

    >>> entropy_verdict({0: 0.8, 1: 0.7}, {0: 0.05, 1: 0.1}), entropy_verdict({0: 0.3}, {0: 0.6})
    ('reproduced', 'contradicted')
    >>> entropy_verdict({0: 0.8, 1: 0.3}, {0: 0.5, 1: 0.4})  # neither collapses, REAL above in one seed of two
    'cannot be told apart'
    """
    seeds = sorted(set(kept_real) & set(kept_grpo))
    if not seeds:
        raise ValueError(f"REAL ({sorted(kept_real)}) and GRPO ({sorted(kept_grpo)}) share no seed to compare")
    real_collapses = np.mean([kept_real[s] for s in seeds]) < collapse
    grpo_collapses = np.mean([kept_grpo[s] for s in seeds]) < collapse
    above = [kept_real[s] > kept_grpo[s] for s in seeds]
    if grpo_collapses and not real_collapses and all(above):
        return REPRODUCED
    if real_collapses or not any(above):
        return CONTRADICTED
    return CANNOT_TELL


def weights_verdict(derivation_ok: bool | None, max_w_tau: float | None) -> str:
    """The weights rule: the derivation's checks present AND the measured max |W| tau < 1 on real batches.
    ``None`` for a part that was not measured.

    >>> weights_verdict(True, 0.96), weights_verdict(True, 1.0), weights_verdict(True, None)
    ('reproduced', 'contradicted', 'not run')
    """
    if max_w_tau is not None and max_w_tau >= 1:
        return CONTRADICTED
    if derivation_ok is None or max_w_tau is None:
        return NOT_RUN
    return REPRODUCED if derivation_ok else CONTRADICTED


def t_quantile(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom (a table to 30, then the
    first terms of the Cornish-Fisher expansion, within 1e-3).

    >>> t_quantile(2), round(t_quantile(100), 3)
    (4.303, 1.984)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def threshold_verdict(mean: float, sd: float, runs: int, threshold: float) -> tuple[str, float, float]:
    """The per-token threshold rule: ``(verdict, low, high)`` with the 95% t-interval over ``runs``
    of a per-run mean (sd over runs) against ``threshold``; one run (no sd) cannot tell.

    >>> threshold_verdict(0.3, 0.05, 3, 0.0)[0], threshold_verdict(0.1, 0.2, 3, 0.0)[0]
    ('reproduced', 'cannot be told apart')
    >>> threshold_verdict(0.05, math.nan, 1, 0.5)
    ('cannot be told apart', nan, nan)
    """
    if runs < 2 or not np.isfinite(sd):
        return CANNOT_TELL, math.nan, math.nan
    half = t_quantile(runs - 1) * sd / math.sqrt(runs)
    low, high = mean - half, mean + half
    return (REPRODUCED if low > threshold else CONTRADICTED if high < threshold else CANNOT_TELL), low, high


# ----------------------------------------------------------------------------- per-run training dynamics
def run_dynamics(metrics: pd.DataFrame, end_fraction: float = END_FRACTION) -> dict:
    """The dynamics of one run (``results.run_metrics``): entropy at step 0 and over the last
    ``end_fraction`` of its logged steps and their ratio (kept), all-correct fraction and batch reward
    at the start and end (same windows), validation pass@1 first / last / max (the final validation
    included), and REAL's weight on the run's off-policy mini-batches: its largest |W| tau (max over
    steps) and the mean correlation of a positive's weight with s; how often the gradient clip bound
    (``clip_bound_frac``, the fraction of updates it scaled down) and the median pre-clip gradient norm.

    >>> m = pd.DataFrame({"step": [0, 1, 2, 3], "policy/entropy": [1.0, 0.8, 0.5, 0.3]})
    >>> d = run_dynamics(m, end_fraction=0.5); d["entropy_start"], d["entropy_end"], d["entropy_kept"]
    (1.0, 0.4, 0.4)
    """
    m = metrics.sort_values("step")

    def col(name):
        return m[name].dropna() if name in m else pd.Series(dtype=float)

    def ends(name):
        values = col(name)
        if values.empty:
            return math.nan, math.nan
        k = max(1, math.ceil(end_fraction * len(values)))
        start = float(values.iloc[0]) if name == "policy/entropy" else float(values.head(k).mean())  # entropy: step 0
        return start, float(values.tail(k).mean())

    h0, h1 = ends("policy/entropy")
    c0, c1 = ends("groups/all_correct_frac")
    r0, r1 = ends("reward/mean")
    val = col("eval/pass@1")
    w_tau, corr = col("offpolicy/real/max_w_times_tau"), col("offpolicy/real/pos_corr_w_s")
    bound, norm = col("train/clip_bound_frac"), col("train/grad_norm")
    return {
        "steps": int(col("policy/entropy").size),
        "entropy_start": h0,
        "entropy_end": h1,
        "entropy_kept": h1 / h0 if h0 > 0 else math.nan,
        "all_correct_start": c0,
        "all_correct_end": c1,
        "reward_start": r0,
        "reward_end": r1,
        "val_first": float(val.iloc[0]) if len(val) else math.nan,
        "val_last": float(val.iloc[-1]) if len(val) else math.nan,
        "val_max": float(val.max()) if len(val) else math.nan,
        "offpolicy/real/max_w_times_tau": float(w_tau.max()) if len(w_tau) else math.nan,
        "offpolicy/real/pos_corr_w_s": float(corr.mean()) if len(corr) else math.nan,
        "clip_bound_frac": float(bound.mean()) if len(bound) else math.nan,
        "grad_norm_median": float(norm.median()) if len(norm) else math.nan,
    }


def dynamics_table(profile_dir: str | Path) -> pd.DataFrame:
    """One row per FINISHED run of a profile (``<method>-s<seed>/`` with ``final.json``): run, method,
    seed, its lr, grad_clip, max_grad_norm and minibatches (``config.json``) and :func:`run_dynamics`;
    ``tables/dynamics.csv``. An empty frame when no run has finished."""
    rows = []
    for folder in run_folders(profile_dir):
        if not (folder / "final.json").exists():
            continue  # an unfinished run's "end" is not the end of training
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
        metrics = run_metrics(folder)
        method = config.get("method", metrics["method"].dropna().iloc[0] if "method" in metrics else "")
        seed = config.get("seed", metrics["seed"].dropna().iloc[0] if "seed" in metrics else "")
        setting = {
            "lr": config.get("learning_rate"),
            "grad_clip": config.get("grad_clip", "fixed"),
            "max_grad_norm": config.get("max_grad_norm"),
            "minibatches": config.get("minibatches_per_step"),
        }
        engine = config.get("engine", ENGINES[0])
        rows.append(
            {"run": folder.name, "method": run_arm(engine, method), "engine": engine, "seed": seed, **setting,
             **run_dynamics(metrics)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def write_dynamics(profile_dir: str | Path) -> Path | None:
    """Write :func:`dynamics_table` to ``<profile_dir>/tables/dynamics.csv`` (atomically); None when no run finished."""
    table = dynamics_table(profile_dir)
    if table.empty:
        return None
    return atomic_write_text(Path(profile_dir) / "tables" / "dynamics.csv", table.to_csv(index=False))


# ----------------------------------------------------------------------------- settings and their tables
def ledger_profiles() -> list[str]:
    """The settings of the ledger: every profile shipped in the package's profile folder but the
    test-only ones, in :data:`PROFILE_ORDER` first, then by name."""
    names = [p.stem for p in PACKAGE_PROFILES.glob("*.yaml") if p.stem not in SKIP_PROFILES]
    return sorted(names, key=lambda n: (PROFILE_ORDER.index(n) if n in PROFILE_ORDER else len(PROFILE_ORDER), n))


def _grids() -> list[Grid]:
    """Every sweep grid the package or the working folder ships (./configs/sweeps/ wins a name)."""
    names = {p.stem for f in (USER_PROFILES / "sweeps", PACKAGE_PROFILES / "sweeps") for p in f.glob("*.yaml")}
    return [load_grid(n) for n in sorted(names)]


@dataclass
class Setting:
    """One profile of the ledger: its config and where its tables are."""

    profile: str
    cfg: Config
    runs_dir: Path  # runs/<profile>/tables
    results_dir: Path  # results/<profile>

    def table(self, name: str) -> Path | None:
        """``runs/<profile>/tables/<name>`` when the run wrote it, else the committed copy, else None."""
        for folder in (self.runs_dir, self.results_dir):
            if (folder / name).is_file():
                return folder / name
        return None

    def tables(self, pattern: str) -> list[Path]:
        """Every file matching ``pattern``, a run's own copy winning over the committed one of that name."""
        found = {p.name: p for p in sorted(self.results_dir.glob(pattern))}
        found.update({p.name: p for p in sorted(self.runs_dir.glob(pattern))})
        return [found[n] for n in sorted(found)]

    def ran(self) -> bool:
        """Whether any table of this profile exists, in its run folder or committed."""
        return any(f.is_dir() and any(f.iterdir()) for f in (self.runs_dir, self.results_dir))

    def needs(self) -> str:
        """What running this profile needs beyond this CPU machine ("" when nothing)."""
        parts = ["one GPU"] if self.cfg.device.startswith("cuda") else []
        model = self.cfg.model
        if model and not model.startswith("pypi:") and not Path(model).exists():
            parts.append("the hub")
        return " and ".join(parts)

    def sweep_grids(self) -> list[str]:
        """Grids of this profile that cross M (stability maps)."""
        return [g.name for g in _grids() if g.profile == self.profile and len(g.minibatches) > 1]

    def study_grids(self) -> list[str]:
        """Grids of this profile run at its own budget (steps = total_steps): protocol studies (make study)."""
        return [
            g.name
            for g in _grids()
            if g.profile == self.profile and g.steps == self.cfg.total_steps and len(g.minibatches) == 1
        ]


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def _interval(diff: float, low: float, high: float) -> str:
    return f"{_points(diff)} points [{_points(low)}, {_points(high)}]"


def _row(key: str, s: Setting, protocol: str, measured: str, verdict: str, source="", command="", claim=None) -> dict:
    assert verdict in VERDICTS, verdict
    return {
        "claim": claim or CLAIMS[key],
        "paper_evidence": PAPER[key],
        "setting": s.profile,
        "protocol": protocol,
        "measured": measured,
        "verdict": verdict,
        "source": str(source),
        "command": command,
    }


def _not_run(key: str, s: Setting, missing: str, command: str, why: str = "", claim=None) -> dict:
    needs = s.needs()
    measured = why or (f"no run yet; it needs {needs}" if needs else "no run yet")
    return _row(key, s, "", measured, NOT_RUN, source=f"missing: {missing}", command=command, claim=claim)


def _reproduce(s: Setting, methods: list[str] | None = None) -> str:
    extra = f' METHODS="{" ".join(methods)}"' if methods else ""
    return f"make reproduce PROFILE={s.profile}{extra}"


def _clip_words(clip: str, max_grad_norm: float | None = None) -> str:
    return f"clip fixed at {max_grad_norm:g}" if clip == "fixed" and max_grad_norm is not None else f"clip {clip}"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _run_settings(s: Setting) -> dict:
    """lr, clip and M of the profile's runs: from ``dynamics.csv`` (their config.json) when it is there
    and they agree, else the profile's YAML (the runs that wrote a committed table may predate it)."""
    cfg = s.cfg
    out = {
        "lr": cfg.learning_rate,
        "grad_clip": cfg.grad_clip,
        "max_grad_norm": cfg.max_grad_norm,
        "minibatches": cfg.minibatches_per_step,
    }
    path = s.table("dynamics.csv")
    if path is not None:
        dyn = pd.read_csv(path)
        for key in out:
            values = dyn[key].dropna().unique() if key in dyn else []
            if len(values) == 1:
                out[key] = values[0].item() if hasattr(values[0], "item") else values[0]
    return out


def _lr_clip(s: Setting) -> str:
    r = _run_settings(s)
    clip = _clip_words(r["grad_clip"], r["max_grad_norm"])
    return f"one lr {r['lr']:g} for every method, {clip}, M={int(r['minibatches'])}"


# ----------------------------------------------------------------------------- the claims
def _pairs(s: Setting, pairs: list[tuple[str, str]], bootstrap: dict) -> tuple[list[dict], Path | None, list[str]]:
    """Each pair's paired test difference (``first - second``), the table, and the methods it lacks."""
    path = s.table("per_problem.csv")
    if path is None:
        return [], None, []
    pp = load_per_problem(path)
    if "benchmark" not in pp:
        pp = pp.assign(benchmark="test")
    needed = list(dict.fromkeys(m for p in pairs for m in p))
    lacking = [m for m in needed if m not in set(pp["method"])]
    if lacking:
        return [], path, lacking
    out = []
    for a, b in pairs:
        seeds = set(pp.loc[pp.method == a, "seed"]) & set(pp.loc[pp.method == b, "seed"])
        if not seeds:  # pairing needs a seed both trained
            return [], path, [a, b]
        sub = pp[pp.method.isin([a, b]) & pp.seed.isin(seeds)]
        r = paired_difference_table(sub, reference=b, methods=[a], **bootstrap).loc[a]
        means = sub.groupby(["method", "benchmark"])["pass@1"].mean().groupby("method").mean()
        out.append(
            {
                "a": a,
                "b": b,
                "diff": r["diff"],
                "low": r["low"],
                "high": r["high"],
                "seeds": int(r["seeds"]),
                "mean_a": means[a],
                "mean_b": means[b],
                "verdict": pairwise_verdict(r["low"], r["high"]),
                "problems": sub.groupby("benchmark")["problem_id"].nunique().to_dict(),
                "samples": int(sub["samples"].iloc[0]) if "samples" in sub else None,
            }
        )
    return out, path, []


def _test_protocol(s: Setting, r: dict) -> str:
    benches = r["problems"]
    problems = (
        f"{next(iter(benches.values()))} problems"
        if len(benches) == 1
        else "macro avg of " + ", ".join(f"{b} ({n})" for b, n in benches.items())
    )
    samples = f"{r['samples']} samples x " if r["samples"] else ""
    return (
        f"{_lr_clip(s)}, test pass@1 ({samples}{problems}), {_seeds(r['seeds'])}, "
        "hierarchical 95% CI (seeds, then problems)"
    )


def _pairwise_rows(s: Setting, bootstrap: dict) -> list[dict]:
    specs = [
        ("real_grpo", [("real", "grpo")]),
        ("ordering", [("real", "gspo"), ("gspo", "dapo"), ("dapo", "grpo")]),
        ("grad_dapo", [("grad", "dapo")]),
    ]
    rows = []
    for key, pairs in specs:
        found, path, lacking = _pairs(s, pairs, bootstrap)
        if path is None:
            rows.append(_not_run(key, s, "per_problem.csv", _reproduce(s)))
            continue
        if lacking:
            have = sorted(set(load_per_problem(path)["method"]) - {"base"})
            methods = [m for m in METHODS if m in set(have) | set(lacking)]
            why = f"the run has {', '.join(have)}; the claim needs {', '.join(lacking)} on a shared seed"
            rows.append(_not_run(key, s, f"{', '.join(lacking)} in {path}", _reproduce(s, methods), why=why))
            continue
        measured = "; ".join(
            f"{a.upper()} - {b.upper()} {_interval(r['diff'], r['low'], r['high'])} "
            f"({a.upper()} {r['mean_a']:.3f} vs {b.upper()} {r['mean_b']:.3f})"
            + (f": {r['verdict']}" if len(found) > 1 else "")
            for r in found
            for a, b in [(r["a"], r["b"])]
        )
        verdict = found[0]["verdict"] if len(found) == 1 else ordering_verdict([r["verdict"] for r in found])
        rows.append(_row(key, s, _test_protocol(s, found[0]), measured, verdict, source=path))
    return rows


def _entropy_row(s: Setting) -> dict:
    path = s.table("dynamics.csv")
    if path is None:
        return _not_run("entropy", s, "dynamics.csv", _reproduce(s))
    dyn = pd.read_csv(path)
    kept = {
        m: dict(zip(g["seed"], g["entropy_kept"])) for m, g in dyn.dropna(subset=["entropy_kept"]).groupby("method")
    }
    if "real" not in kept or "grpo" not in kept or not set(kept["real"]) & set(kept["grpo"]):
        return _not_run("entropy", s, f"REAL and GRPO runs of one seed in {path}", _reproduce(s, ["real", "grpo"]))
    seeds = sorted(set(kept["real"]) & set(kept["grpo"]))
    verdict = entropy_verdict(kept["real"], kept["grpo"])

    def words(m):
        g = dyn[(dyn.method == m) & dyn.seed.isin(seeds)]
        return (
            f"{m.upper()} kept {g.entropy_kept.mean():.2f} ({g.entropy_start.mean():.2f} -> "
            f"{g.entropy_end.mean():.2f} nats)"
        )

    above = sum(kept["real"][x] > kept["grpo"][x] for x in seeds)
    measured = (
        f"entropy kept, last 10% of steps / step 0, mean over seeds: {words('real')}, {words('grpo')}; "
        f"REAL above GRPO in {above} of {len(seeds)} seeds; collapse = kept < {ENTROPY_COLLAPSE:g}"
    )
    steps = int(dyn.loc[dyn.method.isin(["real", "grpo"]), "steps"].max())
    protocol = f"the profile's runs ({steps} steps, {_lr_clip(s)}), {_seeds(len(seeds))} paired by seed"
    return _row("entropy", s, protocol, measured, verdict, source=path)


def _stability_rows(s: Setting, bootstrap: dict) -> list[dict]:
    path = s.table("stability.csv")
    grids = s.sweep_grids()
    command = (
        f"make sweep SWEEP={grids[0]}"
        if grids
        else f"make sweep SWEEP=<a grid with profile: {s.profile} and several minibatches>"
    )
    if path is None:
        why = "" if grids else f"no stability grid ships for {s.profile}"
        return [_not_run("stability", s, "stability.csv", command, why=why)]
    table = pd.read_csv(path)
    if "grad_clip" not in table:
        table = table.assign(grad_clip="fixed")  # tables written before the clip was a factor
    score = "val_score" if "val_score" in table and table["val_score"].notna().all() else "final_pass@1"
    off = table[(table.minibatches >= 2) & table.method.isin(["real", "grpo"])]
    rows = []
    for clip, arm in off.groupby("grad_clip", sort=False):
        pivots = {
            m: arm[arm.method == m].pivot_table(index="seed", columns=["minibatches", "lr"], values=score)
            for m in ("real", "grpo")
        }
        if any(p.empty for p in pivots.values()):
            continue
        seeds = pivots["real"].index.intersection(pivots["grpo"].index)
        cells = pivots["real"].columns.intersection(pivots["grpo"].columns)
        a, b = pivots["real"].loc[seeds, cells], pivots["grpo"].loc[seeds, cells]
        keep = a.notna().all() & b.notna().all()  # cells that every seed of both methods finished
        a, b = a.loc[:, keep].to_numpy(), b.loc[:, keep].to_numpy()  # [seeds, cells]
        if a.size == 0:
            continue
        ci = paired_bootstrap(a, b, **bootstrap)
        used = cells[keep.to_numpy()]
        ms = sorted({m for m, _ in used})
        lrs = sorted({lr for _, lr in used})
        collapsed = (
            {m: (int(arm[arm.method == m].collapsed.sum()), int((arm.method == m).sum())) for m in ("real", "grpo")}
            if "collapsed" in arm
            else {}
        )
        measured = (
            f"REAL - GRPO {_interval(ci['diff'], ci['low'], ci['high'])} in the mean over {len(used)} "
            f"off-policy cells"
            + (
                "; collapsed runs: " + ", ".join(f"{m.upper()} {c} of {n}" for m, (c, n) in collapsed.items())
                if collapsed
                else ""
            )
        )
        steps = f"{int(arm.steps.iloc[0])}-step runs, " if "steps" in arm else ""
        prompts = (
            f"{int(arm.prompts_per_minibatch.iloc[0])} prompts per mini-batch, "
            if "prompts_per_minibatch" in arm
            else ""
        )
        words = (
            "validation score (mean of the last 3 validations)"
            if score == "val_score"
            else "final validation pass@1 (older table without val_score)"
        )
        protocol = (
            f"stability sweep: {steps}{prompts}M in {{{', '.join(map(str, ms))}}} x lr in "
            f"{{{', '.join(f'{x:g}' for x in lrs)}}}, {_clip_words(clip, s.cfg.max_grad_norm)}, {words}, "
            f"{_seeds(len(seeds))}, "
            "hierarchical 95% CI (seeds, then cells)"
        )
        rows.append(_row("stability", s, protocol, measured, pairwise_verdict(ci["low"], ci["high"]), source=path))
    return rows or [_not_run("stability", s, f"off-policy cells (M >= 2) of REAL and GRPO in {path}", command)]


def _weights_row(s: Setting) -> dict:
    checks_path = s.table("derivation_checks.csv")
    derivation_ok, missing_checks = None, []
    if checks_path is not None:
        present = set(pd.read_csv(checks_path)["check"])
        missing_checks = [c for c in DERIVATION_CHECKS if c not in present]
        derivation_ok = True if not missing_checks else None  # an older table without them proves nothing
    sources, maxima = [p for p in (checks_path,) if p], []
    for name in ("dynamics.csv", "stability.csv"):
        path = s.table(name)
        if path is not None:
            table = pd.read_csv(path)
            col = table["offpolicy/real/max_w_times_tau"].dropna() if "offpolicy/real/max_w_times_tau" in table else []
            if len(col):
                maxima.append((name, float(np.max(col)), len(col)))  # each run's max over its steps
                sources.append(path)
    max_w_tau = max(m for _, m, _ in maxima) if maxima else None
    verdict = weights_verdict(derivation_ok, max_w_tau)
    if verdict == NOT_RUN:
        missing = (
            "derivation_checks.csv" + (f" (rows {missing_checks})" if missing_checks else "")
            if derivation_ok is None
            else "offpolicy/real/max_w_times_tau in dynamics.csv or stability.csv"
        )
        command = f"make derive PROFILE={s.profile}" if derivation_ok is None and s.ran() else _reproduce(s)
        why = (
            ""
            if derivation_ok is None or s.cfg.minibatches_per_step > 1
            else "the profile has M = 1 (no off-policy mini-batch): make sweep measures it off-policy"
        )
        return _not_run("weights", s, missing, command, why=why)
    derivation = "derivation's checks hold" if derivation_ok else "derivation's checks missing"
    # 4 decimals: float32 training gets within 1e-4 of the bound
    measured = (
        f"{derivation}; largest |W| tau on real off-policy mini-batches {max_w_tau:.4f} (the bound: < 1; "
        + ", ".join(f"{n}: {m:.4f} over {k} runs" for n, m, k in maxima)
        + ")"
    )
    protocol = (
        f"notebook 01's sympy and float64 checks at tau {s.cfg.tau:g}; every off-policy mini-batch "
        "of the profile's runs (and its sweep's), whatever method trained"
    )
    return _row("weights", s, protocol, measured, verdict, source="; ".join(map(str, sources)))


def _token_rows(s: Setting) -> list[dict]:
    path = s.table("mechanism.csv")
    specs = [
        (
            "misassign",
            "offpolicy/grpo_token/pos_corr_w_s",
            MISASSIGN_ABOVE,
            "correlation of a positive rollout's GRPO weight with its s",
        ),
        (
            "dominate",
            "offpolicy/grpo_token/neg_top1pct_share",
            DOMINATE_ABOVE,
            "share of GRPO's negative-token weight on the top 1% of negative tokens",
        ),
    ]
    if path is None:
        command = f"make mechanism PROFILE={s.profile}" if s.ran() else _reproduce(s)
        return [_not_run(k, s, "mechanism.csv", command) for k, *_ in specs]
    table = pd.read_csv(path)
    grpo = table[table.method == "grpo"].set_index("metric")
    context = {
        "offpolicy/grpo_token/pos_zeroed_frac": "clip zeroes {:.1%} of positive tokens",
        "offpolicy/grpo_token/pos_corr_w_s_within": "within-rollout correlation {:.3f}",
        "offpolicy/grpo_token/neg_above1_share": "negatives with ratio > 1 carry {:.1%} of the weight",
    }
    rows = []
    for key, metric, threshold, words in specs:
        if metric not in grpo.index or not grpo.loc[metric, "runs"] or not np.isfinite(grpo.loc[metric, "mean"]):
            if s.cfg.minibatches_per_step <= 1:
                why, command = "the profile has M = 1: no off-policy mini-batch", f"make mechanism PROFILE={s.profile}"
            else:  # the metric is logged during training: runs that predate it must be trained again
                why, command = "its runs predate this metric", f"make -B train-all mechanism PROFILE={s.profile}"
            rows.append(_not_run(key, s, f"{metric} of GRPO runs in {path}", command, why=why))
            continue
        r = grpo.loc[metric]
        verdict, low, high = threshold_verdict(float(r["mean"]), float(r["sd"]), int(r["runs"]), threshold)
        interval = f" [{low:.3f}, {high:.3f}]" if np.isfinite(low) else " (one run: no interval)"
        extra = [
            fmt.format(grpo.loc[c, "mean"])
            for c, fmt in context.items()  # pos_* metrics go with misassign
            if key == ("misassign" if "/pos_" in c else "dominate")
            and c in grpo.index
            and np.isfinite(grpo.loc[c, "mean"])
        ]
        measured = f"{words}: {r['mean']:.3f}{interval} (threshold {threshold:g})" + (
            "; " + "; ".join(extra) if extra else ""
        )
        protocol = (
            f"GRPO's own runs, mean over each run's off-policy steps ({int(r['offpolicy_steps'])} steps, "
            f"{int(r['runs'])} run{'' if int(r['runs']) == 1 else 's'}), 95% t-interval over runs"
        )
        rows.append(_row(key, s, protocol, measured, verdict, source=path))
    return rows


def _protocol_rows(s: Setting) -> list[dict]:
    rows = []
    found = {p.stem.removeprefix("protocols-"): p for p in s.tables("protocols-*.csv")}
    for grid in s.study_grids():
        if grid not in found:
            rows.append(
                _not_run(
                    "real_grpo",
                    s,
                    f"protocols-{grid}.csv",
                    f"make study STUDY={grid}",
                    claim=f"{CLAIMS['real_grpo']} (study {grid})",
                )
            )
    for grid, path in found.items():
        table = pd.read_csv(path)
        for _, r in table[table.method == "real"].iterrows():
            ref = table[
                (table.method == "grpo")
                & (table.protocol == r.protocol)
                & (table.minibatches == r.minibatches)
                & (table.grad_clip == r.grad_clip)
            ]
            arm = f"{r.protocol}, clip {r.grad_clip}, M={r.minibatches}"
            claim = f"{CLAIMS['real_grpo']} (study {grid}: {arm})"
            if not np.isfinite(r["low"]) or ref.empty:
                rows.append(
                    _not_run(
                        "real_grpo", s, f"REAL and GRPO of arm {arm} in {path}", f"make study STUDY={grid}", claim=claim
                    )
                )
                continue
            protocol = (
                f"study {grid}, arm: {r.protocol} (REAL lr {r.lr:g}, GRPO lr {ref.lr.iloc[0]:g}), "
                f"{_clip_words(r.grad_clip, s.cfg.max_grad_norm)}, M={r.minibatches}, test pass@1, "
                f"{_seeds(int(r.seeds))}, "
                "hierarchical 95% CI (seeds, then problems)"
            )
            measured = (
                f"REAL - GRPO {_interval(r['diff'], r['low'], r['high'])} (REAL {r['test_pass@1']:.3f} vs "
                f"GRPO {ref['test_pass@1'].iloc[0]:.3f})"
            )
            rows.append(
                _row(
                    "real_grpo", s, protocol, measured, pairwise_verdict(r["low"], r["high"]), source=path, claim=claim
                )
            )
    return rows


def setting_rows(s: Setting, n_boot: int = 10_000, seed: int = 0) -> list[dict]:
    """Every claim of one setting (see the module docstring for the rules)."""
    bootstrap = {"n_boot": n_boot, "seed": seed}
    return [
        *_pairwise_rows(s, bootstrap),
        _entropy_row(s),
        *_stability_rows(s, bootstrap),
        _weights_row(s),
        *_token_rows(s),
        *_protocol_rows(s),
    ]


def build_ledger(
    profiles: list[str] | None = None,
    runs_root: str | Path = "runs",
    results_root: str | Path = "results",
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """The ledger (:data:`COLUMNS`), one row per (claim, setting), settings in ``profiles`` order
    (default :func:`ledger_profiles`), read from ``<runs_root>/<profile>/tables`` or else
    ``<results_root>/<profile>``. ``n_boot`` and ``seed``: the bootstrap's. Raises ``ValueError``
    naming an unknown profile."""
    rows = []
    for profile in profiles or ledger_profiles():
        cfg = load_config(profile=profile)
        s = Setting(profile, cfg, Path(runs_root) / profile / "tables", Path(results_root) / profile)
        rows.extend(setting_rows(s, n_boot=n_boot, seed=seed))
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- writing it
def verdict_grid(ledger: pd.DataFrame) -> pd.DataFrame:
    """Claims x settings, each cell the verdict ("" where a claim has no row for a setting: a
    protocol-study arm of another profile); rows in the ledger's order, settings in its order."""
    grid = ledger.pivot_table(index="claim", columns="setting", values="verdict", aggfunc="first").fillna("")
    claims = list(dict.fromkeys(ledger["claim"]))
    return grid.loc[claims, list(dict.fromkeys(ledger["setting"]))].rename_axis(index="claim", columns=None)


def grid_markdown(ledger: pd.DataFrame) -> str:
    """The verdict grid as one Markdown table: claims x settings, with the paper's evidence (README's first)."""
    grid = verdict_grid(ledger)
    paper = ledger.drop_duplicates("claim").set_index("claim")["paper_evidence"]
    grid.insert(0, "paper", paper.loc[grid.index])
    return _escaped(grid.reset_index()).to_markdown(index=False) + "\n"


def _escaped(table: pd.DataFrame) -> pd.DataFrame:
    """``|`` in a cell (|W|, |s_i|) would split a Markdown table's column: escape it."""
    return table.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)


def ledger_markdown(ledger: pd.DataFrame) -> str:
    """Two Markdown tables: the verdict grid (:func:`grid_markdown`) and every row's protocol,
    measurement, verdict and source (or the command that would run it)."""
    detail = ledger.assign(
        **{
            "source or command": [
                c if v == NOT_RUN else s for s, c, v in zip(ledger.source, ledger.command, ledger.verdict)
            ]
        }
    )
    detail = detail[["claim", "setting", "protocol", "measured", "verdict", "source or command"]]
    return grid_markdown(ledger) + "\n" + _escaped(detail).to_markdown(index=False) + "\n"


def write_ledger(ledger: pd.DataFrame, out_dir: str | Path = "results") -> list[Path]:
    """Write ``claims.csv``, ``claims.md`` and ``claims_grid.md`` (the grid alone, which the README opens
    with) into ``out_dir``, and ``<setting>/claims.md`` (:func:`setting_markdown`) for every setting with a
    row that ran, each atomically. Raises ``ValueError``
    when a verdict is none of :data:`VERDICTS` or a column is missing."""
    missing = [c for c in COLUMNS if c not in ledger]
    bad = sorted(set(ledger.get("verdict", [])) - set(VERDICTS))
    if missing or bad:
        raise ValueError(
            f"not a claims ledger: missing columns {missing}, unknown verdicts {bad}; build it with build_ledger"
        )
    out_dir = Path(out_dir)
    written = [
        atomic_write_text(out_dir / "claims.csv", ledger[COLUMNS].to_csv(index=False)),
        atomic_write_text(out_dir / "claims.md", ledger_markdown(ledger)),
        atomic_write_text(out_dir / "claims_grid.md", grid_markdown(ledger)),
    ]
    for setting, rows in ledger.groupby("setting", sort=False):
        if (rows["verdict"] != NOT_RUN).any():
            written.append(atomic_write_text(out_dir / setting / "claims.md", setting_markdown(rows)))
    return written


def setting_markdown(rows: pd.DataFrame) -> str:
    """One setting's rows of the ledger as a Markdown table (claim, measured, verdict), which that
    setting's section of the README quotes as ``results/<setting>/claims.md``."""
    return _escaped(rows[["claim", "measured", "verdict"]]).to_markdown(index=False) + "\n"


VERDICT_COLOURS = {REPRODUCED: "#4daf4a", CONTRADICTED: "#e41a1c", CANNOT_TELL: "#ffbf00", NOT_RUN: "#d9d9d9"}


def plot_verdict_grid(ledger: pd.DataFrame):
    """The verdict grid as a figure: claims x settings, each cell coloured by its verdict (blank
    where a claim has no row for that setting). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    grid = verdict_grid(ledger)
    codes = grid.apply(lambda c: c.map(lambda v: VERDICTS.index(v) if v else np.nan)).to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(5.0 + 1.1 * grid.shape[1], 1.4 + 0.36 * grid.shape[0]))
    ax.imshow(
        np.ma.masked_invalid(codes),
        cmap=ListedColormap([VERDICT_COLOURS[v] for v in VERDICTS]),
        vmin=-0.5,
        vmax=len(VERDICTS) - 0.5,
        aspect="auto",
    )
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="left")
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.set_xticks(np.arange(-0.5, grid.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, grid.shape[0]), minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.legend(
        handles=[Patch(color=VERDICT_COLOURS[v], label=v) for v in VERDICTS],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return fig
