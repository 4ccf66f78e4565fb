r"""Binary verifiable rewards with math-verify, failing closed.

reward = 1 iff the completion's *extracted final answer* is mathematically equal to the
gold answer according to ``math_verify.verify``; every other outcome scores 0 and is
counted under its own reason, so a training log can tell "wrong" from "unreadable".

Pipeline per completion (first matching row wins):
    truncated by the caller (no EOS within the budget) -> 0, ``truncated``
        (even if the text holds the right number: an unfinished answer is not an answer)
    no answer found by extraction                      -> 0, ``parse_failure``
    math-verify raised its timeout                     -> 0, ``timeout``
    math-verify raised anything else / parsed nothing  -> 0, ``error`` / ``parse_failure``
    verify(gold, answer)                               -> 1 ``correct`` or 0 ``wrong``

Choices and deviations (the paper's verl reward uses its own math grader on ``\boxed{}``):
1) Extraction is ours, not math-verify's: the content of the last ``\boxed{...}`` if any,
   else the *final number* in the text (integer, decimal, ``3/4`` or ``\frac{3}{4}``).
   Only that span is given to math-verify. This is the anti-hack rule for the embedded
   task: the prompt is ``12+3=`` and a completion that merely echoes ``12+3`` must not be
   rewarded by math-verify evaluating the expression to 15 -- its final number is ``3``.
   A minus sign counts only when it is not a binary minus (``12-3`` ends in ``3``).
   Boxed content goes to math-verify whole (``\boxed{12+3}`` equals 15), as in maths
   RLVR; the tiny model cannot write a backslash, so this never applies to it.
   Equivalence is math-verify's, a little looser than string equality: ``0432`` counts
   for ``432`` and ``0.5`` for ``1/2``.
2) Caches: the gold is parsed once per distinct gold string and each distinct
   ``(gold, extracted)`` pair is verified once; answers repeat within and across
   groups, so repeats cost a dict lookup.
3) Integer fast path: when the gold and the extracted answer are both plain integers
   (``-?\d+``) they are compared as Python ints, which is exactly math-verify's verdict
   for that case (``0432 == 432``; checked against math-verify in the tests) at a
   thousandth of the cost. Without it, RL on the tiny task paid about 0.7 ms per
   completion, since each step brings ~140 new (gold, answer) pairs.
4) math-verify implements its timeouts with ``signal.alarm``, which only works in the
   main thread: call :func:`score_completions` from the main thread (we raise a clear
   ``RuntimeError`` otherwise instead of math-verify's deep ValueError).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import torch
from math_verify import parse, verify
from math_verify.errors import TimeoutException

OUTCOMES = ("correct", "wrong", "parse_failure", "truncated", "timeout", "error")

# A number that is not the right operand of a binary minus: "-3" is negative, "12-3" ends in "3".
_NUMBER = r"(?:(?<![\w)}\]])-)?\d+(?:\.\d+)?"
_FINAL = re.compile(
    r"\\d?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}"  # \frac{3}{4}
    rf"|{_NUMBER}(?:\s*/\s*\d+(?:\.\d+)?)?"  # 12, -3, 0.5, 3/4
)


_INTEGER = re.compile(r"-?\d+")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[i + 1 : j].strip()
        # unbalanced: try an earlier \boxed
        start = text.rfind("\\boxed{", 0, start)
    return None


def extract_answer(text: str) -> str | None:
    """The answer span of a completion: last ``\\boxed{}`` content, else the final number.

    >>> extract_answer("12+3"), extract_answer("so \\\\boxed{\\\\frac{1}{2}} ok"), extract_answer("x")
    ('3', '\\\\frac{1}{2}', None)
    """
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    matches = list(_FINAL.finditer(text))
    if not matches:
        return None
    return re.sub(r"\s+", "", matches[-1].group(0))


@dataclass
class Verifier:
    """math-verify with caches and outcome accounting; see the module docstring.

    ``timeout_seconds`` bounds each math-verify parse/verify call (signal-based);
    ``integer_fast_path`` compares two plain integers without math-verify (same verdict).
    """

    timeout_seconds: int = 5
    integer_fast_path: bool = True
    max_cache: int = 1_000_000
    _gold: dict = field(default_factory=dict, repr=False)
    _pairs: dict = field(default_factory=dict, repr=False)

    def _parse(self, text: str):
        return parse(text, parsing_timeout=self.timeout_seconds, raise_on_error=True)

    def _parsed_gold(self, gold: str):
        if gold not in self._gold:
            try:
                parsed = self._parse(gold)
            except (Exception, TimeoutException):
                parsed = []
            if not parsed:
                # a broken data set must fail loudly, not train on all-zero rewards
                raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
            self._gold[gold] = parsed
        return self._gold[gold]

    def judge(self, gold: str, answer: str) -> str:
        """Outcome of one extracted answer: ``correct``, ``wrong``, ``parse_failure``, ``timeout`` or ``error``."""
        key = (gold, answer)
        if key in self._pairs:
            return self._pairs[key]
        if len(self._pairs) >= self.max_cache:
            self._pairs.clear()
        if self.integer_fast_path and _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(answer):
            outcome = "correct" if int(gold) == int(answer) else "wrong"
            self._pairs[key] = outcome
            return outcome
        gold_parsed = self._parsed_gold(gold)
        try:
            pred = self._parse(answer)
            if not pred:
                outcome = "parse_failure"
            else:
                ok = verify(gold_parsed, pred, timeout_seconds=self.timeout_seconds, raise_on_error=True)
                outcome = "correct" if ok else "wrong"
        except TimeoutException:  # a BaseException in math-verify, so caught by name
            outcome = "timeout"
        except Exception:
            outcome = "error"
        self._pairs[key] = outcome
        return outcome

    def score(
        self, completions: list[str], golds: list[str], truncated: list[bool] | None = None
    ) -> tuple[torch.Tensor, dict[str, int]]:
        """Rewards and outcome counts; see :func:`score_completions`."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("score_completions must run in the main thread (math-verify uses signal.alarm)")
        if len(completions) != len(golds) or (truncated is not None and len(truncated) != len(golds)):
            raise ValueError(
                f"lengths differ: {len(completions)} completions, {len(golds)} golds, "
                f"{None if truncated is None else len(truncated)} truncated flags"
            )
        truncated = truncated if truncated is not None else [False] * len(golds)
        counts = dict.fromkeys(OUTCOMES, 0)
        rewards = torch.zeros(len(completions), dtype=torch.float32)  # [B]
        for i, (text, gold, cut) in enumerate(zip(completions, golds, truncated)):
            if cut:
                outcome = "truncated"
            else:
                answer = extract_answer(text)
                outcome = "parse_failure" if answer is None else self.judge(str(gold), answer)
            counts[outcome] += 1
            rewards[i] = float(outcome == "correct")
        return rewards, counts


_DEFAULT = Verifier()


def score_completions(
    completions: list[str], golds: list[str], truncated: list[bool] | None = None
) -> tuple[torch.Tensor, dict[str, int]]:
    """Binary rewards for completions against gold answers, with outcome counts.

    Must be called from the main thread (math-verify's timeouts use ``signal.alarm``).
    Counts always add up to ``len(completions)``.

    >>> r, c = score_completions(["432", "12+3", "", "432"], ["432", "15", "1", "432"], [False, False, False, True])
    >>> r.tolist(), c["correct"], c["wrong"], c["parse_failure"], c["truncated"]
    ([1.0, 0.0, 0.0, 0.0], 1, 1, 1, 1)
    """
    return _DEFAULT.score(completions, golds, truncated)
