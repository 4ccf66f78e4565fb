"""Your own data files wherever a data set name is accepted: each layout, folders, fingerprints,
foreign caches, and ``make data`` with six benchmark files. Every fixture is written here (made-up
rows in each layout, parquet through pandas/pyarrow); nothing comes from the hub."""

import json
import os

import pandas as pd
import pytest

from rewards_as_labels import data as D
from rewards_as_labels.__main__ import main
from rewards_as_labels.config import load_config
from rewards_as_labels.data_registry import INSTRUCTION

VERL_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def _verl(source: str, golds: list, system: bool = False) -> pd.DataFrame:
    """verl's RL layout: chat prompt with the instruction, reward_model.ground_truth, data_source, extra_info."""
    rows = []
    for i, gold in enumerate(golds):
        messages = [{"role": "user", "content": f"{source} problem {i}: compute it. {VERL_INSTRUCTION}"}]
        if system and i == 0:
            messages.insert(0, {"role": "system", "content": "You are a careful mathematician."})
        rows.append(
            {
                "data_source": source,
                "prompt": messages,
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": gold},
                "extra_info": {"index": i, "split": "test"},
            }
        )
    return pd.DataFrame(rows)


def _cfg(tmp_path, **overrides):
    return load_config(profile="smoke", overrides={"data_dir": str(tmp_path / "data"), **overrides})


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


# ----------------------------------------------------------------------------- layouts
def test_verl_parquet_lists_are_alternatives_and_the_prompt_is_kept_as_given(tmp_path):
    path = tmp_path / "benchmarks" / "minerva.parquet"
    path.parent.mkdir()
    golds = [["0.01", "0.02"], ["5"], ["\\frac{1}{2}", "+="], ["+=", "+-"], ["7", "7"]]
    _verl("minerva", golds, system=True).to_parquet(path)
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    folder = D.prepare(cfg, str(path))
    assert folder == tmp_path / "data" / "cache" / "minerva"
    problems = D.load_benchmark(cfg, str(path))
    answers = {p.id: p.answer for p in problems}
    assert answers == {
        "minerva-test-00000": ("0.01", "0.02"),  # alternatives, not one answer "0.01, 0.02"
        "minerva-test-00001": "5",
        "minerva-test-00002": "\\frac{1}{2}",  # the unusable alternative is dropped
        "minerva-test-00004": "7",  # a repeated alternative counts once
    }
    first = problems[0]
    assert first.prompt == first.question == f"minerva problem 0: compute it. {VERL_INSTRUCTION}"
    assert INSTRUCTION not in first.prompt.replace(VERL_INSTRUCTION, "")  # ours is not added again
    report = _manifest(folder)["splits"]["test"]
    assert report["kept"] == 4 and report["dropped"]["unusable_gold"] == 1
    assert report["dropped_problems"] == [
        {
            "id": "minerva-test-00003",
            "reason": "unusable_gold",
            "gold": ["+=", "+-"],
            "why": "+=: unparsable; +-: unparsable",
        }
    ]
    assert report["dropped_alternatives"] == [{"id": "minerva-test-00002", "gold": "+=", "why": "unparsable"}]
    assert report["other_messages"] == 1  # the system message is counted, not silently lost
    assert _manifest(folder)["layout"] == "verl"


def test_verl_number_and_string_ground_truths(tmp_path):
    path = tmp_path / "amc23.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _verl("amc23", [27.0, 3.5, 4.0]).to_dict("records")))
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    D.prepare(cfg, str(path))
    assert [p.answer for p in D.load_benchmark(cfg, str(path))] == ["27", "3.5", "4"]


def test_flat_jsonl_problem_answer(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"problem": "What is 2+2?", "answer": "$4$"},
        {"problem": "Half of 1?", "answer": "\\frac{1}{2}"},
        {"problem": "What is 2+2?", "answer": "4"},
        {"problem": "Broken?", "answer": "+="},
        {"problem": "Broken?", "answer": "5"},
    ]  # a repeat of a dropped problem is no duplicate
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    folder = D.prepare(cfg, str(path))
    problems = D.load_benchmark(cfg, str(path))
    assert [(p.question, p.answer) for p in problems] == [
        ("What is 2+2?", "4"),
        ("Half of 1?", "\\frac{1}{2}"),
        ("Broken?", "5"),
    ]
    assert problems[0].prompt == f"What is 2+2?\n\n{INSTRUCTION}"  # a bare question gets our instruction
    manifest = _manifest(folder)
    assert manifest["layout"] == "flat problem/answer"
    assert manifest["splits"]["test"]["dropped"] == {
        "no_question": 0,
        "duplicate": 1,
        "no_answer": 0,
        "unusable_gold": 1,
    }


def test_flat_csv_question_solution_boxed(tmp_path):
    path = tmp_path / "quiz.csv"
    pd.DataFrame(
        {
            "question": ["Sum of 1 and 2?", "Unboxed?", "Root?"],
            "solution": ["1 + 2 = $\\boxed{3}$.", "it is 3", "We get \\boxed{\\sqrt{2}}"],
        }
    ).to_csv(path, index=False)
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    folder = D.prepare(cfg, str(path))
    assert [p.answer for p in D.load_benchmark(cfg, str(path))] == ["3", "\\sqrt{2}"]
    report = _manifest(folder)["splits"]["test"]
    assert _manifest(folder)["layout"] == "flat question/solution" and report["dropped"]["no_answer"] == 1
    assert report["dropped_problems"][0]["id"] == "quiz-test-00001"


def test_explicit_mapping_from_the_config(tmp_path):
    path = tmp_path / "custom.jsonl"
    rows = [{"query": f"Q{i}?", "target": [str(i), f"{i}.0"], "difficulty": f"hard {i}"} for i in range(1, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"no supported layout among its columns \['query', 'target', 'difficulty'\]"):
        D.prepare(_cfg(tmp_path, eval_sets=[str(path)]), str(path))
    # on the command line: --data_fields '{question: query, answer: target, level: difficulty, gold_list: parts}'
    cfg = _cfg(
        tmp_path,
        eval_sets=[str(path)],
        data_fields="{question: query, answer: target, level: difficulty, gold_list: parts}",
    )
    assert cfg.data_fields == {"question": "query", "answer": "target", "level": "difficulty", "gold_list": "parts"}
    D.prepare(cfg, str(path))
    assert [(p.answer, p.level) for p in D.load_benchmark(cfg, str(path))] == [
        ("1, 1.0", 1),
        ("2, 2.0", 2),
        ("3, 3.0", 3),
    ]
    # changing the mapping makes the cache stale until make data runs again
    alternatives = _cfg(tmp_path, eval_sets=[str(path)], data_fields={"question": "query", "answer": "target"})
    with pytest.raises(ValueError, match="stale cache.*data_fields changed"):
        D.load_benchmark(alternatives, str(path))
    D.prepare(alternatives, str(path))
    assert D.load_benchmark(alternatives, str(path))[0].answer == ("1", "1.0")


def test_a_mapping_can_replace_a_verl_files_prompt_with_ours(tmp_path):
    """The verl prompt is used as given by default; a mapping whose fields the file has comes first."""
    path = tmp_path / "aime24.parquet"
    frame = _verl("aime24", ["1"])
    frame["extra_info"] = [{"index": 0, "question": "Bare question?"}]
    frame.to_parquet(path)
    cfg = _cfg(
        tmp_path,
        eval_sets=[str(path)],
        data_fields={"question": "extra_info.question", "answer": "reward_model.ground_truth"},
    )
    D.prepare(cfg, str(path))
    assert D.load_benchmark(cfg, str(path))[0].prompt == f"Bare question?\n\n{INSTRUCTION}"


def test_bad_data_fields_are_refused_with_the_keys(tmp_path):
    with pytest.raises(
        ValueError, match="unknown keys \\['questoin'\\], missing keys \\['question'\\].*keys: question"
    ):
        _cfg(tmp_path, data_fields={"questoin": "q", "answer": "a"})
    with pytest.raises(ValueError, match="gold_list='any'; valid: alternatives, parts"):
        _cfg(tmp_path, data_fields={"question": "q", "answer": "a", "gold_list": "any"})


def test_a_folder_of_files_is_one_data_set(tmp_path):
    folder = tmp_path / "olympiad"
    folder.mkdir()
    _verl("olympiad", [["1"], ["2"]]).to_parquet(folder / "part-0.parquet")
    _verl("olympiad-b", [["3"], ["4", "5"]]).to_parquet(folder / "part-1.parquet")
    (folder / "README.md").write_text("not data")
    cfg = _cfg(tmp_path, eval_sets=[str(folder) + "/"])
    assert D.data_name(str(folder) + "/") == "olympiad"
    D.prepare(cfg, str(folder) + "/")
    problems = D.load_benchmark(cfg, str(folder) + "/")
    assert [p.id for p in problems] == [f"olympiad-test-0000{i}" for i in range(4)]
    assert [p.answer for p in problems] == ["1", "2", "3", ("4", "5")]
    pd.DataFrame({"question": ["q"], "answer": ["1"]}).to_parquet(folder / "part-2.parquet")
    with pytest.raises(ValueError, match="stale cache.*part-2.parquet changed"):
        D.load_benchmark(cfg, str(folder))
    with pytest.raises(ValueError, match="different layouts"):
        D.prepare(cfg, str(folder))


def test_a_changed_file_invalidates_its_cache_even_with_the_same_mtime(tmp_path):
    path = tmp_path / "aime24.parquet"
    _verl("aime24", ["1", "2"]).to_parquet(path)
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    D.prepare(cfg, str(path))
    stat = os.stat(path)
    _verl("aime24", ["1", "3"]).to_parquet(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` or rsync -t would leave it
    with pytest.raises(ValueError, match=rf"stale cache.*aime24.parquet changed.*make data PROFILE=smoke EVAL={path}"):
        D.load_benchmark(cfg, str(path))
    D.prepare(cfg, str(path))  # the content's sha256, not the name or the mtime, decides
    assert [p.answer for p in D.load_benchmark(cfg, str(path))] == ["1", "3"]


# ----------------------------------------------------------------------------- errors
def test_errors_about_a_users_file_talk_about_the_file_and_the_config(tmp_path):
    path = tmp_path / "broken.parquet"
    frame = _verl("broken", ["1"])
    frame["reward_model"] = [{"style": "rule"}]  # no ground_truth
    frame.to_parquet(path)
    with pytest.raises(ValueError, match="broken: row 0 has no field 'reward_model.ground_truth'") as info:
        D.prepare(_cfg(tmp_path, eval_sets=[str(path)]), str(path))
    assert "data_fields" in str(info.value) and str(path) in str(info.value) and "data_registry" not in str(info.value)
    other = tmp_path / "table.csv"
    pd.DataFrame({"x": [1], "y": [2]}).to_csv(other, index=False)
    with pytest.raises(
        ValueError, match=r"table.csv'.*columns \['x', 'y'\].*verl: prompt.*flat: problem or question.*data_fields"
    ):
        D.prepare(_cfg(tmp_path, eval_sets=[str(other)]), str(other))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    with pytest.raises(ValueError, match="garbage.parquet: datasets cannot read it as parquet"):
        D.prepare(_cfg(tmp_path, eval_sets=[str(garbage)]), str(garbage))


def test_names_are_checked_with_the_config(tmp_path):
    with pytest.raises(ValueError, match="no such file or folder.*working folder"):
        _cfg(tmp_path, eval_sets=[str(tmp_path / "missing.parquet")])
    with pytest.raises(ValueError, match="unknown benchmark.*or a path to your own"):
        _cfg(tmp_path, eval_sets=["aime2024"])
    a, b = tmp_path / "a" / "aime24.parquet", tmp_path / "b" / "aime24.jsonl"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("")
    with pytest.raises(ValueError, match=r"name the data set\(s\) \['aime24'\] more than once"):
        _cfg(tmp_path, eval_sets=[str(a), str(b)])
    with pytest.raises(ValueError, match=r"\['aime24'\] more than once"):
        _cfg(tmp_path, eval_sets=["aime24", str(a)])  # would share the registry's cache folder


def test_foreign_caches_say_what_is_wrong_and_how_to_fix_it(tmp_path):
    path = tmp_path / "aime25.parquet"
    _verl("aime25", ["1", "2"]).to_parquet(path)
    cfg = _cfg(tmp_path, eval_sets=[str(path)])
    folder = D.prepare(cfg, str(path))
    manifest, lines = _manifest(folder), (folder / "test.jsonl").read_text().splitlines()

    del manifest["fingerprint"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"has no 'fingerprint' field.*hand-written.*make data PROFILE=smoke EVAL="):
        D.load_benchmark(cfg, str(path))

    D.prepare(cfg, str(path))  # rebuilt
    (folder / "test.jsonl").write_text(json.dumps({**json.loads(lines[0]), "source": "x"}) + "\n" + lines[1] + "\n")
    with pytest.raises(
        ValueError, match=r"test.jsonl line 1 has field\(s\) \['source'\] that a Problem does not have.*make data"
    ):
        D.load_benchmark(cfg, str(path))
    row = json.loads(lines[0])
    del row["level"]
    (folder / "test.jsonl").write_text(json.dumps({**row, "answer": 3}) + "\n")
    with pytest.raises(ValueError, match=r"line 1 lacks field\(s\) \['level'\]"):
        D.load_benchmark(cfg, str(path))
    (folder / "test.jsonl").write_text(json.dumps({**row, "level": 0, "answer": 3}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'answer' is 3, expected a string or list"):
        D.load_benchmark(cfg, str(path))


# ----------------------------------------------------------------------------- end to end
def test_a_training_file_as_the_task(tmp_path):
    path = tmp_path / "train" / "mydata.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps({"question": f"{i} plus 1?", "answer": str(i + 1)}) + "\n" for i in range(40)))
    cfg = _cfg(tmp_path, task=str(path), n_validation=3, n_test=2, n_train=0)
    assert D.cache_dir(cfg, cfg.task) == tmp_path / "data" / "cache" / "mydata"
    D.cmd_data(cfg)
    splits = {s: D.load_split(cfg, s) for s in ("train", "validation", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"train": 35, "validation": 3, "test": 2}
    assert len({p.id for v in splits.values() for p in v}) == 40
    assert all(p.id.startswith("mydata-train-") for v in splits.values() for p in v)
    relative = load_config(
        profile="smoke",
        overrides={"data_dir": str(tmp_path / "data"), "task": os.path.relpath(path), "n_validation": 3, "n_test": 2},
    )
    assert D.load_split(relative, "validation") == splits["validation"]  # the split does not depend on the spelling
    with pytest.raises(ValueError, match="split 'sft' does not exist"):
        D.load_split(cfg, "sft")


SIX = {  # name -> ground truths, in verl's layout as RLVR projects publish these benchmarks
    "aime24": ["204", "25", "116"],
    "aime25": ["70", "588"],
    "amc23": [["27"], ["3"], ["+="]],
    "math500": [["\\frac{1}{2}"], ["(0,1]"], ["10"], ["10"]],
    "minerva": [["0.01", "0.02"], ["5"], ["+=", "7"], ["+="]],
    "olympiadbench": [["2"], ["3", "4"]],
}


def test_make_data_with_six_benchmark_files(tmp_path, monkeypatch, capsys):
    """`make data PROFILE=tiny EVAL=benchmarks/aime24.parquet,...` offline, on files in the verl layout."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks").mkdir()
    for name, golds in SIX.items():
        frame = _verl(name, golds)
        if name == "math500":
            frame["prompt"] = [frame["prompt"][min(i, 2)] for i in range(4)]  # the last problem repeats the third
        frame.to_parquet(tmp_path / "benchmarks" / f"{name}.parquet")
    paths = ",".join(f"benchmarks/{name}.parquet" for name in SIX)
    assert main(["data", "--profile", "smoke", "--data_dir", "data", "--eval_sets", paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("data: data/arithmetic sft=2000")  # the task's own data, as before
    summary = {line.split(":")[1].strip(): line for line in out if line.startswith("data: ") and "kept" in line}
    assert list(summary) == list(SIX)
    assert (
        "aime24: 3 kept, 0 dropped  [benchmarks/aime24.parquet, verl layout -> data/cache/aime24]" in summary["aime24"]
    )
    assert "amc23: 2 kept, 1 dropped (unusable_gold 1)" in summary["amc23"]
    assert "math500: 3 kept, 1 dropped (duplicate 1)" in summary["math500"]
    assert "minerva: 3 kept, 1 dropped (unusable_gold 1), 1 alternative gold(s) dropped" in summary["minerva"]
    assert "  dropped amc23-test-00002 (unusable_gold): gold '+=': unparsable" in out
    assert "  dropped math500-test-00003 (duplicate): gold '10': same question as math500-test-00002" in out
    assert "  dropped an alternative of minerva-test-00002: gold '+=': unparsable" in out
    assert "  (listed in data/cache/minerva/manifest.json)" in out

    cfg = load_config(profile="smoke", overrides={"data_dir": "data", "eval_sets": paths})
    sets = D.evaluation_sets(cfg)
    assert list(sets) == list(SIX)  # named after the files' stems, in the order given
    assert {name: len(problems) for name, problems in sets.items()} == {
        "aime24": 3,
        "aime25": 2,
        "amc23": 2,
        "math500": 3,
        "minerva": 3,
        "olympiadbench": 2,
    }
    assert sets["minerva"][0].answer == ("0.01", "0.02") and sets["minerva"][2].answer == "7"
    assert sets["olympiadbench"][1].answer == ("3", "4")  # verl lists are alternatives, whatever the source

    assert main(["data", "--profile", "smoke", "--data_dir", "data", "--eval_sets", paths]) == 0  # cached: same report
    assert capsys.readouterr().out.splitlines() == out


def test_evaluate_reports_your_files_in_the_benchmark_table(smoke_base, tmp_path, monkeypatch):
    """`make evaluate EVAL=<files>`: one column per file, named after its stem, beside the Avg."""
    import shutil

    from rewards_as_labels.evaluation import evaluate_runs

    root, base = smoke_base
    monkeypatch.chdir(tmp_path)
    shutil.copytree(
        root / "runs" / "smoke" / "warmstart", tmp_path / "runs" / "smoke" / "warmstart"
    )  # the base model only
    for name, golds in {"aime24": ["5", "12"], "minerva": [["0.01", "0.02"], ["7"]]}.items():
        _verl(name, golds).to_parquet(tmp_path / f"{name}.parquet")
    cfg = load_config(profile="smoke", overrides={**base, "eval_sets": "aime24.parquet,minerva.parquet"})
    D.cmd_data(cfg)
    out = evaluate_runs(cfg, samples=2)
    assert list(out["table"].columns) == ["AIME24", "Minerva", "Avg"] and list(out["table"].index) == ["base"]
    bench = out["benchmarks"]
    assert sorted(bench["benchmark"]) == ["aime24", "minerva"] and (bench["n_problems"] == 2).all()
    assert (tmp_path / "runs" / "smoke" / "tables" / "benchmarks_pass@1.csv").is_file()
