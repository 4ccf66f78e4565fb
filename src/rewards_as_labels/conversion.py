r"""Rows of any source -> Problems, each gold answer checked once.

A spec (a registry entry, or one built for your file by ``local_files.py``) says which
fields to read. Per row, in order:

    question <- field ``spec.question`` (chat messages: the user message), ``spec.strip``
                regexes removed; empty -> dropped ``no_question``; a question kept
                before -> dropped ``duplicate`` (DAPO-Math-17k repeats each about 100 times)
    golds    <- field ``spec.answer`` read by ``spec.answer_format`` (:func:`gold_texts`);
                a list holds ``alternatives`` or the ``parts`` of one answer (``spec.gold_list``);
                none -> dropped ``no_answer``
    check    <- ``verifier.unusable_gold`` once per distinct gold: unusable alternatives are
                dropped; none left -> dropped ``unusable_gold`` (so it can never score 1)
    prompt   <- field ``spec.prompt`` as given (chat messages: the user message, with the
                file's own instruction), else question + ``INSTRUCTION``
    Problem(id = ``<name>-<split>-<row index>`` (stable across drops), question, prompt,
            answer = the gold, or a tuple of alternatives, level = the first integer of
            field ``spec.level`` (MATH's "Level 3" -> 3), else 0)

Every drop is counted by reason and listed (id, gold, why; the first ``LIST_LIMIT`` per
reason) in the report that ``data.py`` writes to the cache manifest and prints.

Choices:
1) Gold formats: ``plain`` (surrounding ``$`` removed, integral floats written as
   integers), ``gsm8k`` (text after ``####``, thousands commas dropped), ``boxed`` (last
   ``\boxed{}`` of a solution).
2) Chat messages other than the last user message (a system prompt in a verl file) are
   not part of a Problem; rows that had some are counted (``other_messages``) so the
   loss is visible. Set ``system_prompt`` in the config to send one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .data_registry import INSTRUCTION, DatasetSpec
from .problems import Problem
from .verifier import _last_boxed, unusable_gold

REASONS = ("no_question", "duplicate", "no_answer", "unusable_gold")
GOLD_LISTS = ("alternatives", "parts")
ANSWER_FORMATS = ("plain", "gsm8k", "boxed")
LIST_LIMIT = 100  # dropped problems listed per reason in a manifest; all are counted


def field_value(row: Mapping[str, Any], path: str) -> Any:
    """``row`` at a dotted path; integer parts index lists.

    >>> field_value({"prompt": [{"content": "hi"}]}, "prompt.0.content")
    'hi'
    """
    value: Any = row
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
    return value


def _is_chat(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(m, Mapping) and "content" in m for m in value)
    )


def message_text(value: Any) -> tuple[str, bool]:
    """The text of a field, and whether other chat messages were left out.

    A list of chat messages gives its last user message (the last message without roles).

    >>> message_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}])
    ('1+1?', True)
    >>> message_text("1+1?")
    ('1+1?', False)
    """
    if not _is_chat(value):
        return ("" if value is None else str(value)), False
    users = [m for m in value if m.get("role", "user") == "user"] or list(value)
    return str(users[-1]["content"] or ""), len(value) > 1


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return text


def gold_texts(value: Any, answer_format: str = "plain", gold_list: str = "alternatives") -> list[str]:
    """The gold strings in a data set's answer field: one, alternatives, or none.

    >>> gold_texts("She pays 3 * 4 = 12.\\n#### 1,200", "gsm8k"), gold_texts(27.0)
    (['1200'], ['27'])
    >>> gold_texts("so $x = \\\\boxed{\\\\frac{1}{2}}$.", "boxed")
    ['\\\\frac{1}{2}']
    >>> gold_texts(["$3$", "$4$"], gold_list="parts"), gold_texts(["0.01", "0.02"], gold_list="alternatives")
    (['3, 4'], ['0.01', '0.02'])
    """
    if gold_list not in GOLD_LISTS:
        raise ValueError(f"unknown gold_list {gold_list!r}; valid: {', '.join(GOLD_LISTS)}")
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        texts = [t for v in value for t in gold_texts(v, answer_format, gold_list)]
        if gold_list == "parts":
            return [", ".join(texts)] if texts else []
        return list(dict.fromkeys(texts))  # repeated alternatives once
    if answer_format == "gsm8k":
        text = str(value)
        answer = text.rsplit("####", 1)[1].strip().replace(",", "") if "####" in text else ""
    elif answer_format == "boxed":
        answer = _plain(_last_boxed(str(value)) or "")
    elif answer_format == "plain":
        answer = _plain(value)
    else:
        raise ValueError(f"unknown answer_format {answer_format!r}; valid: {', '.join(ANSWER_FORMATS)}")
    return [answer] if answer else []


def _level(value: Any) -> int:
    match = re.search(r"\d+", str(value)) if value is not None else None
    return int(match.group(0)) if match else 0


def _optional(row: Mapping[str, Any], path: str | None) -> Any:
    try:
        return field_value(row, path) if path else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _field(row: Mapping[str, Any], path: str, where: str, fix: str) -> Any:
    try:
        return field_value(row, path)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} has no field {path!r} (columns: {sorted(row)}); {fix}") from exc


def rows_to_problems(spec: DatasetSpec, rows: list[Mapping], split: str, fix: str) -> tuple[list[Problem], dict]:
    """Problems of one source split, and a report: rows, kept, drops by reason, drops listed.

    ``fix`` ends the error raised when a row lacks a field of ``spec`` (what the user should
    change: the registry entry, or their file / ``data_fields``). Calls the verifier's gold
    check (math-verify, ``signal.alarm`` timeouts): call from the main thread.
    """
    problems: list[Problem] = []
    dropped = dict.fromkeys(REASONS, 0)
    listed: list[dict] = []
    dropped_alternatives: list[dict] = []
    verdicts: dict[str, str | None] = {}  # each distinct gold is checked once
    first_id: dict[str, str] = {}  # question -> id of the kept problem that asks it
    other_messages = 0

    def drop(pid: str, reason: str, gold: Any, why: str) -> None:
        dropped[reason] += 1
        if dropped[reason] <= LIST_LIMIT:
            listed.append({"id": pid, "reason": reason, "gold": gold, "why": why})

    for index, row in enumerate(rows):
        pid = f"{spec.name}-{split}-{index:05d}"
        where = f"{spec.name}: row {index}"
        question, had_others = message_text(_field(row, spec.question, where, fix))
        for pattern in spec.strip:
            question = re.sub(pattern, "", question, flags=re.DOTALL)
        question = question.strip()
        raw_answer = _field(row, spec.answer, where, fix)
        texts = gold_texts(raw_answer, spec.answer_format, spec.gold_list)
        gold = texts[0] if len(texts) == 1 else texts
        if not question:
            drop(pid, "no_question", gold, "empty question")
            continue
        if question in first_id:
            drop(pid, "duplicate", gold, f"same question as {first_id[question]}")
            continue
        if not texts:
            drop(pid, "no_answer", str(raw_answer)[:200], f"no {spec.answer_format} answer in field {spec.answer!r}")
            continue
        for text in texts:
            if text not in verdicts:
                verdicts[text] = unusable_gold(text)
        usable = [t for t in texts if verdicts[t] is None]
        if not usable:
            why = verdicts[texts[0]] if len(texts) == 1 else "; ".join(f"{t}: {verdicts[t]}" for t in texts)
            drop(pid, "unusable_gold", gold, why)
            continue
        dropped_alternatives += [{"id": pid, "gold": t, "why": verdicts[t]} for t in texts if verdicts[t] is not None]
        if spec.prompt:
            prompt, had_others = message_text(_field(row, spec.prompt, where, fix))
        else:
            prompt = f"{question}\n\n{INSTRUCTION}"
        other_messages += had_others
        first_id[question] = pid
        problems.append(
            Problem(
                id=pid,
                question=question,
                prompt=prompt,
                answer=usable[0] if len(usable) == 1 else tuple(usable),
                level=_level(_optional(row, spec.level)),
            )
        )
    report = {
        "rows": len(rows),
        "kept": len(problems),
        "dropped": dropped,
        "dropped_problems": listed,
        "dropped_alternatives": dropped_alternatives,
    }
    if other_messages:
        report["other_messages"] = other_messages
    return problems, report
