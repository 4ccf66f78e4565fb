"""Held-out evaluation: pass@1, pass@k and greedy accuracy with the verifier's outcome counts.

Choices and deviations (the paper reports Pass@1 averaged over 8 samples at
temperature 0.6 on AIME/MATH/...; so do we by default: ``eval_temperature`` 0.6, the rollout temperature):
1) pass@1 is the mean reward over all ``samples`` draws of every problem (the paper's
   "avg@8"); pass@k uses the unbiased estimator of Chen et al. (2021) with k = samples,
   i.e. the fraction of problems with at least one correct draw.
2) Generation is batched: ``batch_size`` prompts x ``samples`` rows per ``generate`` call;
   prompt batch b is sampled with seed ``seed + b``, so a result is reproducible per seed
   and independent of what the caller's RNG did before.
3) Greedy decoding (temperature 0) is reported beside the sampled numbers because it is
   what the policy "believes"; sampling at the rollout temperature is what RL trains on.
4) :func:`evaluate_runs` (``make evaluate``, notebook 04) evaluates the base policy and every
   run's latest checkpoint with one seed, ``derive_seed(data_seed, "test")``, so every model
   answers the same draws; with several benchmarks a model's score is their macro average.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from .backends import make_backend
from .checkpoint import latest_checkpoint
from .config import METHODS, derive_seed
from .data import evaluation_sets, load_split
from .data_registry import BENCHMARK_TITLES
from .io import atomic_write_text
from .modeling import format_prompt, load_policy
from .progress import progress_bar
from .results import run_folders
from .rollout import HFGenerateBackend
from .rollout_batch import RolloutBackend
from .run_names import parse_run, split_arm
from .verifier import OUTCOMES, asks_for_box, score_completions


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as a running product for numerical stability (Chen et al., 2021, Fig. 3).

    >>> pass_at_k(8, 0, 1), pass_at_k(8, 2, 1), round(pass_at_k(8, 2, 4), 4), pass_at_k(8, 7, 2)
    (0.0, 0.25, 0.7857, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def evaluate_policy(
    model,
    tokenizer,
    problems,
    *,
    samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 64,
    top_k: int = 0,
    top_p: float = 1.0,
    greedy: bool = True,
    backend: RolloutBackend | None = None,
    progress: bool | None = None,
    cfg=None,
) -> dict:
    """Evaluate ``model`` on ``problems`` (objects with ``prompt``, ``answer``, ``id``, ``level``).

    Returns a dict with
        ``pass@1``            mean correctness over all problems x samples
        ``pass@{samples}``    unbiased pass@k with k = samples
        ``greedy``            accuracy of greedy decoding (absent when ``greedy=False``)
        ``counts``            verifier outcomes of the sampled responses (sum = problems x samples)
        ``greedy_counts``     the same for the greedy responses
        ``parse_failure``, ``truncated``  sampled-response counts, also inside ``counts``
        ``mean_response_length``  tokens per sampled response, EOS included
        ``pass@1_by_level``   pass@1 per difficulty level
        ``per_problem_correct`` list of correct-sample counts aligned with ``problems``
        ``problem_ids``, ``n_problems``, ``samples``, ``temperature``
    ``progress=None`` shows a progress bar only when there are more than 4 batches.
    Prompts are built by :func:`~rewards_as_labels.modeling.format_prompt` with ``cfg``
    (its ``prompt_template`` / ``system_prompt``; None = the defaults).
    """
    if samples < 1 or not problems:
        raise ValueError(f"need samples >= 1 and at least one problem, got {samples} and {len(problems)}")
    backend = backend or HFGenerateBackend(model, tokenizer)
    backend.sync_weights(model)
    starts = list(range(0, len(problems), batch_size))
    show = len(starts) > 4 if progress is None else progress
    per_problem: list[int] = []
    counts = dict.fromkeys(OUTCOMES, 0)
    greedy_counts = dict.fromkeys(OUTCOMES, 0)
    greedy_correct = 0
    tokens = 0
    for b, start in enumerate(progress_bar(starts, desc="evaluate", disable=not show, leave=False)):
        chunk = problems[start : start + batch_size]
        prompts = [format_prompt(tokenizer, p, cfg) for p in chunk]
        batch = backend.generate(
            prompts,
            samples,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            top_k=top_k,
            top_p=top_p,
            seed=seed + b,
        )
        golds = [p.answer for p in chunk for _ in range(samples)]  # prompt-major like the batch
        boxed = asks_for_box(chunk)  # hub maths: only a \boxed{} answer counts
        rewards, c = score_completions(batch.texts, golds, batch.truncated.tolist(), boxed)  # [len(chunk)*samples]
        per_problem += rewards.view(len(chunk), samples).sum(dim=1).long().tolist()  # [len(chunk)]
        tokens += int(batch.response_lengths.sum())
        for key, value in c.items():
            counts[key] += value
        if greedy:
            g = backend.generate(prompts, 1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed + b)
            g_rewards, gc = score_completions(
                g.texts, [p.answer for p in chunk], g.truncated.tolist(), boxed
            )  # [len(chunk)]
            greedy_correct += int(g_rewards.sum())
            for key, value in gc.items():
                greedy_counts[key] += value
    n = len(problems)
    by_level = defaultdict(list)
    for p, c in zip(problems, per_problem):
        by_level[int(p.level)].append(c / samples)
    result = {
        "pass@1": sum(per_problem) / (n * samples),
        f"pass@{samples}": sum(pass_at_k(samples, c, samples) for c in per_problem) / n,
        "counts": counts,
        "parse_failure": counts["parse_failure"],
        "truncated": counts["truncated"],
        "mean_response_length": tokens / (n * samples),
        "pass@1_by_level": {str(k): sum(v) / len(v) for k, v in sorted(by_level.items())},
        "per_problem_correct": per_problem,
        "problem_ids": [p.id for p in problems],
        "n_problems": n,
        "samples": samples,
        "temperature": temperature,
    }
    if greedy:
        result["greedy"] = greedy_correct / n
        result["greedy_counts"] = greedy_counts
    return result


def benchmark_table(results, metric: str = "pass@1", titles: dict | None = None):
    """The paper's results layout: one row per method (base first, mean over seeds), one column per benchmark, then Avg.

    ``results`` has one row per (method, seed, benchmark) with a ``metric`` column (what
    :func:`evaluate_runs` writes to ``tables/benchmarks.csv``). Avg is the mean over the benchmark
    columns (macro average), as in the paper.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"method": ["base", "base", "real", "real"], "seed": ["-", "-", "0", "0"],
    ...                    "benchmark": ["aime24", "math500", "aime24", "math500"], "pass@1": [0.1, 0.5, 0.2, 0.6]})
    >>> benchmark_table(df).round(2).to_dict("index")
    {'base': {'AIME24': 0.1, 'MATH500': 0.5, 'Avg': 0.3}, 'real': {'AIME24': 0.2, 'MATH500': 0.6, 'Avg': 0.4}}
    """
    titles = titles or BENCHMARK_TITLES
    per_seed = results.pivot_table(index=["method", "seed"], columns="benchmark", values=metric, sort=False)
    table = per_seed.groupby(level="method", sort=False).mean()
    table = table[[b for b in results["benchmark"].drop_duplicates()]]  # the order of eval_sets
    table["Avg"] = table.mean(axis=1)
    order = [m for m in ["base", *METHODS] if m in table.index]
    table = table.loc[order + [m for m in table.index if m not in order]]
    table.columns = [titles.get(c, c) for c in table.columns]
    table.index.name, table.columns.name = None, None
    return table


def models_to_evaluate(cfg) -> list[tuple[str, str, object, object]]:
    """``(method, seed, model folder, run folder)`` of the base policy and of the latest checkpoint of
    every run under ``cfg.profile_dir``, in the paper's method order, our trainer's runs first. ``method``
    is the run's arm (:mod:`~rewards_as_labels.run_names`): ``real`` for our trainer's ``real-s0``,
    ``trl-real`` for TRL's ``trl-real-s0``. The base is the pretrained ``cfg.model`` when the profile
    names one (model folder None: load it by name), else the warm start; its seed is "-" and its run
    folder None.

    Only finished runs (``final.json`` written) count: a run still training, or stopped half-way, has
    checkpoints too, and evaluating its mid-run checkpoint as that method's result would be wrong. Each
    one left out is printed with the command that finishes it; its folder is not touched. A finished run
    without weights but with its ``test.json`` (a record brought back by ``make restore``) is listed with
    model folder None: :func:`evaluate_runs` reads its test evaluation instead of sampling."""
    models = [("base", "-", None if cfg.model else cfg.warmstart_dir / "model", None)]
    for folder in run_folders(cfg.profile_dir):
        if not (folder / "final.json").exists():
            print(f"skipped {folder}: not finished (no final.json); make train or make reproduce resumes it")
            continue
        ckpt = latest_checkpoint(folder)
        if ckpt is None and not (folder / "test.json").exists():
            print(f"skipped {folder}: finished, but holds neither weights nor test.json; remove it and retrain it")
            continue
        run = parse_run(folder.name)
        models.append((run.arm, str(run.seed), ckpt / "model" if ckpt is not None else None, folder))
    return models


def stored_test(folder, sets: dict, samples: int) -> dict | None:
    """The run folder's own test evaluation (``test.json``, :func:`evaluate_run`) when it is the one
    :func:`evaluate_runs` would draw: ``samples`` per problem, the same benchmarks with the same problems
    in the same order, and made from the folder's latest checkpoint when the folder still holds weights.
    None otherwise (no file, or another evaluation): the run is evaluated afresh."""
    import json
    from pathlib import Path

    path = Path(folder) / "test.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    ckpt = latest_checkpoint(folder)
    benchmarks = record.get("benchmarks", {})
    same = (
        record.get("samples") == samples
        and (ckpt is None or record.get("checkpoint") == ckpt.name)
        and list(benchmarks) == list(sets)
        and all(benchmarks[n]["problem_ids"] == [str(p.id) for p in ps] for n, ps in sets.items())
    )
    return record if same else None


def evaluate_on_sets(cfg, model, tokenizer, sets: dict, samples: int, backend=None):
    """``(name, evaluate_policy result)`` per problem set, drawn with the one test seed
    ``derive_seed(cfg.data_seed, "test")`` at ``cfg.eval_temperature``: every model answers the same draws."""
    for name, problems in sets.items():
        yield (
            name,
            evaluate_policy(
                model,
                tokenizer,
                problems,
                samples=samples,
                temperature=cfg.eval_temperature,
                max_new_tokens=cfg.max_new_tokens,
                seed=derive_seed(cfg.data_seed, "test"),
                backend=backend,
                cfg=cfg,
            ),
        )


def evaluate_run(cfg, folder, samples: int = 0) -> dict:
    """The test evaluation of :func:`evaluate_runs` for ONE run folder's latest checkpoint (a profile,
    sweep or protocol-study run), written atomically to ``<folder>/test.json``: per benchmark (the task's test
    split is "test") pass@1, pass@k, greedy and each problem's correct count of ``samples`` draws.
    Raises ``FileNotFoundError`` naming the run when it has no checkpoint."""
    from pathlib import Path

    from .io import atomic_write_json

    folder = Path(folder)
    ckpt = latest_checkpoint(folder)
    if ckpt is None or not (folder / "final.json").exists():
        raise FileNotFoundError(
            f"{folder} holds no finished run with weights; train it first (make train, sweep or study)"
        )
    k = samples or cfg.test_samples
    sets = evaluation_sets(cfg)
    model, tokenizer = load_policy(cfg, path=ckpt / "model")
    backend = make_backend(
        cfg, model, tokenizer, prompts=[format_prompt(tokenizer, p, cfg) for ps in sets.values() for p in ps]
    )
    out = {"checkpoint": ckpt.name, "samples": k, "benchmarks": {}}
    for name, res in evaluate_on_sets(cfg, model, tokenizer, sets, k, backend):
        out["benchmarks"][name] = {
            "problem_ids": [str(i) for i in res["problem_ids"]],
            "per_problem_correct": res["per_problem_correct"],
            **{key: v for key, v in res.items() if isinstance(v, (int, float))},
        }
    atomic_write_json(folder / "test.json", out)
    return out


def evaluate_runs(cfg, samples: int = 0, split: str = "test") -> dict[str, pd.DataFrame | None]:
    """Evaluate every model of :func:`models_to_evaluate` and write the profile's tables.

    ``split="test"`` evaluates on the benchmarks ``cfg.eval_sets`` (or, when there are none, the
    task's test split); another split name evaluates on that split of the task. Every model draws
    ``samples`` per problem (0: ``cfg.test_samples``) at ``cfg.eval_temperature`` with the same seed.
    A run whose own ``test.json`` holds those draws (:func:`stored_test`; make writes one per run as it
    finishes, beside the training of the next) is read from it, not sampled again.

    Writes under ``<profile_dir>/tables/`` and returns, by name:
        ``evaluation``  evaluation.csv: one row per model (method, seed, checkpoint, engine, pass@1,
                        pass@k, greedy, ...); with ``eval_sets`` the mean over benchmarks (Avg)
        ``benchmarks``  benchmarks.csv: one row per model and benchmark (None without ``eval_sets``)
        ``table``       benchmarks_pass@1.csv: :func:`benchmark_table` of it (None without ``eval_sets``)
        ``per_problem`` per_problem.csv: one row per (method, seed, benchmark, problem_id) with
                        ``correct`` of ``samples`` draws; the benchmark of the task's test split is
                        "test". The paired statistics of :mod:`~rewards_as_labels.results` read it.
    """
    k = samples or cfg.test_samples
    sets = evaluation_sets(cfg) if split == "test" else {split: load_split(cfg, split)}
    models = models_to_evaluate(cfg)
    print(", ".join(f"{len(p)} {name} problems" for name, p in sets.items()) + f" x {k} samples; models: {len(models)}")
    rows, per_problem, backend = [], [], None
    for method, seed, path, folder in models:
        stored = stored_test(folder, sets, k) if folder is not None and split == "test" else None
        if stored is not None:  # the run's own test.json (make's per-run test evaluation): the same draws
            checkpoint = str(folder / stored["checkpoint"] / "model")
            results = list(stored["benchmarks"].items())
        elif folder is not None and path is None:
            raise FileNotFoundError(
                f"{folder} holds no weights and its test.json is not this evaluation ({k} samples of "
                f"{', '.join(sets)}): retrain the run (remove the folder, then make train METHOD=<m> SEED=<s>)"
            )
        else:
            model, tokenizer = load_policy(cfg, path=path)
            # one sampler, sized for every prompt it will see; evaluate_policy syncs each model into it
            backend = backend or make_backend(
                cfg, model, tokenizer, prompts=[format_prompt(tokenizer, p, cfg) for ps in sets.values() for p in ps]
            )
            checkpoint = str(path or cfg.model)
            results = evaluate_on_sets(cfg, model, tokenizer, sets, k, backend)
        for name, res in results:
            per_problem.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "engine": split_arm(method)[0],
                        "seed": seed,
                        "benchmark": name,
                        "problem_id": [str(i) for i in res["problem_ids"]],
                        "correct": res["per_problem_correct"],
                        "samples": k,
                    }
                )
            )
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "checkpoint": checkpoint,
                    "engine": split_arm(method)[0],
                    **({"benchmark": name} if cfg.eval_sets else {}),
                    **{key: v for key, v in res.items() if isinstance(v, (int, float))},
                }
            )
            print(
                f"{method:>5} seed {seed} {name}: pass@1 {res['pass@1']:.3f}  "
                f"pass@{k} {res[f'pass@{k}']:.3f}  greedy {res['greedy']:.3f}"
                + ("  (its test.json)" if stored is not None else "")
            )
    tables = cfg.profile_dir / "tables"
    out = {"evaluation": pd.DataFrame(rows), "benchmarks": None, "table": None}
    if cfg.eval_sets:  # one row per model and benchmark; evaluation.csv gets each model's macro average (Avg)
        out["benchmarks"] = benchmarks = pd.DataFrame(rows)
        atomic_write_text(tables / "benchmarks.csv", benchmarks.to_csv(index=False))
        out["evaluation"] = (
            benchmarks.groupby(["method", "seed", "checkpoint", "engine"], sort=False)[
                ["pass@1", f"pass@{k}", "greedy"]
            ]
            .mean()
            .reset_index()
        )
        out["table"] = benchmark_table(benchmarks)
        atomic_write_text(tables / "benchmarks_pass@1.csv", out["table"].to_csv())
    out["per_problem"] = pd.concat(per_problem, ignore_index=True)
    atomic_write_text(tables / "per_problem.csv", out["per_problem"].to_csv(index=False))
    atomic_write_text(tables / "evaluation.csv", out["evaluation"].to_csv(index=False))
    print("wrote", tables / "evaluation.csv", "and", tables / "per_problem.csv")
    return out
