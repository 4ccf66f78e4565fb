r"""Binary verifiable rewards with math-verify, failing closed.

reward = 1 iff the completion's *extracted final answer* is mathematically equal to the
gold answer according to ``math_verify.verify``; every other outcome scores 0 and is
counted under its own reason, so a training log can tell "wrong" from "unreadable".

Pipeline per completion (first matching row wins):
    truncated by the caller (no EOS within the budget) -> 0, ``truncated``
        (even if the text holds the right number: an unfinished answer is not an answer)
    no answer found by extraction                      -> 0, ``parse_failure``
    math-verify raised its timeout / a worker hung     -> 0, ``timeout``
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
   for ``432``, ``0.5`` for ``1/2``, ``50\%`` for ``50`` and ``0.5``, ``x=3`` for ``3``.
   Matching braces are found in one pass, so a text of many (or unbalanced) ``\boxed{``
   costs linear time. ``require_boxed`` turns the final-number fallback off: a problem
   whose prompt asks for ``\boxed{}`` (every hub data set, see :func:`asks_for_box`) is
   answered only by a ``\boxed{}``, so echoing a question whose last number happens to
   be the answer ("Let x = 12. Find x.") earns nothing.
2) The span (and the gold) is handed to math-verify *inside* ``\boxed{...}``: math-verify
   reads LaTeX only between delimiters, and bare, ``\{1,2\}`` parses to nothing,
   ``10^{10^{10}}`` to ``10`` and ``1,2`` to ``1.2`` (measured with math-verify 0.9.0).
3) Caches: the gold is parsed once per distinct gold string and each distinct
   ``(gold, extracted)`` pair is verified once; answers repeat within and across
   groups, so repeats cost a dict lookup. Data sets from the hub are checked up front
   (``conversion.py``): a gold math-verify cannot parse drops its problem there and is
   counted, so it can never score 1; here such a gold raises, loudly.
4) Integer fast path: when the gold and the extracted answer are both plain integers
   (``-?\d+``) they are compared as Python ints, which is exactly math-verify's verdict
   for that case (``0432 == 432``; checked against math-verify in the tests) at a
   thousandth of the cost. Without it, RL on the tiny task paid about 0.7 ms per
   completion, since each step brings ~140 new (gold, answer) pairs.
5) math-verify implements its timeouts with ``signal.alarm``, which only works in a
   process's main thread: call :func:`score_completions` from the main thread (we raise
   a clear ``RuntimeError`` otherwise instead of math-verify's deep ValueError).
6) Many new pairs (``pool_min_items``, 64) go to a process pool (``ProcessPoolExecutor``,
   ``spawn`` start method: safe beside CUDA and torch's threads, and a worker imports
   only math-verify -- scripts that train must keep the ``if __name__ == "__main__":``
   guard). Each worker runs math-verify in its main thread, so its ``signal.alarm``
   timeouts work there too; a pair still running after ``hard_timeout`` seconds (stuck
   in C code, beyond the alarm's reach) scores ``timeout``, its worker is killed and the
   pool restarted; a worker that dies scores its pair ``error``. Workers publish the pair
   they hold in shared memory, so exactly the culprit is blamed. Fewer pairs stay in the
   main thread, where a pool's start-up (about 2 s per worker) would cost more than it saves.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import re
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

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
_BOXED = "\\boxed{"


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces balance, or None; one pass over ``text``.

    >>> _last_boxed("\\\\boxed{1} and \\\\boxed{\\\\frac{1}{\\\\sqrt{2}}}"), _last_boxed("\\\\boxed{1} \\\\boxed{2")
    ('\\\\frac{1}{\\\\sqrt{2}}', '1')
    """
    if _BOXED not in text:
        return None
    closing: dict[int, int] = {}  # position of "{" -> position of its "}"
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    start = text.rfind(_BOXED)
    while start != -1:
        brace = start + len(_BOXED) - 1
        if brace in closing:
            return text[brace + 1 : closing[brace]].strip()
        start = text.rfind(_BOXED, 0, start)  # unbalanced: try an earlier \boxed
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


def asks_for_box(problems) -> bool:
    """True when every problem's prompt asks for the answer in ``\\boxed{}`` (then nothing else counts).

    >>> from rewards_as_labels.data import Problem
    >>> asks_for_box([Problem("a", "1+2", "1+2=", "3", 1)])
    False
    """
    return bool(problems) and all("\\boxed{}" in p.prompt for p in problems)


def as_latex(answer: str) -> str:
    """The string math-verify parses for an answer span or gold: ``\\boxed{...}`` unless delimited already.

    >>> as_latex("\\\\{1,2\\\\}"), as_latex("$x$")
    ('\\\\boxed{\\\\{1,2\\\\}}', '$x$')
    """
    text = answer.strip()
    if _BOXED in text or text.startswith(("$", "\\(", "\\[")):
        return text
    return _BOXED + text + "}"


def _parse(text: str, timeout: int):
    return parse(as_latex(text), parsing_timeout=timeout, raise_on_error=True)


def parse_gold(gold: str, timeout: int = 5):
    """math-verify's parse of a gold answer, or None if it holds no maths (or timed out/raised).

    math-verify falls back to the raw string when its LaTeX parser fails (``\\boxed{+=}``
    -> ``['+=']``); a gold that is only such a string is unparsable.
    """
    try:
        parsed = _parse(gold, timeout)
    except (Exception, TimeoutException):
        return None
    return parsed if any(not isinstance(x, str) for x in parsed) else None


def _judge_parsed(gold_parsed, answer: str, timeout: int) -> str:
    try:
        pred = _parse(answer, timeout)
        if not pred:
            return "parse_failure"
        ok = verify(gold_parsed, pred, timeout_seconds=timeout, raise_on_error=True)
        return "correct" if ok else "wrong"
    except TimeoutException:  # a BaseException in math-verify, so caught by name
        return "timeout"
    except Exception:
        return "error"


# ----------------------------------------------------------------------------- worker side
_WORKER: dict = {}  # in a pool worker: "slots" (shared array), "index", "gold" (cache)


def _init_worker(slots, counter) -> None:
    with counter.get_lock():
        _WORKER["index"] = counter.value % len(slots)
        counter.value += 1
    _WORKER["slots"], _WORKER["gold"] = slots, {}


def _work(item: int, gold: str, answer: str, timeout: int) -> tuple[int, str]:
    """One pair in a worker: ``gold_error`` if the gold does not parse, else a judge outcome."""
    slots, index = _WORKER["slots"], _WORKER["index"]
    slots[index] = item  # the parent reads this to blame exactly this pair if we hang
    try:
        cache = _WORKER["gold"]
        if gold not in cache:
            cache[gold] = parse_gold(gold, timeout)
        if cache[gold] is None:
            return item, "gold_error"
        return item, _judge_parsed(cache[gold], answer, timeout)
    finally:
        slots[index] = -1


def _ping() -> int:
    return os.getpid()


class MathVerifyPool:
    """A ``ProcessPoolExecutor`` that judges (gold, answer) pairs with per-pair hard timeouts."""

    def __init__(self, workers: int, start_method: str = "spawn", startup_timeout: float = 300.0):
        ctx = multiprocessing.get_context(start_method)
        self.workers = workers
        self.slots = ctx.Array("q", [-1] * workers, lock=False)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(self.slots, ctx.Value("i", 0))
        )
        # start every worker now, so that start-up (imports) never counts against a pair's timeout
        wait([self.executor.submit(_ping) for _ in range(workers)], timeout=startup_timeout)

    def kill(self) -> None:
        # ProcessPoolExecutor cannot cancel a running call: end its processes (private, but stable since 3.8)
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def judge(self, items: list[tuple[str, str]], timeout: int, hard_timeout: float) -> tuple[dict[int, str], bool]:
        """Outcomes by item index, and whether the pool had to be killed (the rest is then missing)."""
        futures = {self.executor.submit(_work, i, gold, answer, timeout) for i, (gold, answer) in enumerate(items)}
        results: dict[int, str] = {}
        idle_rounds = 0
        while futures:
            done, futures = wait(futures, timeout=hard_timeout, return_when=FIRST_COMPLETED)
            try:
                for future in done:
                    index, outcome = future.result()
                    results[index] = outcome
            except BrokenProcessPool:  # a worker died (e.g. killed for memory): blame what it held
                for index in [v for v in self.slots if v >= 0 and v not in results]:
                    results[index] = "error"
                self.kill()
                return results, True
            if done:
                idle_rounds = 0
                continue
            stuck = [v for v in self.slots if v >= 0 and v not in results]
            if stuck:  # nothing finished for hard_timeout seconds while these ran
                for index in stuck:
                    results[index] = "timeout"
                self.kill()
                return results, True
            idle_rounds += 1
            if idle_rounds >= 10:
                self.kill()
                raise RuntimeError(f"the math-verify pool made no progress in {10 * hard_timeout:.0f} s")
        return results, False


_POOLS: dict[tuple[int, str], MathVerifyPool] = {}


def _pool(workers: int, start_method: str) -> MathVerifyPool:
    key = (workers, start_method)
    if key not in _POOLS:
        _POOLS[key] = MathVerifyPool(workers, start_method)
    return _POOLS[key]


@atexit.register
def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.executor.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


# ----------------------------------------------------------------------------- the verifier
@dataclass
class Verifier:
    """math-verify with caches, outcome accounting and a process pool; see the module docstring.

    ``timeout_seconds`` bounds each math-verify parse/verify call (signal-based);
    ``integer_fast_path`` compares two plain integers without math-verify (same verdict);
    ``workers`` processes judge batches of at least ``pool_min_items`` new pairs
    (0 = ``min(4, cpu count)``; 1 = never a pool); ``hard_timeout`` (0 = 3 x timeout + 5 s)
    is how long a pair may hold a worker before it scores ``timeout`` and the worker is killed.
    """

    timeout_seconds: int = 5
    integer_fast_path: bool = True
    max_cache: int = 1_000_000
    workers: int = 0
    pool_min_items: int = 64
    hard_timeout: float = 0.0
    start_method: str = "spawn"
    _gold: dict = field(default_factory=dict, repr=False)
    _pairs: dict = field(default_factory=dict, repr=False)

    def _parsed_gold(self, gold: str):
        if gold not in self._gold:
            parsed = parse_gold(gold, self.timeout_seconds)
            if parsed is None:
                # a broken data set must fail loudly, not train on all-zero rewards
                raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
            self._gold[gold] = parsed
        return self._gold[gold]

    def _store(self, key: tuple[str, str], outcome: str) -> str:
        if len(self._pairs) >= self.max_cache:
            self._pairs.clear()
        self._pairs[key] = outcome
        return outcome

    def _fast(self, gold: str, answer: str) -> str | None:
        if self.integer_fast_path and _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(answer):
            return "correct" if int(gold) == int(answer) else "wrong"
        return None

    def judge(self, gold: str, answer: str) -> str:
        """Outcome of one extracted answer in this thread: ``correct``, ``wrong``, ``parse_failure``, ``timeout`` or ``error``."""
        key = (gold, answer)
        if key in self._pairs:
            return self._pairs[key]
        fast = self._fast(gold, answer)
        if fast is not None:
            return self._store(key, fast)
        return self._store(key, _judge_parsed(self._parsed_gold(gold), answer, self.timeout_seconds))

    def _workers(self) -> int:
        return self.workers or min(4, os.cpu_count() or 1)

    def judge_many(self, pairs: list[tuple[str, str]]) -> None:
        """Judge the uncached ``pairs`` (distinct) into the cache, in a pool when there are many."""
        todo = [p for p in pairs if p not in self._pairs and self._fast(*p) is None]
        if len(todo) < self.pool_min_items or self._workers() < 2:
            for gold, answer in pairs:
                self.judge(gold, answer)
            return
        hard = self.hard_timeout or 3 * self.timeout_seconds + 5
        while todo:
            results, killed = _pool(self._workers(), self.start_method).judge(todo, self.timeout_seconds, hard)
            if killed:
                _POOLS.pop((self._workers(), self.start_method), None)
            for index, outcome in results.items():
                gold, answer = todo[index]
                if outcome == "gold_error":
                    raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
                self._store((gold, answer), outcome)
            todo = [p for i, p in enumerate(todo) if i not in results]
        for gold, answer in pairs:  # the fast-path pairs
            self.judge(gold, answer)

    def score(
        self, completions: list[str], golds: list[str], truncated: list[bool] | None = None, require_boxed: bool = False
    ):
        """Rewards ``FloatTensor [B]`` and outcome counts; see :func:`score_completions`."""
        import torch  # here, not at the top: pool workers import this module and need no torch

        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("score_completions must run in the main thread (math-verify uses signal.alarm)")
        if len(completions) != len(golds) or (truncated is not None and len(truncated) != len(golds)):
            raise ValueError(
                f"lengths differ: {len(completions)} completions, {len(golds)} golds, "
                f"{None if truncated is None else len(truncated)} truncated flags"
            )
        truncated = truncated if truncated is not None else [False] * len(golds)
        extract = (lambda text: _last_boxed(text) or None) if require_boxed else extract_answer
        answers = [None if cut else extract(text) for text, cut in zip(completions, truncated)]
        self.judge_many(list(dict.fromkeys((str(g), a) for g, a in zip(golds, answers) if a is not None)))
        counts = dict.fromkeys(OUTCOMES, 0)
        rewards = torch.zeros(len(completions), dtype=torch.float32)  # [B]
        for i, (answer, gold, cut) in enumerate(zip(answers, golds, truncated)):
            if cut:
                outcome = "truncated"
            else:
                outcome = "parse_failure" if answer is None else self.judge(str(gold), answer)
            counts[outcome] += 1
            rewards[i] = float(outcome == "correct")
        return rewards, counts


_DEFAULT = Verifier()


def score_completions(
    completions: list[str], golds: list[str], truncated: list[bool] | None = None, require_boxed: bool = False
):
    """Binary rewards ``FloatTensor [B]`` for completions against gold answers, with outcome counts.

    Must be called from the main thread (math-verify's timeouts use ``signal.alarm``).
    Counts always add up to ``len(completions)``. ``require_boxed``: only a ``\\boxed{}``
    answers (pass ``asks_for_box(problems)``).

    >>> r, c = score_completions(["432", "12+3", "", "432"], ["432", "15", "1", "432"], [False, False, False, True])
    >>> r.tolist(), c["correct"], c["wrong"], c["parse_failure"], c["truncated"]
    ([1.0, 0.0, 0.0, 0.0], 1, 1, 1, 1)
    """
    return _DEFAULT.score(completions, golds, truncated, require_boxed)


def unusable_gold(gold: str) -> str | None:  # stub: replaced by the verifier branch
    return None if parse_gold(gold) is not None else "unparsable"
