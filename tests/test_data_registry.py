"""Hub data sets: every registry entry is read through the real conversion code from small
fixtures that we write here in the hub's column layout (a few made-up rows, not hub data),
with ``load_dataset("parquet" | "json", data_files=...)`` standing in for the hub id."""

import json
import time

import pandas as pd
import pytest

from rewards_as_labels import data as D
from rewards_as_labels import data_registry as R
from rewards_as_labels.config import load_config
from rewards_as_labels.data_registry import BENCHMARKS, INSTRUCTION, TRAINING_SETS
from rewards_as_labels.problems import read_problems

DAPO_HEAD = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_TAIL = '\n\nRemember to put your answer on its own line after "Answer:".'


def _rows(name: str, split: str) -> list[dict]:
    """Made-up rows in the column layout of each hub data set (nested fields included)."""
    k = 0 if split == "train" else 100  # different problems per split
    q = [f"Problem {k + i}: what is {k + i} + 1?" for i in range(12)]
    a = [str(k + i + 1) for i in range(12)]
    if name == "gsm8k":
        return [{"question": q[i], "answer": f"Work: {k + i} + 1 = {a[i]}.\n#### {a[i]}"} for i in range(12)] + [
            {"question": "Big one?", "answer": "So 1000 + 234.\n#### 1,234"},
            {"question": "No marker?", "answer": "the answer is 3"},  # no '####': dropped
        ]
    if name == "math":
        return [
            {
                "problem": q[i],
                "level": f"Level {1 + i % 5}",
                "type": "Algebra",
                "solution": f"Add one: $\\boxed{{{a[i]}}}$.",
            }
            for i in range(12)
        ] + [
            {"problem": "Half?", "level": "Level ?", "type": "Algebra", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
            {"problem": "Unboxed?", "level": "Level 2", "type": "Algebra", "solution": "no box here"},
        ]
    if name == "deepscaler":
        return [{"problem": q[i], "answer": a[i], "solution": "..."} for i in range(12)] + [
            {"problem": q[0], "answer": a[0], "solution": "a duplicate question"},
            {"problem": "Broken gold?", "answer": "+=", "solution": "..."},  # math-verify cannot parse it
            {"problem": "Set?", "answer": "\\{1,2\\}", "solution": "..."},
        ]
    if name == "numina_tir":
        return [
            {
                "problem": q[i],
                "solution": f"```python\nprint({k + i}+1)\n```\nSo $\\boxed{{{a[i]}}}$",
                "messages": [{"role": "user", "content": q[i]}],
            }
            for i in range(12)
        ]
    if name == "dapo17k":
        return [
            {
                "data_source": "math_dapo",
                "ability": "MATH",
                "prompt": [{"content": DAPO_HEAD + q[i % 6] + DAPO_TAIL, "role": "user"}],
                "reward_model": {"ground_truth": a[i % 6], "style": "rule"},
                "extra_info": {"index": f"id-{i % 6}"},
            }
            for i in range(12)
        ]  # each problem twice
    if name == "math500":
        return [
            {
                "problem": q[i],
                "solution": "...",
                "answer": a[i],
                "subject": "Algebra",
                "level": 1 + i % 5,
                "unique_id": f"test/algebra/{i}.json",
            }
            for i in range(6)
        ] + [
            {
                "problem": "Interval?",
                "solution": "...",
                "answer": "(0,1]",
                "subject": "Algebra",
                "level": 3,
                "unique_id": "test/algebra/x.json",
            }
        ]
    if name == "aime24":
        return [
            {
                "id": 60 + i,
                "problem": q[i],
                "solution": "...",
                "answer": a[i].zfill(3),
                "url": "https://x",
                "year": "2024",
            }
            for i in range(6)
        ]
    if name == "aime25":
        return [{"id": i, "problem": q[i], "answer": a[i]} for i in range(6)]
    if name == "amc23":
        return [{"id": i, "question": q[i], "answer": float(a[i]), "url": "https://x"} for i in range(6)]
    if name == "minerva":
        return [{"question": q[i], "answer": a[i]} for i in range(5)] + [{"question": "Percent?", "answer": "50\\%"}]
    if name == "olympiadbench":
        return [
            {
                "id": 2000 + i,
                "question": q[i],
                "solution": ["..."],
                "final_answer": [f"${a[i]}$"],
                "context": None,
                "is_multiple_answer": False,
                "unit": None,
                "answer_type": "Numerical",
                "subfield": "Algebra",
            }
            for i in range(5)
        ] + [
            {
                "id": 3000,
                "question": "Both roots?",
                "solution": ["..."],
                "final_answer": ["$2$", "$3$"],
                "context": None,
                "is_multiple_answer": True,
                "unit": None,
                "answer_type": "Numerical",
                "subfield": "Algebra",
            }
        ]
    raise KeyError(name)


def _write(tmp_path, name: str, fmt: str = "parquet") -> dict[str, str]:
    """One file per hub split of ``name``, in the hub's layout; returns ``data_files`` for :func:`prepare`."""
    files = {}
    for split in dict.fromkeys(R.spec_of(name).splits.values()):
        path = tmp_path / "fixtures" / f"{name}-{split}.{'parquet' if fmt == 'parquet' else 'jsonl'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = _rows(name, split)
        if fmt == "parquet":
            pd.DataFrame(rows).to_parquet(path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(path)
    return files


def _cfg(tmp_path, **overrides):
    return load_config(profile="smoke", overrides={"data_dir": str(tmp_path / "data"), **overrides})


def _cached(cfg, name: str, hub_split: str):
    """The Problems cached for one hub split (our splits of a training set are carved from these)."""
    return read_problems(D.cache_dir(cfg, name) / f"{hub_split}.jsonl", fix="")


@pytest.mark.parametrize("name", [*TRAINING_SETS, *BENCHMARKS])
def test_every_registry_entry_converts_its_hub_schema(tmp_path, name):
    cfg = _cfg(tmp_path)
    folder = D.prepare(cfg, name, data_files=_write(tmp_path, name))
    assert folder == tmp_path / "data" / "cache" / name and (folder / "manifest.json").is_file()
    spec = R.spec_of(name)
    problems = _cached(cfg, name, spec.splits["test" if spec.kind == "benchmark" else "train"])
    first = problems[0]
    assert first.question.startswith("Problem ") and first.question.endswith("+ 1?")  # DAPO's instruction is gone
    assert first.prompt == f"{first.question}\n\n{INSTRUCTION}"
    k = int(first.question.split(":")[0].split()[1])
    assert int(first.answer) == k + 1  # "061" (AIME), 1.0 (AMC), "$1$" (OlympiadBench) all become the integer
    assert first.id.startswith(f"{name}-") and len({p.id for p in problems}) == len(problems)


def test_answer_formats_and_drops_are_counted(tmp_path):
    cfg = _cfg(tmp_path)
    for name in ("gsm8k", "math", "deepscaler", "dapo17k", "olympiadbench", "minerva", "math500"):
        D.prepare(cfg, name, data_files=_write(tmp_path, name))
    answers = {
        name: {p.question: p.answer for p in _cached(cfg, name, next(iter(R.spec_of(name).splits.values())))}
        for name in ("gsm8k", "math", "deepscaler", "olympiadbench", "minerva", "math500")
    }
    assert answers["gsm8k"]["Big one?"] == "1234"  # text after ####, thousands comma dropped
    assert answers["math"]["Half?"] == "\\frac{1}{2}"  # last \boxed{} of the solution
    assert answers["deepscaler"]["Set?"] == "\\{1,2\\}"
    assert answers["olympiadbench"]["Both roots?"] == "2, 3"  # a list of parts of one answer, $ stripped
    assert answers["minerva"]["Percent?"] == "50\\%" and answers["math500"]["Interval?"] == "(0,1]"
    level = {p.question: p.level for p in _cached(cfg, "math", "train")}
    assert level["Problem 0: what is 0 + 1?"] == 1 and level["Half?"] == 0  # "Level ?" -> 0

    def report(name):
        return json.loads((D.cache_dir(cfg, name) / "manifest.json").read_text())["splits"]["train"]

    def dropped(name):
        return report(name)["dropped"]

    assert dropped("gsm8k")["no_answer"] == 1
    assert dropped("math")["no_answer"] == 1
    assert dropped("deepscaler") == {"no_question": 0, "no_answer": 0, "unusable_gold": 1, "duplicate": 1}
    assert dropped("dapo17k")["duplicate"] == 6 and len(_cached(cfg, "dapo17k", "train")) == 6
    assert "Broken gold?" not in answers["deepscaler"]  # never scored, not even 0
    # each drop is listed with its id, gold and why
    assert report("deepscaler")["dropped_problems"] == [
        {
            "id": "deepscaler-train-00012",
            "reason": "duplicate",
            "gold": "1",
            "why": "same question as deepscaler-train-00000",
        },
        {"id": "deepscaler-train-00013", "reason": "unusable_gold", "gold": "+=", "why": "unparsable"},
    ]
    assert report("deepscaler")["kept"] == 13 and report("deepscaler")["rows"] == 15


def test_jsonl_fixture_goes_through_the_same_path(tmp_path):
    cfg = _cfg(tmp_path)
    D.prepare(cfg, "gsm8k", data_files=_write(tmp_path, "gsm8k", fmt="json"))
    assert len(_cached(cfg, "gsm8k", "train")) == 13


def test_our_splits_of_a_training_set(tmp_path):
    # deepscaler has only a train split: validation and test are held out of it
    cfg = _cfg(tmp_path, task="deepscaler", n_validation=2, n_test=1, n_train=0)
    D.prepare(cfg, "deepscaler", data_files=_write(tmp_path, "deepscaler"))
    splits = {s: D.load_split(cfg, s) for s in ("train", "validation", "test")}
    assert {s: len(v) for s, v in splits.items()} == {
        "train": 11,
        "validation": 1,
        "test": 1,
    }  # 13 kept; <= 1/10 held out
    ids = [p.id for v in splits.values() for p in v]
    assert len(ids) == len(set(ids)) == 13
    assert [p.id for p in D.load_split(cfg, "validation")] == [p.id for p in splits["validation"]]  # deterministic
    capped = _cfg(tmp_path, task="deepscaler", n_validation=2, n_test=1, n_train=4)
    assert len(D.load_split(capped, "train")) == 4
    # gsm8k has a test split of its own
    cfg = _cfg(tmp_path, task="gsm8k")
    D.prepare(cfg, "gsm8k", data_files=_write(tmp_path, "gsm8k"))
    assert all(p.id.startswith("gsm8k-test-") for p in D.load_split(cfg, "test"))
    assert not {p.id for p in D.load_split(cfg, "test")} & {p.id for p in D.load_split(cfg, "train")}


def test_evaluation_sets(tmp_path):
    cfg = _cfg(tmp_path, eval_sets=["aime24", "amc23"])
    for name in cfg.eval_sets:
        D.prepare(cfg, name, data_files=_write(tmp_path, name))
    sets = D.evaluation_sets(cfg)
    assert list(sets) == ["aime24", "amc23"] and len(sets["aime24"]) == 6
    with pytest.raises(ValueError, match="training set, not a benchmark"):
        D.load_benchmark(cfg, "gsm8k")
    with pytest.raises(
        ValueError, match="unknown task 'aime24'; training sets: arithmetic, deepscaler.*put it in eval_sets"
    ):
        _cfg(tmp_path, task="aime24")  # a benchmark is no training set: refused with the config
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['gsm8k'\]"):
        _cfg(tmp_path, eval_sets=["gsm8k"])


def test_missing_cache_fails_fast_and_names_make_data(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"make data PROFILE=smoke DATA=gsm8k"):
        D.load_split(_cfg(tmp_path, task="gsm8k"), "train")
    with pytest.raises(ValueError, match=r"make data PROFILE=smoke EVAL=aime24"):
        D.evaluation_sets(_cfg(tmp_path, eval_sets=["aime24"]))
    assert time.perf_counter() - start < 2


def test_offline_prepare_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"HF_HUB_OFFLINE=1 is set.*make data PROFILE=smoke DATA=deepscaler"):
        D.prepare(_cfg(tmp_path), "deepscaler")
    assert time.perf_counter() - start < 2


def test_hub_path_uses_the_same_conversion(tmp_path, monkeypatch):
    """Only the source differs: the hub arguments go to the same fetch and conversion."""
    calls = []

    def fake_fetch(source):
        calls.append(source)
        return _rows("math", source[0][1]["split"])

    monkeypatch.setattr(D, "fetch_rows", fake_fetch)
    monkeypatch.setattr("rewards_as_labels.hub.offline_reason", lambda: None)
    cfg = _cfg(tmp_path)
    D.prepare(cfg, "math")
    assert calls[0] == [("EleutherAI/hendrycks_math", {"name": c, "split": "train"}) for c in R.MATH_SUBJECTS]
    assert json.loads((D.cache_dir(cfg, "math") / "manifest.json").read_text())["source"] == "hub"
    assert D.prepare(cfg, "math") and len(calls) == 2  # cached: no second download


def test_stale_cache_and_unknown_names(tmp_path):
    cfg = _cfg(tmp_path, eval_sets=["minerva"])
    folder = D.prepare(cfg, "minerva", data_files=_write(tmp_path, "minerva"))
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "fingerprint": "old"}))
    with pytest.raises(ValueError, match="stale cache.*another registry version.*make data PROFILE=smoke EVAL=minerva"):
        D.load_benchmark(cfg, "minerva")
    with pytest.raises(ValueError, match="unknown data set 'gsm9k'.*training sets: arithmetic, deepscaler"):
        R.spec_of("gsm9k")


@pytest.mark.slow
def test_evaluate_notebook_on_benchmarks(tmp_path, monkeypatch):
    """04_evaluate with eval_sets: per-benchmark rows, the Avg in evaluation.csv and the paper's table."""
    from pathlib import Path

    from rewards_as_labels.arithmetic import write_splits
    from rewards_as_labels.tools.notebook import run_notebook
    from rewards_as_labels.warmstart import warmstart

    monkeypatch.chdir(tmp_path)  # runs/ lives in tmp_path; the kernel inherits the working folder
    overrides = {"data_dir": str(tmp_path / "data"), "eval_sets": ["aime24", "amc23"]}
    cfg = _cfg(tmp_path, eval_sets=overrides["eval_sets"])
    for name in cfg.eval_sets:
        D.prepare(cfg, name, data_files=_write(tmp_path, name))
    write_splits(cfg)
    warmstart(cfg)
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "04_evaluate.ipynb"
    run_notebook(notebook, tmp_path / "04.ipynb", {"profile": "smoke", "overrides": overrides}, progress=False)
    tables = tmp_path / "runs" / "smoke" / "tables"
    long = pd.read_csv(tables / "benchmarks.csv")
    assert sorted(long["benchmark"]) == ["aime24", "amc23"] and set(long["n_problems"]) == {6}
    evaluation = pd.read_csv(tables / "evaluation.csv")
    assert list(evaluation.columns[:3]) == ["method", "seed", "checkpoint"] and {"pass@1", "pass@2", "greedy"} <= set(
        evaluation.columns
    )
    assert evaluation.loc[0, "pass@1"] == pytest.approx(long["pass@1"].mean())  # the Avg over benchmarks
    table = pd.read_csv(tables / "benchmarks_pass@1.csv", index_col=0)
    assert list(table.columns) == ["AIME24", "AMC23", "Avg"] and list(table.index) == ["base"]
