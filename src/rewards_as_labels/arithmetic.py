"""The embedded verifiable task: generated integer arithmetic with one exact answer each.

The paper trains on competition maths (DeepScaleR) with a 1.5B model; a 2-core CPU cannot.
We keep what matters for the method -- a prompt, a sampled answer, a binary verifiable
reward -- on a task a 0.5M-parameter model can partly solve after a short warm start.

Problem format: ``question = "47+385"``, ``prompt = "47+385="``, ``answer = "432"``; the
policy writes the digits of the answer (normal order) and then EOS.

Choices and deviations:
1) Difficulty level = the larger operand digit count; each operand draws its digit count
   independently from ``cfg.operand_digits`` (default ``[2, 3]``), so ``47+385`` is level 3.
2) ``cfg.operations`` is a string of operators drawn uniformly per problem, e.g. ``"+"``
   (default) or ``"+-*"``. For ``-`` the operands are swapped when needed so that every
   answer is a non-negative integer (no leading ``-`` for the tiny model to learn).
   ``*`` of two 3-digit operands has up to 6 answer digits: raise ``max_new_tokens``.
3) Splits are disjoint by *problem*, not only by string: ``47+385`` and ``385+47`` count as
   the same problem for the commutative ``+`` and ``*``, so a memorised warm-start pair
   cannot leak into the held-out sets mirrored.
4) Each split has its own random stream, seeded from ``(data_seed, split)``, and splits
   claim problems in the order test, validation, train, sft. Growing ``n_sft`` therefore
   never changes the test or validation problems.
   Consequence: small levels run out. There are only 4,095 distinct 2-digit + 2-digit
   sums, so with the default sizes the 2+2 share is about 25% in test and validation,
   15% in train and 2% in sft (the rest of each split keeps the drawn mixture). The
   held-out sets and the RL prompts keep the intended mixture; the warm start sees mostly
   harder problems, which is harmless for a base model that is stopped early anyway.
5) Files: ``{data_dir}/{task}/{split}.jsonl`` plus ``manifest.json`` (sizes, seed, generator
   parameters), each written atomically; the manifest is written last, so its presence
   means the data set is complete (``problems.py``). :func:`read_split` refuses data whose
   manifest disagrees with the config (stale data) instead of silently training on it.

Worked solutions (``solution_format: columns``, the ``long`` profile):
The paper's mechanism acts on tokens *inside* long responses, which a 4-token answer does not
have. With ``columns`` the policy writes the column addition before the answer, one step per
column, least significant first, each with its carry, then `` =`` and the sum
(:func:`column_solution`): ``47+385=`` -> ``7+5+0=12 4+8+1=13 0+3+1=4 =432``. It uses only
the tiny tokenizer's characters, so the model and vocabulary are those of the tiny profile.
6) Final answer = what the verifier extracts, the *final number* of the response: here the
   digits after the last ``=``. Only it is rewarded (the same ``verifier.score_completions``
   as the plain task); the steps are not scored, they matter only through the answer the
   policy derives from them, so a right answer after a wrong step is paid and a wrong one
   after right steps is not. A response that stops before ``=<answer>`` is judged on its
   last column sum (at most 19), never a gold of 4+ digits. No EOS within
   ``max_new_tokens`` scores 0 (``truncated``), as for every task.
7) Why column addition with the carry written in every column (``+0`` too): one fixed
   shape per column keeps the response length set by the operand length alone (4-5 digit
   operands: 38-53 tokens with EOS, mean 47), and each column's answer depends on the
   previous column's carry, so an early error propagates to the final answer. Multiplication
   with partial products was the alternative; it needs longer responses for the same number
   of steps and a larger model, so we did not pursue it.
8) The data files are those of the plain task (``answer`` is the final answer);
   ``solution_format`` only changes what the warm start teaches (:func:`target_text`) and is
   recorded in the manifest when it is not ``answer``. Use a ``data_dir`` of its own
   (``long`` has ``data/long``) so that the two profiles' data do not overwrite each other.

This is one source of ``data.py``, the entry point that also reads the hub's data sets and
your own files; call :func:`rewards_as_labels.data.load_split` rather than this module.
"""

from __future__ import annotations

import random
from itertools import zip_longest
from pathlib import Path

from .io import atomic_write_json
from .problems import MANIFEST, Problem, read_manifest, read_problems, write_problems

SPLITS = ("sft", "train", "validation", "test")
# Order in which splits claim problems: held-out sets first so they do not depend on n_sft.
CLAIM_ORDER = ("test", "validation", "train", "sft")
OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
COMMUTATIVE = frozenset("+*")
# what the policy writes after the prompt (``solution_format``): the bare answer, or the worked column addition
SOLUTION_FORMATS = ("answer", "columns")
# Bump when the generator changes so that old data on disk is reported as stale.
GENERATOR_VERSION = 1


def _operators(cfg) -> str:
    ops = "".join(dict.fromkeys(cfg.operations))  # dedupe, keep order
    bad = [op for op in ops if op not in OPERATORS]
    if not ops or bad:
        raise ValueError(f"operations={cfg.operations!r}: use one or more of {''.join(OPERATORS)!r}")
    return ops


def _digits(cfg) -> list[int]:
    digits = [int(d) for d in cfg.operand_digits]
    if not digits or any(d < 1 for d in digits):
        raise ValueError(f"operand_digits={cfg.operand_digits!r} must be a non-empty list of integers >= 1")
    return digits


def _solution_format(cfg) -> str:
    fmt = getattr(cfg, "solution_format", "answer")
    if fmt not in SOLUTION_FORMATS:
        raise ValueError(f"solution_format={fmt!r}: use one of {', '.join(SOLUTION_FORMATS)}")
    if fmt == "columns" and _operators(cfg) != "+":
        raise ValueError(
            f"solution_format='columns' writes column addition, so operations must be '+', got {cfg.operations!r}; "
            "set operations: '+' or solution_format: answer"
        )
    return fmt


def generator_params(cfg) -> dict:
    """Everything the generated data depends on; ``load_split`` compares it to the manifest."""
    if cfg.task != "arithmetic":
        raise ValueError(f"unknown task {cfg.task!r}; the embedded task is 'arithmetic'")
    params = {
        "task": cfg.task,
        "generator_version": GENERATOR_VERSION,
        "data_seed": int(cfg.data_seed),
        "operand_digits": _digits(cfg),
        "operations": _operators(cfg),
        "sizes": {split: int(getattr(cfg, f"n_{split}")) for split in SPLITS},
    }
    fmt = _solution_format(cfg)
    if fmt != "answer":  # recorded only when set, so manifests written before the option stay current
        params["solution_format"] = fmt
    return params


def _draw(rng: random.Random, ops: str, digits: list[int]) -> tuple[str, int, int, int]:
    op = rng.choice(ops)
    da, db = rng.choice(digits), rng.choice(digits)
    a = rng.randint(10 ** (da - 1), 10**da - 1)
    b = rng.randint(10 ** (db - 1), 10**db - 1)
    if op == "-" and a < b:
        a, b = b, a  # keep answers non-negative
    return op, a, b, max(da, db)


def _capacity(ops: str, digits: list[int]) -> int:
    """Rough count of distinct problems (unordered operand pairs per operator)."""
    values = sum(9 * 10 ** (d - 1) for d in set(digits))
    return len(ops) * values * (values + 1) // 2


def generate_splits(cfg) -> dict[str, list[Problem]]:
    """Generate the four splits ``sft, train, validation, test``, disjoint by problem.

    Deterministic in ``(data_seed, operand_digits, operations, sizes)``.

    >>> from rewards_as_labels.config import load_config
    >>> s = generate_splits(load_config(profile="smoke"))
    >>> {k: len(v) for k, v in s.items()}
    {'sft': 2000, 'train': 500, 'validation': 16, 'test': 16}
    """
    params = generator_params(cfg)
    ops, digits, sizes = params["operations"], params["operand_digits"], params["sizes"]
    total = sum(sizes.values())
    capacity = _capacity(ops, digits)
    # rejection sampling slows down sharply as the space fills up; half is a safe bound
    if total > capacity // 2:
        raise ValueError(
            f"{total} problems requested but operand_digits={digits}, operations={ops!r} "
            f"allow only about {capacity}; use more digits/operators or smaller n_* sizes"
        )
    taken: set[tuple] = set()
    splits: dict[str, list[Problem]] = {}
    for split in CLAIM_ORDER:
        rng = random.Random(f"{cfg.data_seed}:{split}")
        problems: list[Problem] = []
        while len(problems) < sizes[split]:
            op, a, b, level = _draw(rng, ops, digits)
            key = (op, *sorted((a, b))) if op in COMMUTATIVE else (op, a, b)
            if key in taken:
                continue
            taken.add(key)
            question = f"{a}{op}{b}"
            problems.append(
                Problem(
                    id=f"{split}-{len(problems):05d}",
                    question=question,
                    prompt=question + "=",
                    answer=str(OPERATORS[op](a, b)),
                    level=level,
                )
            )
        splits[split] = problems
    questions = {split: {p.question for p in probs} for split, probs in splits.items()}
    for i, s1 in enumerate(SPLITS):
        for s2 in SPLITS[i + 1 :]:
            assert not questions[s1] & questions[s2], f"splits {s1} and {s2} share questions"
    return {split: splits[split] for split in SPLITS}


def column_solution(question: str) -> str:
    """The worked column addition of ``question`` (``"a+b"``), ending in ``=`` and the sum.

    One step per column, least significant first: ``x+y+c=s`` with the column's digits
    (0 where an operand is shorter), the carry in ``c`` (0 or 1; 0 in the first column) and
    the column sum ``s``; steps are separated by spaces, then `` =`` and the final answer.

    >>> column_solution("47+385")
    '7+5+0=12 4+8+1=13 0+3+1=4 =432'
    """
    a, op, b = question.partition("+")
    if not (op and a.isdigit() and b.isdigit()):
        raise ValueError(f"column_solution needs a question 'a+b' of two non-negative integers, got {question!r}")
    steps, carry = [], 0
    for x, y in zip_longest(reversed(a), reversed(b), fillvalue="0"):
        total = int(x) + int(y) + carry
        steps.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return " ".join(steps) + f" ={int(a) + int(b)}"


def target_text(cfg, problem: Problem) -> str:
    """What the warm start teaches the policy to write after ``problem.prompt`` (EOS follows).

    ``solution_format: answer``: the answer itself; ``columns``: :func:`column_solution`.
    Either way the reward reads only the final answer (module docstring).
    """
    if _solution_format(cfg) == "columns":
        return column_solution(problem.question)
    return problem.answer


def task_dir(cfg) -> Path:
    """Folder that holds the JSONL splits and the manifest of ``cfg``'s task."""
    return Path(cfg.data_dir) / cfg.task


def write_splits(cfg, force: bool = False) -> Path:
    """Write ``{data_dir}/{task}/{split}.jsonl`` and ``manifest.json``; return the folder.

    Idempotent: if the manifest already matches ``cfg`` and every split file is there,
    nothing is rewritten (pass ``force=True`` to regenerate anyway).
    """
    folder = task_dir(cfg)
    params = generator_params(cfg)
    complete = all((folder / f"{s}.jsonl").is_file() for s in SPLITS)
    if not force and complete and read_manifest(folder) == params:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    # drop the old manifest first: a crash mid-way must not leave old metadata over new files
    (folder / MANIFEST).unlink(missing_ok=True)
    for split, problems in generate_splits(cfg).items():
        write_problems(folder / f"{split}.jsonl", problems)
    atomic_write_json(folder / MANIFEST, params)
    return folder


def read_split(cfg, split: str) -> list[Problem]:
    """Read one split written by :func:`write_splits`, refusing missing or stale data."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    folder = task_dir(cfg)
    path = folder / f"{split}.jsonl"
    manifest = read_manifest(folder)
    fix = f"run `make data PROFILE={cfg.profile}` to (re)generate it"
    if manifest is None or not path.is_file():
        raise ValueError(f"no {split!r} data at {path}; {fix}")
    expected = generator_params(cfg)
    if manifest != expected:
        diff = sorted(k for k in set(manifest) | set(expected) if manifest.get(k) != expected.get(k))
        raise ValueError(
            f"stale data in {folder}: manifest differs from the config in {', '.join(diff)} "
            f"(on disk {[manifest.get(k) for k in diff]}, config {[expected.get(k) for k in diff]}); {fix}"
        )
    problems = read_problems(path, fix)
    if len(problems) != expected["sizes"][split]:
        raise ValueError(f"{path} holds {len(problems)} problems, manifest says {expected['sizes'][split]}; {fix}")
    return problems
