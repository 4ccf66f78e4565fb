"""The long-answer task (``solution_format: columns``, profile ``long``): format, lengths, splits,
reward on the final answer only, and two training steps end to end through the CLI."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from rewards_as_labels.arithmetic import column_solution, generate_splits, generator_params, target_text
from rewards_as_labels.config import load_config
from rewards_as_labels.modeling import build_tiny_model, build_tokenizer
from rewards_as_labels.verifier import score_completions
from rewards_as_labels.warmstart import IGNORE, encode_supervised

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_sft": 400, "n_train": 100, "n_validation": 16, "n_test": 16}


def _long(tmp_path, **overrides):
    return load_config(profile="long", overrides={"data_dir": str(tmp_path / "data"), **SMALL, **overrides})


def _check_steps(question: str, text: str) -> None:
    """Every column step of ``text`` is right, in order, and the text ends with ``=`` and the sum."""
    a, b = question.split("+")
    *steps, final = text.split(" ")
    assert final == f"={int(a) + int(b)}"
    width = max(len(a), len(b))
    assert len(steps) == width
    carry = 0
    for i, step in enumerate(steps):
        x, y = int(a.zfill(width)[-1 - i]), int(b.zfill(width)[-1 - i])
        assert step == f"{x}+{y}+{carry}={x + y + carry}"
        carry = (x + y + carry) // 10


@pytest.mark.parametrize("question", ["47+385", "9999+1", "1+9999", "55555+44445", "10000+10000", "0+0"])
def test_column_solution_steps_and_answer(question):
    _check_steps(question, column_solution(question))


@pytest.mark.parametrize("question", ["47-3", "47", "a+b", "+3", ""])
def test_column_solution_refuses_other_questions(question):
    with pytest.raises(ValueError, match="a\\+b"):
        column_solution(question)


def test_long_targets_are_long_and_use_the_tiny_vocabulary(tmp_path):
    cfg = _long(tmp_path)
    tok = build_tokenizer()
    splits = generate_splits(cfg)
    lengths = []
    for problems in splits.values():
        for p in problems:
            text = target_text(cfg, p)
            _check_steps(p.question, text)
            ids = tok(text, add_special_tokens=False).input_ids
            assert tok.unk_token_id not in ids and tok.decode(ids) == text
            lengths.append(len(ids) + 1)  # + EOS
    assert statistics.mean(lengths) >= 40
    # the longest response (and its EOS) fits the budget: no correct solution is ever truncated;
    # and the longest prompt plus that budget fits the tiny model's positions
    assert max(lengths) <= cfg.max_new_tokens
    longest_prompt = max(len(p.prompt) for problems in splits.values() for p in problems)
    assert longest_prompt + cfg.max_new_tokens <= build_tiny_model(cfg, tok).config.max_position_embeddings
    assert {len(p.question.split("+")[0]) for p in splits["test"]} == {4, 5}


def test_long_splits_are_disjoint_and_the_plain_format_is_unchanged(tmp_path):
    cfg = _long(tmp_path)
    questions = {split: {p.question for p in probs} for split, probs in generate_splits(cfg).items()}
    names = list(questions)
    for i, s1 in enumerate(names):
        for s2 in names[i + 1 :]:
            assert not questions[s1] & questions[s2]
    assert generator_params(cfg)["solution_format"] == "columns"
    # the plain task's manifest has no new key, so data written before the option stays current
    plain = load_config(profile="smoke")
    assert (
        "solution_format" not in generator_params(plain)
        and target_text(plain, generate_splits(plain)["test"][0]).isdigit()
    )
    # and the two profiles' data live in different folders
    assert load_config(profile="long").data_dir != load_config(profile="tiny").data_dir


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"solution_format": "steps"}, "unknown solution_format 'steps'; valid solution_formats: answer, columns"),
        ({"operations": "+-"}, "operations must be '\\+'"),
    ],
)
def test_bad_solution_format_is_a_clear_error(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        generator_params(_long(tmp_path, **overrides))


def test_reward_reads_the_final_answer_only():
    right = column_solution("47+385")  # '7+5+0=12 4+8+1=13 0+3+1=4 =432'
    wrong_steps = "7+5+0=11 4+8+1=99 0+3+1=7 =432"
    wrong_final = right[: -len("432")] + "431"
    no_final = right[: right.rindex(" ")]  # stops after the last column: its sum 4 is the final number
    texts = [right, wrong_steps, wrong_final, no_final, right]
    rewards, counts = score_completions(texts, ["432"] * 5, [False, False, False, False, True])
    assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]  # the last one: truncated (no EOS)
    assert counts["correct"] == 2 and counts["wrong"] == 2 and counts["truncated"] == 1


def test_warm_start_labels_cover_the_whole_solution(tmp_path):
    cfg = _long(tmp_path)
    tok = build_tokenizer()
    p = generate_splits(cfg)["sft"][0]
    ids, mask, labels = encode_supervised(tok, [p], [target_text(cfg, p)])
    taught = [t for t in labels[0].tolist() if t != IGNORE]
    assert tok.decode(taught[:-1]) == column_solution(p.question) and taught[-1] == tok.eos_token_id
    assert labels[0, : len(p.prompt)].eq(IGNORE).all()


@pytest.mark.slow
def test_long_profile_trains_two_steps_through_the_cli(tmp_path):
    """data, warm start and 2 RL steps of the long profile (small sizes), as `make` runs them."""
    small = [f"{k}={v}" for k, v in SMALL.items()] + [
        f"data_dir={tmp_path / 'data'}",
        "warmstart_steps=100",
        "warmstart_batch_size=32",
        "warmstart_warmup=10",
        "prompts_per_step=4",
        "rollouts_per_prompt=4",
        "minibatches_per_step=4",
        "total_steps=2",
        "eval_every=1",
        "eval_prompts=4",
        "eval_samples=2",
        "checkpoint_every=2",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for command in ("data", "warmstart", "train"):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "rewards_as_labels",
                command,
                "--profile",
                "long",
                "--no-progress",
                "method=grpo",
                *small,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "runs" / "long" / "grpo-s0"
    final = json.loads((run / "final.json").read_text())
    assert final["step"] == 2 and 0.0 <= final["eval/pass@1"] <= 1.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert min(r["response/length_mean"] for r in rows) >= 40
    assert all(r["response/truncated_frac"] < 0.5 for r in rows)  # long because it learnt the format, not cut off
