r"""Binary verifiable rewards with math-verify, failing closed and never paying for a near miss.

reward = 1 iff the completion's *extracted final answer* equals the gold answer (or one of
the gold's accepted alternatives); every other outcome scores 0 and is counted under its
own reason, so a training log can tell "wrong" from "unreadable".

Pipeline per completion (first matching row wins):
    truncated by the caller (no EOS within the budget) -> 0, ``truncated``
        (even if the text holds the right number: an unfinished answer is not an answer)
    no answer found by extraction                      -> 0, ``parse_failure``
    the answer equals the gold verbatim                -> 1, ``correct``
    the answer is over a size limit                    -> 0, ``parse_failure`` (math-verify never sees it)
    math-verify raised its timeout / a worker hung     -> 0, ``timeout``
    math-verify raised anything else / parsed nothing  -> 0, ``error`` / ``parse_failure``
    an equation that states no value, for a value gold -> 0, ``parse_failure``
    judge(gold, answer), see the rules below           -> 1 ``correct`` or 0 ``wrong``

A gold is a string, or a list/tuple of strings that are accepted *alternatives* (verl's
``reward_model.ground_truth`` lists): ``0.01`` is correct for ``["0.01", "0.02"]``, while the
string ``"0.01, 0.02"`` stays one set-valued answer, for which ``0.01`` is wrong.

math-verify (0.9.0) parses both sides and gives every verdict of symbolic, set, tuple,
interval, matrix and equation equality, with its default settings (:data:`MATH_VERIFY`).
Our rules, each only where the library has no setting for it, are documented on the
function that applies them:
    extraction: the last box, else the final number ........ :func:`extract_answer`, :func:`_last_boxed`
    the answer handed to math-verify inside ``\boxed{}`` ... :func:`as_latex`
    a) numbers agree to 6 significant digits ................ :func:`_numbers_agree`
    b) e-notation read as written ........................... :func:`e_notation`
    c) percent on one side is notation ...................... :func:`judge_answer`
    d) a gold parse that loses a symbol or element .......... :func:`read_gold`
    e) the gold verbatim is correct ......................... :func:`canonical`
    f) an equation states a value only with a name on the left :func:`read_value`
    g) units dropped item by item: a list stays a list ...... :func:`strip_units`
    h) size limits before any symbolic work ................. :func:`too_costly`
    caches, the integer fast path, the pool's size ......... :class:`Verifier`
    the process pool and its hard timeouts ................. :mod:`rewards_as_labels.verifier_pool`
    main thread only (math-verify's ``signal.alarm``) ...... :func:`score_completions`

Probes: responses as a policy probing the verifier writes them, and their verdicts (the probe
battery, ``tools/verifier_bench.py``'s ``PROBES``, checked in ``tests/test_verifier_battery.py``):
    several boxes: the last one answers (an earlier right box earns nothing) ....... rule extraction
    nested boxes: the outer box, read whole (``\boxed{\boxed{3} or \boxed{4}}`` is a hedge, wrong)
    an unclosed box is no box: ``parse_failure``, or the last closed box answers
    ``x = 4`` for 4: correct; ``1 = 5\times10^{-19}``, ``2p = .0000673``, ``99 = 15``,
        ``15\text{ cm}^2 = 16\text{ cm}^2``, ``x = 3 = 4``: ``parse_failure`` .......... f)
    a list or an "or" behind units (``15\text{ cm}^2, 16\text{ cm}^2``): wrong; one answer
        with a unit (``15\text{ cm}^2``): correct ...................................... g)
    hedges (``3 or 4``, ``3 \lor 4``, ``x = 3 or x = 4``, ``3 \pm 1``, ``$3$ or $4$``): wrong
    digits other than 0-9 (fullwidth, Arabic-Indic) are not digits: boxed, wrong (math-verify
        reads no number); unboxed, no final number is found: ``parse_failure``
    power towers, huge factorials, nesting deeper than 8, a box of 5,000 candidates:
        ``parse_failure`` without calling math-verify; a 5,000-digit integer: wrong (compared
        as text); ``2^{2^{2^{2}}}`` for 65536: correct ........................................ h)
    ``e^{-2t}/15`` for the gold ``\frac{1}{15} e^{-2t}``: correct ............................ d)
    a response of 1.4 MB, 50,000 unclosed boxes, 20,000 boxes: extraction is linear
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sympy
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from latex2sympy2_extended.math_normalization import units_regex
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException
from math_verify.grader import unwrap_eq
from math_verify.utils import timeout as with_timeout
from sympy.core.function import AppliedUndef

from .verifier_pool import forget_pool, shared_pool, unguarded_main

OUTCOMES = ("correct", "wrong", "parse_failure", "truncated", "timeout", "error")

# math-verify's own comparison settings, spelled out (its defaults; see _numbers_agree for why
# numeric_precision and float_rounding stay as they are)
MATH_VERIFY = dict(float_rounding=6, numeric_precision=15, strict=True, allow_set_relation_comp=False)
SIGNIFICANT_DIGITS = 6  # rule a): numbers must agree to this many significant digits
NOISE_DIGITS = 14  # rule a): a decimal and a number agreeing to this many digits are equal (binary noise)

# ----------------------------------------------------------------------------- extraction
# A number that is not the right operand of a binary minus: "-3" is negative, "12-3" ends in "3".
_MANTISSA = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"  # 12, 1,000, 0.5, .5
_EXPONENT = r"[eE][+-]?\d+|\s*(?:\\times|\\cdot|×)\s*10\s*\^\s*(?:\{\s*[+-]?\d+\s*\}|[+-]?\d)"
_NUMBER = rf"(?:(?<![\w)}}\]])-)?(?:{_MANTISSA})(?:{_EXPONENT})?(?:\s*\\?%)?"
_FINAL = re.compile(
    r"\\d?frac\{\s*(-?\d+)\s*\}\{\s*(\d+)\s*\}"  # \frac{3}{4}
    rf"|{_NUMBER}(?:\s*/\s*\d+(?:\.\d+)?)?",  # 12, -3, 0.5, 3/4, 8.7e8, 62.5%
    re.ASCII,  # a digit is 0-9: math-verify reads no other, so neither does extraction (see "Probes")
)
_NEGATED = re.compile(r"(?<![\w)}\]])-\s*(?:\\left)?\($")  # "-(" right before the final number
_INTEGER = re.compile(r"-?[0-9]+")
_BOXED = "\\boxed{"


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each balanced ``{`` -> position of its ``}``, in one pass."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    return closing


def _last_boxed(text: str) -> str | None:
    """Content of the ``\\boxed{...}`` that closes last, inner boxes unwrapped, or None; linear in ``text``.

    Several boxes: the last one is the answer. Nested boxes: the outer one, read whole, so
    ``\\boxed{\\boxed{3} \\text{ or } \\boxed{4}}`` is the hedge ``3 or 4``, not ``4``. A box whose
    braces never close is no box (an earlier, closed one may still answer).

    >>> _last_boxed("\\\\boxed{1} and \\\\boxed{\\\\frac{1}{\\\\sqrt{2}}}"), _last_boxed("\\\\boxed{1} \\\\boxed{2")
    ('\\\\frac{1}{\\\\sqrt{2}}', '1')
    >>> _last_boxed("\\\\boxed{\\\\boxed{3} or \\\\boxed{4}}")
    '3 or 4'
    """
    if _BOXED not in text:
        return None
    closing = _closing_braces(text)
    ends = {}  # position of a balanced box's "{" -> its "}"
    for match in re.finditer(re.escape(_BOXED), text):
        brace = match.end() - 1
        if brace in closing:
            ends[brace] = closing[brace]
    if not ends:
        return None
    brace = max(ends, key=ends.get)
    return _unbox(text[brace + 1 : ends[brace]]).strip()


def _unbox(text: str) -> str:
    """``text`` with every ``\\boxed{...}`` wrapper inside it replaced by its content, in one pass."""
    if _BOXED not in text:
        return text
    closing = _closing_braces(text)
    drop = set()  # positions of the wrappers' characters
    for match in re.finditer(re.escape(_BOXED), text):
        drop.update(range(match.start(), match.end()))
        if match.end() - 1 in closing:
            drop.add(closing[match.end() - 1])
    return "".join(ch for i, ch in enumerate(text) if i not in drop)


def extract_answer(text: str) -> str | None:
    """The answer span of a completion: last ``\\boxed{}`` content, else the final number.

    Extraction is ours, not math-verify's: the content of the last ``\\boxed{...}`` if any
    (:func:`_last_boxed`), else the *final number* in the text (``-3``, ``0.5``, ``.5``, ``3/4``,
    ``\\frac{3}{4}``, ``1,000``, ``8.7e8``, ``8.7 \\times 10^{8}``, ``62.5\\%``; a sign written as
    ``-(...)`` is kept). Only that span is given to math-verify. This is the anti-hack rule for
    the embedded task: the prompt is ``12+3=`` and a completion that merely echoes ``12+3``
    must not be rewarded by math-verify evaluating the expression to 15 -- its final number
    is ``3``. A minus sign counts only when it is not a binary minus (``12-3`` ends in ``3``).
    Boxed content goes to math-verify whole (``\\boxed{12+3}`` equals 15), as in maths RLVR;
    the tiny model cannot write a backslash, so this never applies to it. A digit is 0-9
    only: math-verify reads no other. ``require_boxed`` (in :meth:`Verifier.score`) turns
    the final-number fallback off: a problem whose prompt asks for ``\\boxed{}`` (every hub
    data set, see :func:`asks_for_box`) is answered only by a box, so echoing a question
    whose last number happens to be the answer ("Let x = 12. Find x.") earns nothing.

    >>> extract_answer("12+3"), extract_answer("so \\\\boxed{\\\\frac{1}{2}} ok"), extract_answer("x")
    ('3', '\\\\frac{1}{2}', None)
    >>> extract_answer("about 1,000 or 8.7e8"), extract_answer("it is -(2 \\\\times 10^{-3})")
    ('8.7e8', '-2\\\\times10^{-3}')
    """
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    matches = list(_FINAL.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    span = re.sub(r"\s+", "", last.group(0))
    if not last.group(1):  # a plain number: its commas are thousands separators (one match = one number)
        span = span.replace(",", "")
    if _NEGATED.search(text[: last.start()]) and not span.startswith("-"):
        span = "-" + span  # "-(8.2 \times 10^{-19})": dropping the sign would pay a sign flip
    return span


def asks_for_box(problems) -> bool:
    """True when every problem's prompt asks for the answer in ``\\boxed{}`` (then nothing else counts).

    >>> from rewards_as_labels.data import Problem
    >>> asks_for_box([Problem("a", "1+2", "1+2=", "3", 1)])
    False
    """
    return bool(problems) and all("\\boxed{}" in p.prompt for p in problems)


# ----------------------------------------------------------------------------- text forms
_E_NOTATION = re.compile(r"(?<![\w\\.])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\w.])")
_PERCENT = re.compile(r"\s*(?:\\%|%|\\text\{\s*\\?%\s*\}|\\?\s*percent)\s*$")
_WRAPPED = re.compile(r"\\(?:text\w*|math(?:rm|bf|it|sf|tt|bb|cal|frak)|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_FUNCTION_WORD = re.compile(r"arc|sin|cos|tan|cot|sec|csc|log|ln|exp|lim|max|min|gcd|lcm|det")
_CLOSED_INFINITY = re.compile(r"\[[-+]?\\infty|\\infty\]")


def e_notation(text: str) -> str:
    """``4.5e33`` as ``4.5\\times10^{33}``, which math-verify does not read as 4.5·e·33.

    Rule b): math-verify reads ``4.5e33`` as 4.5·e·33 (Euler's e); both sides are rewritten
    before parsing, so ``8.7e8`` equals ``8.7 \\times 10^{8}`` both ways. (A product "2·e·5"
    cannot be written ``2e5``.)

    >>> e_notation("4.5e33"), e_notation("1.2E-5 and e^2")
    ('4.5\\\\times10^{33}', '1.2\\\\times10^{-5} and e^2')
    """
    return _E_NOTATION.sub(r"\1\\times10^{\2}", text)


def as_latex(answer: str) -> str:
    """The string math-verify parses for an answer span or gold: ``\\boxed{...}`` unless delimited already.

    math-verify reads LaTeX only between delimiters; bare, ``\\{1,2\\}`` parses to nothing,
    ``10^{10^{10}}`` to ``10`` and ``1,2`` to ``1.2`` (measured with math-verify 0.9.0).

    >>> as_latex("\\\\{1,2\\\\}"), as_latex("$x$")
    ('\\\\boxed{\\\\{1,2\\\\}}', '$x$')
    """
    text = e_notation(answer.strip())
    if _BOXED in text or text.startswith(("$", "\\(", "\\[")):
        return text
    return _BOXED + text + "}"


def canonical(text: str) -> str:
    """An answer or gold as compared verbatim: first always, and alone when a gold cannot be parsed without loss.

    Rule e): an answer equal to the gold verbatim, up to spacing, ``\\left``/``\\right``,
    ``\\dfrac`` and ``\\text{}``-like wrappers, is correct without parsing; this replaces
    math-verify's comparison of its own normalised strings, which for ``6m`` is ``6`` and
    so not lossless.

    >>> canonical(" \\\\left( \\\\dfrac{1}{2}, \\\\text{ab} \\\\right). ")
    '(\\\\frac{1}{2},ab)'
    """
    text = re.sub(r"\\(?:left|right)\b|\\[,;:! ]|\$", "", e_notation(text))
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\(?:text\w*|mathrm|mathbf|mbox)\s*\{([^{}]*)\}", r"\1", text)
    return re.sub(r"\s+", "", text).rstrip(".")


# ----------------------------------------------------------------------------- units, lists and hedges
# A unit tail: one or more \text{}/\mbox{} blocks at the end of an item, each with an optional
# power, joined by nothing, a space, \cdot or "/" (5\text{ m}\cdot\text{s}^{-1}). math-verify's own
# rule (latex2sympy2's unit_superscript_regex) drops everything from the first \text{ to the end.
_UNIT_TAIL = re.compile(
    r"(?:\s*(?:\\cdot|/|\\[,;: ])?\s*\\(?:text|mbox)\s*\{[^{}]*\}(?:\s*\^\s*(?:-?\d|\{\s*-?\d\s*\}))?)+\s*$"
)
_CONNECTIVE_WORD = re.compile(r"(?<![A-Za-z\\])(or|and)(?![A-Za-z])")
_WRAPPER_TEXT = re.compile(r"(\\(?:text\w*|mbox|mathrm))\s*\{([^{}]*)\}")
_LOGICAL_OR = re.compile(r"\\(?:lor|vee)(?![A-Za-z])")
_SEPARATOR = re.compile(r"[,;=]|" + _CONNECTIVE_WORD.pattern)


def _split_wrapper(match: re.Match) -> str:
    """``\\text{ cm or }`` -> ``\\text{ cm} or ``: a connective inside a text wrapper leaves it."""
    command, content = match.groups()
    parts = _CONNECTIVE_WORD.split(content)
    if len(parts) == 1:
        return match.group(0)
    return "".join(f" {p} " if i % 2 else (f"{command}{{{p}}}" if p.strip() else "") for i, p in enumerate(parts))


def _strip_item_units(item: str) -> str:
    """One list item without its unit (math-verify's unit words, a trailing ``\\text{}`` tail), spacing kept."""
    lead, trail = item[: len(item) - len(item.lstrip())], item[len(item.rstrip()) :]
    item = item.strip()
    if not item:
        return lead
    stripped = _UNIT_TAIL.sub("", item).strip()
    if stripped:  # "\text{north}" is the whole answer, not a unit
        item = stripped
    for _ in range(2):  # as math-verify does: "5 square meters"
        stripped = units_regex.sub(r"\1", item).strip()
        if stripped:
            item = stripped
    return lead + item + trail


def strip_units(text: str) -> str:
    """``text`` with the unit of each list item dropped, the list kept: what math-verify parses.

    math-verify drops a unit by deleting everything from the first ``\\text{`` to the end, so
    ``15 \\text{ cm}^2, 16 \\text{ cm}^2`` and ``15 \\text{ cm}^2 \\text{ or } 16 \\text{ cm}^2``
    became ``15``: a hedge paid as its first candidate, and ``99 = 15\\text{ cm}^2`` an equation
    judged by one side. Here the text is cut at its top-level separators (``,``, ``;``, ``=``,
    "or", "and", also inside a wrapper such as ``\\text{ cm or }``) and each item loses its own
    unit, with math-verify's list of unit words and a trailing tail of ``\\text{}`` blocks. The
    separators stay, so a list stays a list (refused where the gold is one value, as every
    hedge is) and an equation stays an equation. ``\\lor`` and ``\\vee``, which math-verify
    reads as their last operand, are written "or". A single answer loses its unit as before.

    >>> strip_units("15 \\\\text{ cm}^2, 16 \\\\text{ cm}^2"), strip_units("5.4 \\\\text{ cents}")
    ('15, 16', '5.4')
    >>> strip_units("3 \\\\text{ cm or } 4 \\\\text{ cm}"), strip_units("x = 9.8 \\\\text{ m}\\\\cdot\\\\text{s}^{-2}")
    ('3 or  4', 'x = 9.8')
    """
    text = _LOGICAL_OR.sub(" or ", _WRAPPER_TEXT.sub(_split_wrapper, text))
    depth, cuts = 0, []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0:
            match = _SEPARATOR.match(text, i)
            if match and (match.group(0) in ",;=" or text[i].isalpha()):
                cuts.append(match.span())
    pieces, start = [], 0
    for begin, end in cuts:
        if begin < start:  # inside the previous separator ("or" is two characters)
            continue
        pieces += [_strip_item_units(text[start:begin]), text[begin:end]]
        start = end
    pieces.append(_strip_item_units(text[start:]))
    return "".join(pieces).strip()


def _top_items(text: str) -> list[str]:
    """``text`` split at commas outside brackets: ``16,3,(1,1)`` -> ``['16', '3', '(1,1)']``."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [*items, text[start:].strip()]


def _merged(text: str, expr) -> int:
    """How many elements of a bare list ``text`` its parse ``expr`` lost (``-2,-2`` -> {-2}: 1)."""
    if not isinstance(expr, sympy.FiniteSet):
        return 0
    return max(0, len(_top_items(text)) - len(expr.args))


def _closed_infinities(text: str) -> int:
    return len(_CLOSED_INFINITY.findall(re.sub(r"\\(?:left|right)\b|\s+", "", text)))


def _lost_letters(text: str, expr) -> set[str]:
    """Latin letters of ``text`` (outside commands and ``\\text{}``-like wrappers) absent from ``expr``.

    >>> from math_verify import parse
    >>> sorted(_lost_letters("6m", parse("\\\\boxed{6m}")[0])), _lost_letters("2x+e", parse("\\\\boxed{2x+e}")[0])
    (['m'], set())
    """
    written = _FUNCTION_WORD.sub(" ", _COMMAND.sub(" ", _WRAPPED.sub(" ", text)))
    letters = {c.lower() for c in written if c.isascii() and c.isalpha()}
    if not letters:
        return set()
    try:
        names = [s.name for s in expr.free_symbols] + [f.func.__name__ for f in expr.atoms(AppliedUndef)]
        kept = set("".join(names).lower())
        kept |= {"e"} if expr.has(sympy.E) or expr.atoms(sympy.exp) else set()  # Euler's number: e^{-2t} is exp(-2t)
        kept |= {"i"} if expr.has(sympy.I) else set()
    except Exception:  # an exotic parse (matrix of sets...) we cannot inspect: do not trust it
        return letters
    return letters - kept


# ----------------------------------------------------------------------------- equations
def _is_name(expr) -> bool:
    """``x``, ``E_k``, ``f(2)``, ``\\Delta E``, ``(x, y)``: a name, what the left side of a value's equation is."""
    if isinstance(expr, (sympy.Symbol, AppliedUndef)):
        return True
    if isinstance(expr, sympy.Tuple):  # (x, y) = (2, 3)
        return bool(expr.args) and all(_is_name(a) for a in expr.args)
    return isinstance(expr, sympy.Mul) and all(isinstance(a, sympy.Symbol) for a in expr.args)


def _links(expr) -> list | None:
    """The equations of ``a = b`` or of a chain ``a = b = c``, in written order, else None."""
    if isinstance(expr, sympy.Eq):
        return [expr]
    args = getattr(expr, "_unsorted_args", None)  # sympy's And keeps the written order here, as math-verify reads it
    if isinstance(expr, sympy.And) and args and all(isinstance(a, sympy.Eq) for a in args):
        return list(args)
    return None


def _false_between_numbers(link) -> bool:
    """``3 = 4``: both sides numbers that differ in their first SIGNIFICANT_DIGITS digits."""
    values = [sympy.N(side, 30) for side in link.args]
    if not all(v.is_Number and v.is_real for v in values):
        return False
    return _digits(values[0], SIGNIFICANT_DIGITS) != _digits(values[1], SIGNIFICANT_DIGITS)


def read_value(expr):
    """The value a parse states, or None where it states none; applied alike to answers and golds.

    An equation whose left side is a name (``x = 5``, ``E = 8.2 \\times 10^{-19}``, ``f(2) = 3``)
    states its right side; a chain ``x = 6/2 = 3`` its last side (as several boxes state the
    last), unless a later link is false between numbers (``x = 3 = 4`` states no value). An
    equation whose left side is not a name (``1 = 5 \\times 10^{-19}``,
    ``2p = .0000673``, ``99 = 15``) states no value, nor does an equation between numbers
    that sympy decided (``15 = 16`` -> False), nor a list or tuple holding one. math-verify
    reads any equation compared with a value as its right side, which paid ``1 = w`` for
    every tiny ``w`` within its absolute tolerance, and ``99 = 15`` for ``15``.

    >>> from sympy import Eq, Symbol, FiniteSet
    >>> x = Symbol("x")
    >>> read_value(Eq(x, 5)), read_value(Eq(2 * x, 5)), read_value(FiniteSet(Eq(x, 3), Eq(x, 4)))
    (5, None, {3, 4})
    """
    links = _links(expr)
    if links is not None:
        if not _is_name(links[0].lhs) or any(_false_between_numbers(link) for link in links[1:]):
            return None
        return links[-1].rhs
    if isinstance(expr, sympy.logic.boolalg.BooleanAtom):
        return None
    if isinstance(expr, (sympy.FiniteSet, sympy.Tuple)):
        items = [read_value(item) for item in expr.args]
        return None if any(item is None for item in items) else type(expr)(*items)
    return expr


# ----------------------------------------------------------------------------- size limits
MAX_ANSWER_CHARS = 500  # an answer span longer than this (and than its gold) is not read
MAX_NESTING = 8  # brackets nested deeper than this (and than in the gold): math-verify's parse cost grows fast
MAX_DIGITS = 10_000  # a power or factorial of numbers with more digits than this (and than the gold's)
_TOKEN = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+|\\[A-Za-z]+|\\.|\S")


def _nesting(text: str) -> int:
    """How deep brackets nest in ``text``: ``\\frac{(1)}{2}`` -> 2."""
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return deepest


def _power(log_base: float, log_exponent: float) -> float:
    """log10 of ``a^b`` from log10 of ``a`` and of ``b`` (an upper bound when both are)."""
    return log_base * 10 ** min(log_exponent, 300) if log_base > 0 else 0.0


def _log10_atom(tokens: list[str], i: int, postfix: bool = True) -> tuple[float, int]:
    """Upper bound on log10 of the atom at ``tokens[i]`` (with its powers and factorials), and the next index."""
    token = tokens[i]
    if token[0].isdigit() or (token[0] == "." and len(token) > 1):
        whole = token.split(".")[0]
        value, i = (len(whole) if len(whole) > 300 else math.log10(max(float(token), 1.0))), i + 1
    elif token in ("{", "(", "["):
        value, i = _log10_group(tokens, i + 1)
        i += 1  # its closing bracket
    else:
        value, i = 0.0, i + 1  # a letter or command: sympy evaluates no power of a symbol
    exponents: list[float] = []  # a^b^c without braces, read as a tower; no recursion per "^"
    while postfix and i < len(tokens) and tokens[i] in ("^", "!"):
        if tokens[i] == "^":
            if i + 1 == len(tokens):
                break
            exponent, i = _log10_atom(tokens, i + 1, postfix=False)
            exponents.append(exponent)
            continue
        value, exponents, i = _tower(value, exponents), [], i + 1  # the tower first: (a^b)!
        n = 10 ** min(value, 300)
        value = n * math.log10(n) if n > 1 else 0.0  # log10(n!) < n log10(n)
    return _tower(value, exponents), i


def _tower(value: float, exponents: list[float]) -> float:
    """log10 of ``a^(b^(c^...))`` from log10 of ``a`` and of each exponent."""
    if not exponents:
        return value
    top = exponents[-1]
    for exponent in reversed(exponents[:-1]):
        top = _power(exponent, top)
    return _power(value, top)


def _log10_group(tokens: list[str], i: int) -> tuple[float, int]:
    """Upper bound on log10 of the expression from ``tokens[i]`` to its closing bracket, and that bracket's index.

    A product (juxtaposition, ``\\cdot``, ``/``) adds its factors' logs; a sum or a list keeps the largest.
    """
    largest = product = 0.0
    while i < len(tokens) and tokens[i] not in ("}", ")", "]"):
        if tokens[i] in ("+", "-", ",", ";", "=", "\\pm"):
            largest, product, i = max(largest, product), 0.0, i + 1
            continue
        value, i = _log10_atom(tokens, i)
        product += max(value, 0.0)
    return max(largest, product), i


def number_digits(text: str) -> float:
    """An upper bound, from the text alone, on the digits of the largest number its powers and factorials make.

    >>> number_digits("10^{10^{10}}"), number_digits("1000000!") > 5e6, number_digits("2^{10} + x^{99}")
    (10000000000.0, True, 3.010299956639812)
    """
    tokens = _TOKEN.findall(text)
    largest, i = 0.0, 0
    while i < len(tokens):  # an unmatched closing bracket ends a group: start the next one after it
        value, i = _log10_group(tokens, i)
        largest, i = max(largest, value), i + 1
    return largest


def too_costly(answer: str, gold: str = "") -> str | None:
    """Why an answer is refused before any symbolic work, or None: the size limits, each beyond the gold's own.

    Power towers (``9^{9^{9}}``), huge factorials (``1000000!``), deep nesting and a box of
    thousands of candidates each took math-verify's whole timeout before scoring 0. An answer
    longer than ``MAX_ANSWER_CHARS`` characters, with brackets nested deeper than
    ``MAX_NESTING``, or whose powers and factorials of numbers make a number of more than
    ``MAX_DIGITS`` digits (:func:`number_digits`) is a ``parse_failure`` at once, unless its
    gold is as large (a correct answer then costs what it costs, up to the timeout).
    Called only after the verbatim check, so the gold itself always passes.

    >>> too_costly("9^{9^{9}}"), too_costly("2^{10}"), too_costly("(" * 9 + "1" + ")" * 9, "((2))")
    ('a number of about 369693100 digits (limit 10000)', None, 'brackets nested 9 deep (limit 8)')
    """
    checks = [
        (len, MAX_ANSWER_CHARS, "{:.0f} characters long"),
        (_nesting, MAX_NESTING, "brackets nested {:.0f} deep"),
        (number_digits, MAX_DIGITS, "a number of about {:.0f} digits"),  # after nesting: recursion stays shallow
    ]
    for measure, limit, what in checks:
        size, allowed = measure(answer), max(limit, measure(gold))
        if size > allowed:
            return f"{what.format(size)} (limit {allowed:.0f})"
    return None


# ----------------------------------------------------------------------------- parsing golds
_UNITS_KEPT = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all")
# math-verify's default extraction with its unit stripping turned off: "math" strips units first
# with strip_units (item by item), "units_kept" keeps them (see read_gold)
_CONFIG = [LatexExtractionConfig(normalization_config=_UNITS_KEPT), ExprExtractionConfig()]
_MODES = ("math", "units_kept")


def _parse(text: str, timeout: int, mode: str = "math") -> list:
    text = strip_units(text) if mode == "math" else text
    return parse(as_latex(text), extraction_config=_CONFIG, parsing_timeout=timeout, raise_on_error=True)


def _expr(parsed: list):
    """The sympy object of a math-verify parse (the rest is its raw-string fallback), or None."""
    return next((x for x in parsed if not isinstance(x, str)), None)


def parse_gold(gold: str, timeout: int = 5):
    """math-verify's own parse of a gold answer, or None if it holds no maths (or timed out/raised).

    math-verify falls back to the raw string when its LaTeX parser fails (``\\boxed{+=}``
    -> ``['+=']``); a gold that is only such a string is unparsable. This is the library's
    view; :func:`unusable_gold` is the verifier's, which also judges lossy parses.
    """
    try:
        parsed = _parse(gold, timeout)
    except (Exception, TimeoutException):
        return None
    return parsed if _expr(parsed) is not None else None


@dataclass(frozen=True)
class GoldForm:
    """How one gold string is judged, decided once by :func:`read_gold`.

    ``mode``: ``math`` (math-verify's parse, units stripped by :func:`strip_units`), ``units_kept``
    (units kept) or ``string`` (normalised string equality); ``expr``: the parse; ``value``: the
    value it states (:func:`read_value`), None for an equation; ``items``: the elements of
    a bare list whose parse merged some; ``bare``: the gold without its percent sign;
    ``reason``: why the gold is unusable, else None.
    """

    text: str
    mode: str = "string"
    expr: Any = None
    value: Any = None
    items: tuple[str, ...] = ()
    bare: GoldForm | None = None
    reason: str | None = None


@lru_cache(maxsize=100_000)
def read_gold(gold: str, timeout: int = 5) -> GoldForm:
    """Parse ``gold`` once, checking that the parse kept all of it (rule d).

    - A Latin letter of the gold (outside ``\\commands`` and ``\\text{}``-like wrappers) that
      is missing from the parse means math-verify's unit stripping ate a symbol (``6m`` -> 6,
      ``\\frac{1}{\\sqrt{2}}c`` -> 1/sqrt(2)). The gold is re-parsed with units kept (``6m`` ->
      6·m), and its answers with it; if letters are still lost it is judged by normalised
      string equality (:func:`canonical`), which keeps the whole gold. Euler's number counts
      as a kept ``e`` (``\\frac{1}{15} e^{-2t}`` parses to exp(-2t)/15, so ``e^{-2t}/15`` is
      correct for it), and ``\\frac{1}{15} e^{-2t} m`` still keeps its ``m``.
    - A bare comma list whose parse merged equal elements (``16,3,1,1`` -> {1, 3, 16},
      ``-2,-2`` -> {-2}) is compared as a multiset: the same number of elements, each
      matched by one answer element under these same rules. An answer list that merged
      elements must have as many elements as the gold (``1,3,3`` is not ``1,3``).
    - An interval closed at an infinite end is silently opened by sympy (``(5,\\infty]`` ->
      (5, oo)); such brackets must agree on both sides.
    - An equation is read by :func:`read_value`, as answers are.
    A gold left with nothing to compare (empty, or no letter or digit) is unusable:
    :func:`unusable_gold` says why, and the data layer drops its problem up front.

    >>> read_gold("6m").mode, str(read_gold("6m").expr), read_gold("16,3,1,1").items, read_gold("").reason
    ('units_kept', '6*m', ('16', '3', '1', '1'), 'empty')
    """
    text = gold.strip()
    if not canonical(text):
        return GoldForm(text, reason="empty")
    bare = read_gold(_PERCENT.sub("", text), timeout) if _PERCENT.search(text) else None
    for mode in _MODES:
        try:
            expr = _expr(_parse(text, timeout, mode))
        except (Exception, TimeoutException):
            expr = None
        if expr is not None and not _lost_letters(e_notation(text), expr):
            value = read_value(expr)
            items = tuple(_top_items(text)) if _merged(text, expr if value is None else value) else ()
            return GoldForm(text, mode, expr, value, items, bare)
    if not re.search(r"[A-Za-z0-9]", canonical(text)):
        return GoldForm(text, reason="unparsable")
    return GoldForm(text, "string", bare=bare)


def unusable_gold(gold: str) -> str | None:
    """Why the verifier cannot judge answers against ``gold`` ("empty", "unparsable"), or None.

    Call from the main thread (math-verify's ``signal.alarm``); the parse is cached and reused.

    >>> unusable_gold("6m"), unusable_gold("\\\\text{north}"), unusable_gold("+="), unusable_gold(" ")
    (None, None, 'unparsable', 'empty')
    """
    _require_main_thread("unusable_gold")
    return read_gold(str(gold)).reason


def gold_alternatives(gold) -> tuple[str, ...]:
    """A gold as a tuple of accepted alternatives: a string (or number) is one alternative, a
    list, tuple or array (a parquet list column reads as a numpy array) holds several.

    >>> gold_alternatives("0.01, 0.02"), gold_alternatives(["0.01", "0.02"]), gold_alternatives(3)
    (('0.01, 0.02',), ('0.01', '0.02'), ('3',))
    """
    if isinstance(gold, (str, bytes)) or not hasattr(gold, "__iter__"):
        return (str(gold),)
    return tuple(str(g) for g in gold)


# ----------------------------------------------------------------------------- judging
def _values(expr) -> list | None:
    """The numbers of a number, interval, tuple or finite set (sets sorted), else None."""
    expr = unwrap_eq(expr)  # x = 3 -> 3
    if isinstance(expr, sympy.Interval):
        parts = [expr.start, expr.end]
    elif isinstance(expr, (sympy.FiniteSet, sympy.Tuple)):
        parts = list(expr.args)
    elif isinstance(expr, sympy.Expr):
        parts = [expr]
    else:
        return None
    values = []
    for part in parts:
        if not isinstance(part, sympy.Expr) or part.free_symbols:
            return None
        value = sympy.N(part.doit(), 30)  # doit: math-verify keeps a percent as an unevaluated 1/100
        if not (value.is_Number and value.is_real):
            return None
        values.append(value)
    return sorted(values) if isinstance(expr, sympy.FiniteSet) else values


def _digits(value, digits: int) -> str:
    """``value`` rounded to ``digits`` significant digits: ``8.224e-19`` -> ``'8.22400e-19'``."""
    if not value.is_finite or value == 0:
        return str(value)
    return format(Decimal(str(value)), f".{digits - 1}e")


def _numbers_agree(gold, pred, same: bool) -> bool | None:
    """Our verdict on math-verify's ``same`` for numbers (rule a), or None where we have none.

    math-verify compares floats to ``float_rounding`` *decimal places* and other numbers to
    an absolute ``numeric_precision``, so ``.0000673`` equals ``.0000672``, and
    ``-(8.224 \\times 10^{-19})`` equals ``8.224 \\times 10^{-19}``. Raising
    ``numeric_precision`` to 30 fixes the second kind only; a larger ``float_rounding``
    breaks ``0.333333`` for ``1/3`` at order 1 and still fails at 1e-20: no setting makes
    the comparison relative. So when both sides are numbers (or tuples, sets or intervals of
    numbers) a "same" also needs every number to agree when rounded to SIGNIFICANT_DIGITS
    = 6 significant digits -- the relative form of math-verify's own 6-decimal rule.
    Conversely a "different" between two plain numbers (never intervals, tuples or sets,
    whose brackets and order matter), one of them a decimal, that agree to NOISE_DIGITS =
    14 significant digits is overturned: that is binary noise (math-verify's
    ``8.7 \\times 10^{8}`` is 869999999.99999994, not ``870000000``). Two exact numbers keep
    math-verify's exact verdict, so ``2^{50}`` is still not ``1125899906842625``. (Limit,
    math-verify's: a decimal holds 15 significant digits, so ``1125899906842625.0`` passes
    for 2^50.) Both sides are the values :func:`read_value` states, so ``x = w`` is checked
    too; two equations without a name on the left keep math-verify's tolerance.
    """
    g, p = _values(gold), _values(pred)
    if g is None or p is None or len(g) != len(p):
        return None
    gold, pred = unwrap_eq(gold), unwrap_eq(pred)
    if not same and not (
        isinstance(gold, sympy.Expr)
        and isinstance(pred, sympy.Expr)
        and (gold.has(sympy.Float) or pred.has(sympy.Float))
    ):
        return None
    digits = SIGNIFICANT_DIGITS if same else NOISE_DIGITS
    return all(_digits(a, digits) == _digits(b, digits) for a, b in zip(g, p))


def _equal(gold, pred, timeout: int) -> bool:
    """math-verify's verdict on two parses, made relative for numbers (rule a)."""
    same = verify(gold, pred, timeout_seconds=timeout, raise_on_error=True, **MATH_VERIFY)
    agree = with_timeout(timeout_seconds=timeout)(_numbers_agree)(gold, pred, same)
    return same if agree is None else agree


def _judge_items(gold: GoldForm, answer: str, timeout: int) -> str:
    """A bare gold list whose parse merged elements, judged as a multiset of elements."""
    answers = _top_items(answer)
    inner = re.fullmatch(r"(?:\\left)?(?:\\\{|\()(.*)(?:\\right)?(?:\\\}|\))", answer.strip(), re.DOTALL)
    if len(answers) == 1 and inner:  # the list written in braces or parentheses
        answers = _top_items(inner.group(1))
    if len(answers) != len(gold.items):
        return "wrong"
    unused = list(answers)
    for item in gold.items:
        match = next((a for a in unused if judge_answer(read_gold(item, timeout), a, timeout) == "correct"), None)
        if match is None:
            return "wrong"
        unused.remove(match)
    return "correct"


def _size(expr) -> int:
    """How many elements a parse holds: a tuple's or set's, else 1."""
    expr = unwrap_eq(expr)
    return len(expr.args) if isinstance(expr, (sympy.FiniteSet, sympy.Tuple)) else 1


def _judge_form(gold: GoldForm, answer: str, timeout: int) -> str:
    if canonical(answer) == canonical(gold.text):
        return "correct"  # the gold verbatim, up to spacing and wrappers
    if gold.mode == "string":
        return "wrong"
    if too_costly(answer, gold.text) is not None:
        return "parse_failure"  # refused unread: see too_costly
    parsed = _parse(answer, timeout, gold.mode)
    pred = _expr(parsed)
    if pred is None:
        return "wrong" if parsed else "parse_failure"
    target = gold.expr  # a gold equation (left side no name): math-verify compares equations
    if gold.value is not None:  # the gold states a value: so must the answer (read_value, alike)
        target, pred = gold.value, read_value(pred)
        if pred is None:
            return "parse_failure"
    if _closed_infinities(gold.text) != _closed_infinities(answer):
        return "wrong"  # "(5,\infty]" parses as (5, oo): the brackets must agree
    if gold.items:
        return _judge_items(gold, answer, timeout)
    if _merged(answer, pred) and len(_top_items(answer)) != _size(target):
        return "wrong"  # "1,3,3" for "1,3": an extra element merged away by the parse
    return "correct" if _equal(target, pred, timeout) else "wrong"


def judge_answer(gold: GoldForm, answer: str, timeout: int = 5) -> str:
    """Outcome of one extracted answer against one read gold.

    One of ``correct``, ``wrong``, ``parse_failure``, ``timeout`` or ``error``.

    Rule c), percent: math-verify takes ``62.5\\%`` as 0.625, so it refuses ``62.5`` for
    ``62.5%`` (it accepts ``8`` for ``8\\%`` only through an integer special case). When either
    side carries a percent sign, the two sides *both stripped of it* are compared too: a
    percent sign on one side only is read as notation (``62.5\\%`` is right for ``62.5``).
    Mixing stays wrong: ``0.625\\%`` for ``62.5\\%`` is still refused.

    >>> judge_answer(read_gold("62.5%"), "62.5"), judge_answer(read_gold("6m"), "6")
    ('correct', 'wrong')
    """
    if gold.reason is not None:
        raise ValueError(f"the gold answer {gold.text!r} is unusable ({gold.reason})")
    try:
        outcome = _judge_form(gold, answer, timeout)
        if outcome != "correct" and (gold.bare is not None or _PERCENT.search(answer)):
            # rule c): percent signs stripped from both sides; one side only stays the library's
            if _judge_form(gold.bare or gold, _PERCENT.sub("", answer), timeout) == "correct":
                return "correct"
        return outcome
    except TimeoutException:  # a BaseException in math-verify, so caught by name
        return "timeout"
    except Exception:
        return "error"


def _integer_text(text: str) -> str:
    """A plain integer's canonical digits, ``-0042`` -> ``-42``: int() refuses more than 4,300 digits."""
    digits = text.lstrip("-").lstrip("0") or "0"
    return digits if digits == "0" or not text.startswith("-") else "-" + digits


def _combine(outcomes: list[str]) -> str:
    """One outcome for a gold's alternatives: correct if any is, else wrong if any is, else the first."""
    for outcome in ("correct", "wrong"):
        if outcome in outcomes:
            return outcome
    return outcomes[0]


def _require_main_thread(name: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(f"{name} must run in the main thread (math-verify uses signal.alarm)")


def _judge_pair(gold: str, answer: str, timeout: int) -> str:
    """One pair as a pool worker judges it: ``gold_error`` if the gold is unusable, else a judge outcome."""
    form = read_gold(gold, timeout)  # cached per worker
    if form.reason is not None:
        return "gold_error"
    return judge_answer(form, answer, timeout)


# ----------------------------------------------------------------------------- the verifier
@dataclass
class Verifier:
    """math-verify with caches, outcome accounting and an optional process pool; see the module docstring.

    Caches: each distinct gold string is read once (:func:`read_gold`, which also decides how
    it is compared) and each distinct ``(gold, extracted)`` pair is judged once; answers
    repeat within and across groups, so repeats cost a dict lookup. A gold list is judged
    alternative by alternative, so its pairs share these caches. Integer fast path: when
    the gold and the answer are both plain integers (``-?[0-9]+``) they are compared as
    digit strings, exactly the slow path's verdict (``0432 == 432``; checked in the tests)
    at a thousandth of the cost, and with no limit on their length. Pool size by
    measurement (``python -m rewards_as_labels.tools.verifier_bench``): on 2 cores a
    ``spawn`` pool of 1 or 2 workers was slower than judging in this process, so there the
    default judges in-process; on more cores it keeps a pool of ``min(4, CPUs)`` workers,
    unmeasured here. With ``workers >= 2``, batches of at least ``pool_min_items`` new pairs
    go to :class:`~rewards_as_labels.verifier_pool.MathVerifyPool`; a script without a main
    guard judges in-process with a warning that says what to add.

    ``timeout_seconds`` bounds each math-verify parse/verify call (signal-based);
    ``integer_fast_path`` compares two plain integers without math-verify (same verdict);
    ``workers``: 1 judges in this process, n >= 2 processes judge batches of at least
    ``pool_min_items`` new pairs, 0 = by measurement (in-process on at most 2 usable CPUs,
    where a pool was slower; else ``min(4, CPUs)``); ``hard_timeout`` (0 = 3 x timeout + 5 s)
    is how long a pair may hold a worker before it scores ``timeout``.
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

    def _read(self, gold: str) -> GoldForm:
        if gold not in self._gold:
            form = read_gold(gold, self.timeout_seconds)
            if form.reason is not None:
                # a broken data set must fail loudly, not train on all-zero rewards
                raise ValueError(f"the gold answer {gold!r} is unusable ({form.reason}); drop it with unusable_gold")
            self._gold[gold] = form
        return self._gold[gold]

    def _store(self, key: tuple[str, str], outcome: str) -> str:
        if len(self._pairs) >= self.max_cache:
            self._pairs.clear()
        self._pairs[key] = outcome
        return outcome

    def _fast(self, gold: str, answer: str) -> str | None:
        if self.integer_fast_path and _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(answer):
            return "correct" if _integer_text(gold) == _integer_text(answer) else "wrong"
        return None

    def _judge_one(self, gold: str, answer: str) -> str:
        key = (gold, answer)
        if key in self._pairs:
            return self._pairs[key]
        fast = self._fast(gold, answer)
        if fast is not None:
            return self._store(key, fast)
        return self._store(key, judge_answer(self._read(gold), answer, self.timeout_seconds))

    def judge(self, gold: str | Sequence[str], answer: str) -> str:
        """Outcome of one extracted answer in this thread.

        One of ``correct``, ``wrong``, ``parse_failure``, ``timeout`` or ``error``.

        >>> Verifier().judge(["0.01", "0.02"], "0.01"), Verifier().judge("0.01, 0.02", "0.01")
        ('correct', 'wrong')
        """
        alternatives = gold_alternatives(gold)
        if not alternatives:
            raise ValueError("a gold list holds no alternatives")
        return _combine([self._judge_one(alt, answer) for alt in alternatives])

    def _workers(self) -> int:
        if self.workers:
            return self.workers
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 1 if cpus <= 2 else min(4, cpus)  # see the class docstring and tools/verifier_bench.py

    def _use_pool(self, todo: int) -> bool:
        if self._workers() < 2 or todo < self.pool_min_items:
            return False
        script = unguarded_main() if self.start_method != "fork" else None
        if script is not None:
            warnings.warn(
                f'{script} has no `if __name__ == "__main__":` guard, so each spawned verifier worker '
                "would re-run it; judging in this process instead. To use the pool, move the script's "
                'top-level code into a function and call it under `if __name__ == "__main__":`.',
                RuntimeWarning,
                stacklevel=4,
            )
            self.workers = 1  # warn once
            return False
        return True

    def judge_many(self, pairs: list[tuple[str, str]]) -> None:
        """Judge the uncached ``(gold alternative, answer)`` pairs into the cache, in a pool when asked and worth it."""
        todo = list(dict.fromkeys(p for p in pairs if p not in self._pairs and self._fast(*p) is None))
        if self._use_pool(len(todo)):
            for gold in dict.fromkeys(g for g, _ in todo):
                self._read(gold)  # unusable golds raise here, in the parent, before any work is sent
            hard = self.hard_timeout or 3 * self.timeout_seconds + 5
            while todo:
                pool = shared_pool(_judge_pair, self._workers(), self.start_method)
                results, killed = pool.judge(todo, self.timeout_seconds, hard)
                if killed:
                    forget_pool(_judge_pair, self._workers(), self.start_method)
                for index, outcome in results.items():
                    self._store(todo[index], outcome)
                todo = [p for i, p in enumerate(todo) if i not in results]
        for gold, answer in pairs:  # the fast-path pairs, and all of them without a pool
            self._judge_one(gold, answer)

    def score(
        self,
        completions: list[str],
        golds: list[str | Sequence[str]],
        truncated: list[bool] | None = None,
        require_boxed: bool = False,
    ):
        """Rewards ``FloatTensor [B]`` and outcome counts; see :func:`score_completions`."""
        import torch  # here, not at the top: pool workers import this module and need no torch

        _require_main_thread("score_completions")
        if len(completions) != len(golds) or (truncated is not None and len(truncated) != len(golds)):
            raise ValueError(
                f"lengths differ: {len(completions)} completions, {len(golds)} golds, "
                f"{None if truncated is None else len(truncated)} truncated flags"
            )
        truncated = truncated if truncated is not None else [False] * len(golds)
        alternatives = [gold_alternatives(g) for g in golds]  # hashable: tuples of strings
        extract = (lambda text: _last_boxed(text) or None) if require_boxed else extract_answer
        answers = [None if cut else extract(text) for text, cut in zip(completions, truncated)]
        self.judge_many([(g, a) for alts, a in zip(alternatives, answers) if a is not None for g in alts])
        counts = dict.fromkeys(OUTCOMES, 0)
        rewards = torch.zeros(len(completions), dtype=torch.float32)  # [B]
        for i, (answer, alts, cut) in enumerate(zip(answers, alternatives, truncated)):
            if cut:
                outcome = "truncated"
            else:
                outcome = "parse_failure" if answer is None else self.judge(alts, answer)
            counts[outcome] += 1
            rewards[i] = float(outcome == "correct")
        return rewards, counts


_DEFAULT = Verifier()


def score_completions(
    completions: list[str],
    golds: list[str | Sequence[str]],
    truncated: list[bool] | None = None,
    require_boxed: bool = False,
):
    """Binary rewards ``FloatTensor [B]`` for completions against gold answers, with outcome counts.

    A gold is a string or a list/tuple of accepted alternatives. Must be called from the main
    thread (math-verify's timeouts use ``signal.alarm``). Counts always add up to
    ``len(completions)``. ``require_boxed``: only a ``\\boxed{}`` answers (pass ``asks_for_box(problems)``).

    >>> r, c = score_completions(["432", "12+3", "", "432"], ["432", "15", "1", "432"], [False, False, False, True])
    >>> r.tolist(), c["correct"], c["wrong"], c["parse_failure"], c["truncated"]
    ([1.0, 0.0, 0.0, 0.0], 1, 1, 1, 1)
    >>> score_completions(["\\\\boxed{0.01}", "\\\\boxed{0.01}"], [["0.01", "0.02"], "0.01, 0.02"])[0].tolist()
    [1.0, 0.0]
    """
    return _DEFAULT.score(completions, golds, truncated, require_boxed)
