r"""The verifier's batteries: near misses never pay, equivalent forms always do, equations
without a name on the left and oversized answers are not read; gold lists are alternatives;
lossy gold parses keep the whole gold; unusable golds are reported; the probe battery of
policy-style responses gets the verdicts stated in ``verifier.py``.

Every case is scored through :class:`Verifier` as a training step would, in boxed form (how
hub maths responses answer) and, for plain numbers, in the bare final-number form too.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rewards_as_labels.tools.verifier_bench import PROBES
from rewards_as_labels.verifier import Verifier, judge_answer, read_gold, unusable_gold

SCI = "8.224 \\times 10^{-19}"
NEAR_MISSES = {  # kind -> [(gold, answer)]: every one must score 0
    "sign flip": [
        (SCI, "-(8.224 \\times 10^{-19})"),
        (SCI, "-8.224 \\times 10^{-19}"),
        ("6.02 \\times 10^{23}", "-6.02 \\times 10^{23}"),
        ("\\frac{1}{2}", "-\\frac{1}{2}"),
        ("3", "-3"),
    ],
    "one changed digit": [
        (".0000672", ".0000673"),
        (SCI, "8.225 \\times 10^{-19}"),
        ("1.60218 \\times 10^{-19}", "1.60219 \\times 10^{-19}"),  # six significant digits
        ("3.14159", "3.14158"),
        ("432", "433"),
        ("2^{50}", "1125899906842625"),  # exact numbers stay exact: no tolerance at 16 digits
    ],
    "factor of ten": [
        (SCI, "8.224 \\times 10^{-18}"),
        (SCI, "8.224e-20"),
        ("6.02 \\times 10^{23}", "6.02 \\times 10^{24}"),
        ("4.5e33", "4.5e34"),
        ("2.5 \\times 10^{-30}", "2.5 \\times 10^{-31}"),
        ("0.0005", "0.005"),
    ],
    "dropped or extra element": [
        ("16,3,1,1", "16, 3, 1"),
        ("16,3,1,1", "1,3,16"),
        ("16,3,1,1", "16,3,1,1,1"),
        ("16,3,1,1", "(16,3,1)"),
        ("-2,-2", "-2"),
        ("1,3", "1,3,3"),
        ("3", "3,3"),
        ("2x", "2x, 2x"),
        ("(1,2,3)", "(1,2)"),
        ("\\{1,2\\}", "\\{1,2,3\\}"),
    ],
    "dropped symbolic factor": [
        ("6m", "6"),
        ("\\frac{1}{\\sqrt{2}}c", "\\frac{1}{\\sqrt{2}}"),
        ("2\\pi", "2"),
        ("3x", "3"),
    ],
    "reversed ordered tuple": [
        ("(1,2)", "(2,1)"),
        ("(1,2,3)", "(3,2,1)"),
    ],
    "swapped interval bracket": [
        ("(5,\\infty)", "(5,\\infty]"),
        ("(-\\infty,3)", "[-\\infty,3)"),
        ("(1,2)", "[1,2)"),
        ("[1,2]", "(1,2]"),
    ],
    "percent of the wrong number": [
        ("62.5\\%", "0.625\\%"),
    ],
    "a list or an or behind units": [
        ("15\\mbox{ cm}^2", "15 \\text{ cm}^2, 16 \\text{ cm}^2"),
        ("15\\mbox{ cm}^2", "15 \\text{ cm}^2 \\text{ or } 16 \\text{ cm}^2"),
        ("5.4 \\text{ cents}", "5.4 \\text{ cents}, 5.5 \\text{ cents}"),
        ("3", "3 \\text{ cm or } 4 \\text{ cm}"),
        ("4", "3 \\lor 4"),  # math-verify read the last operand
        ("4", "3 \\vee 4"),
        ("3", "x = 3 \\text{ or } x = 4"),
    ],
    "Euler's number": [
        ("\\frac{1}{15} e^{-2t}", "\\frac{1}{15} e^{-3t}"),
        ("\\frac{1}{15} e^{-2t} m", "\\frac{1}{15} e^{-2t}"),  # still lossy: the m is kept
        ("2e", "2"),
    ],
}
UNREAD = {  # kind -> [(gold, answer)]: every one must score 0 as a parse failure (it states no value, or is too big)
    "equation whose left side is no name": [
        (SCI, "1 = 5 \\times 10^{-19}"),
        (".0000672", "2p = .0000673"),
        (".0000672", "1 = .0000672"),  # the gold's value, but the equation says nothing about it
        ("15\\mbox{ cm}^2", "99 = 15\\mbox{ cm}^2"),
        ("15\\mbox{ cm}^2", "15\\text{ cm}^2 = 16\\text{ cm}^2"),
        ("3", "2x = 6"),
        ("4", "x = 3 = 4"),  # a chain with a false link
    ],
    "over a size limit": [
        ("5", "9^{9^{9}}"),
        ("5", "2^{2^{2^{2^{2^{2}}}}}"),
        ("5", "10^{10^{10}}"),
        ("5", "1000000!"),
        ("5", "(10^{6})!"),
        ("5", "(" * 9 + "5" + ")" * 9),  # equal, but nested past MAX_NESTING
        ("5", ", ".join(str(i) for i in range(150))),  # a list longer than MAX_ANSWER_CHARS
    ],
}
BARE_NEAR_MISSES = [  # plain numbers written without a box
    (SCI, "so the energy is -(8.224 \\times 10^{-19}) J"),
    (".0000672", "the value is .0000673"),
    ("6.02 \\times 10^{23}", "about 6.02e24"),
    ("432", "answer: 433"),
]

EQUIVALENTS = {  # kind -> [(gold, answer)]: every one must score 1
    "e-notation and times ten": [
        ("8.7 \\times 10^{8}", "8.7e8"),
        ("4.5e33", "4.5 \\times 10^{33}"),
        ("4.5e33", "4.5e33"),
        (SCI, "8.224e-19"),
        ("8.7e8", "870000000"),
        (".0000672", "6.72 \\times 10^{-5}"),
        ("6.02 \\times 10^{23}", "6.02 \\cdot 10^{23}"),
    ],
    "percent": [
        ("62.5%", "62.5"),
        ("62.5", "62.5\\%"),
        ("62.5\\%", "0.625"),
        ("8 \\%", "8"),
    ],
    "fractions and decimals": [
        ("\\frac{1}{2}", "\\dfrac{1}{2}"),
        ("\\frac{1}{2}", "1/2"),
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\dfrac12"),
        ("\\frac{1}{3}", "0.333333"),  # math-verify's six-digit rule, kept
    ],
    "text wrapper": [
        ("5", "\\text{5}"),
        ("\\text{5}", "5"),
        ("5", "5\\text{ cm}"),
    ],
    "degrees": [
        ("30", "30^\\circ"),
        ("30", "30^{\\circ}"),
        ("30^\\circ", "30"),
    ],
    "thousands separator": [
        ("1000", "1,000"),
        ("1000", "1{,}000"),
        ("1234567", "1,234,567"),
    ],
    "leading zeros": [
        ("432", "0432"),
    ],
    "equation": [
        ("3", "x = 3"),
        ("5", "x = 5"),
        (SCI, "E = 8.224 \\times 10^{-19}"),
        ("3", "f(2) = 3"),
        ("3", "\\Delta E = 3"),
        ("3", "x = \\frac{6}{2} = 3"),
        ("(2, 3)", "(x, y) = (2, 3)"),
        ("x = 5", "5"),  # read alike: a gold equation with a name on the left states its value
        ("x = 5", "y = 5"),
        ("y = 2x+1", "2x+1"),
        ("2x+3y=6", "4x+6y=12"),  # two equations without a name on the left: compared as equations
    ],
    "units on a single answer": [
        ("15\\mbox{ cm}^2", "15 \\text{ cm}^2"),
        ("15\\mbox{ cm}^2", "15"),
        ("5.4 \\text{ cents}", "5.4"),
        ("9.8", "9.8 \\text{ m}\\cdot\\text{s}^{-2}"),
        ("9.8", "a = 9.8 \\text{ m/s}^2"),
        ("15, 16", "15 \\text{ cm}, 16 \\text{ cm}"),  # a list gold: each item loses its own unit
    ],
    "Euler's number": [
        ("\\frac{1}{15} e^{-2t}", "e^{-2t}/15"),
        ("\\frac{1}{15} e^{-2t}", "\\frac{e^{-2t}}{15}"),
        ("e^{-2t}", "\\exp(-2t)"),
    ],
    "large but cheap": [
        ("1024", "2^{10}"),
        ("65536", "2^{2^{2^{2}}}"),
        ("3628800", "10!"),
    ],
    "lossy gold, whole answer": [
        ("6m", "6m"),
        ("6m", "6 m"),
        ("\\frac{1}{\\sqrt{2}}c", "\\frac{c}{\\sqrt{2}}"),
        ("16,3,1,1", "16, 3, 1, 1"),
        ("16,3,1,1", "1,1,3,16"),  # a bare list is a set for math-verify: order is free, counts are not
        ("-2,-2", "-2,-2"),
        ("16,3,1,1", "\\{16, 3, 1, 1\\}"),
        ("(5,\\infty)", "(5,\\infty)"),
    ],
}
BARE_EQUIVALENTS = [  # plain numbers written without a box
    ("8.7 \\times 10^{8}", "so it is 8.7e8"),
    ("4.5e33", "about 4.5 \\times 10^{33}."),
    ("62.5%", "the share is 62.5"),
    ("62.5", "the share is 62.5%"),
    ("\\frac{1}{2}", "so 1/2"),
    ("0.5", "so \\dfrac{1}{2}"),
    ("30", "the angle is 30^\\circ"),
    ("1000", "we get 1,000 apples"),
    ("432", "0432"),
    ("3", "so x = 3"),
    (".0000672", "it is .0000672"),
]


def _battery():
    """(gold, response, require_boxed, outcome) for every case: boxed as hub responses answer, and bare."""
    tables = [("wrong", NEAR_MISSES, BARE_NEAR_MISSES), ("correct", EQUIVALENTS, BARE_EQUIVALENTS)]
    for expected, table, bare in [*tables, ("parse_failure", UNREAD, [])]:
        for kind, rows in table.items():
            for gold, answer in rows:
                text = f"The answer is $\\boxed{{{answer}}}$."
                yield pytest.param(gold, text, True, expected, id=f"{expected}, {kind}: {answer[:60]} for {gold}")
        for gold, text in bare:
            yield pytest.param(gold, text, False, expected, id=f"{expected}, bare: {text} for {gold}")


@pytest.mark.parametrize("gold, text, require_boxed, expected", list(_battery()))
def test_battery(gold, text, require_boxed, expected):
    rewards, counts = Verifier().score([text], [gold], require_boxed=require_boxed)
    assert counts[expected] == 1, counts  # a near miss is "wrong", never "correct" (nor an error)
    assert rewards.tolist() == [float(expected == "correct")]


# ----------------------------------------------------------------------------- gold lists
def test_gold_list_means_alternatives():
    v = Verifier()
    texts = ["\\boxed{0.01}", "\\boxed{0.02}", "\\boxed{0.03}", "\\boxed{0.01, 0.02}"]
    rewards, counts = v.score(texts, [["0.01", "0.02"]] * 4)
    assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0] and counts["wrong"] == 2
    # the joined string is one set-valued answer: only the whole set is right
    rewards, _ = v.score(texts, ["0.01, 0.02"] * 4)
    assert rewards.tolist() == [0.0, 0.0, 0.0, 1.0]
    # tuples work as lists; integer alternatives still take the fast path
    assert v.score(["4", "5"], [("3", "4"), ("3", "4")])[0].tolist() == [1.0, 0.0]
    assert v.judge(["3", "4"], "4") == "correct" and ("4", "4") in v._pairs
    # a parquet list column arrives as a numpy array
    assert v.score(["\\boxed{0.02}"], [np.array(["0.01", "0.02"], dtype=object)])[0].tolist() == [1.0]


def test_gold_list_of_one_equals_the_string():
    texts = ["\\boxed{\\frac12}", "\\boxed{0.4}"]
    assert Verifier().score(texts, [["0.5"], ["0.5"]])[0].tolist() == Verifier().score(texts, ["0.5"] * 2)[0].tolist()


def test_empty_gold_list_is_refused():
    with pytest.raises(ValueError, match="no alternatives"):
        Verifier().score(["\\boxed{1}"], [[]])


# ----------------------------------------------------------------------------- lossy golds
@pytest.mark.parametrize(
    "gold, mode, kept",
    [
        ("6m", "units_kept", "6*m"),  # math-verify's unit stripping read 6
        ("\\frac{1}{\\sqrt{2}}c", "units_kept", "sqrt(2)*c/2"),  # ... and 1/sqrt(2)
        ("4.5e33", "math", "4.5e+33"),  # not 4.5*E*33
        ("A and B", "string", None),  # parsed to less than the gold in both modes
        ("x \\to \\infty", "string", None),  # math-verify cannot parse it at all
        ("5\\text{ cm}", "math", "5"),  # a unit in a text wrapper may go
    ],
)
def test_lossy_gold_parse_keeps_the_whole_gold(gold, mode, kept):
    import sympy

    form = read_gold(gold)
    assert form.mode == mode and form.reason is None
    if kept is not None:
        symbols = {s.name: s for s in form.expr.free_symbols}  # math-verify's symbols are real
        assert sympy.simplify(form.expr - sympy.sympify(kept, locals=symbols)) == 0


def test_merged_gold_list_keeps_its_elements():
    assert read_gold("16,3,1,1").items == ("16", "3", "1", "1")
    assert read_gold("-2,-2").items == ("-2", "-2")
    assert read_gold("16,3,1").items == ()  # nothing merged: math-verify's own set comparison


def test_string_fallback_takes_the_answer_verbatim():
    v = Verifier()
    texts = ["\\boxed{x \\to \\infty}", "\\boxed{x\\to\\infty}", "\\boxed{x \\to 0}", "\\boxed{A and B}", "\\boxed{A}"]
    golds = ["x \\to \\infty"] * 3 + ["A and B"] * 2
    assert v.score(texts, golds)[0].tolist() == [1.0, 1.0, 0.0, 1.0, 0.0]


# ----------------------------------------------------------------------------- unusable golds
@pytest.mark.parametrize("gold, reason", [("", "empty"), ("   ", "empty"), ("+=", "unparsable"), ("--", "unparsable")])
def test_unusable_gold_says_why(gold, reason):
    assert unusable_gold(gold) == reason
    with pytest.raises(ValueError, match=reason):
        Verifier().score(["\\boxed{1}"], [gold])


@pytest.mark.parametrize(
    "gold", ["6m", "\\frac{1}{2}", "(0,1]", "x \\to \\infty", "\\text{north}", "4.5e33", "16,3,1,1"]
)
def test_usable_gold_has_no_reason(gold):
    assert unusable_gold(gold) is None


def test_unusable_gold_refuses_worker_threads():
    import threading

    errors = []

    def call():
        try:
            unusable_gold("1")
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0])


# ----------------------------------------------------------------------------- scripts without a main guard
def test_script_without_main_guard_works(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent("""
        from rewards_as_labels.verifier import Verifier

        rewards, counts = Verifier(workers=2, pool_min_items=1).score(
            ["\\\\boxed{0.5}", "\\\\boxed{(0,1]}", "\\\\boxed{7}"], ["\\\\frac12", "(0,1]", "6"])
        print("REWARDS", rewards.tolist())
    """)
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert done.returncode == 0, done.stderr
    assert "REWARDS [1.0, 1.0, 0.0]" in done.stdout
    assert 'if __name__ == "__main__":' in done.stderr  # the warning says exactly what to add


# ----------------------------------------------------------------------------- size limits
OVERSIZED = ["9^{9^{9}}", "1000000!", "(" * 30 + "5" + ")" * 30, ",".join(map(str, range(5000)))]


@pytest.mark.parametrize("answer", OVERSIZED)
def test_oversized_answer_is_refused_before_math_verify(monkeypatch, answer):
    import rewards_as_labels.verifier as V

    gold = read_gold("5")
    monkeypatch.setattr(V, "parse", _forbidden)
    monkeypatch.setattr(V, "verify", _forbidden)
    assert V.too_costly(answer) is not None
    assert judge_answer(gold, answer) == "parse_failure"


def test_size_limits_follow_the_gold():
    from rewards_as_labels.verifier import MAX_ANSWER_CHARS, too_costly

    long_gold = "x + " * (MAX_ANSWER_CHARS // 4) + "1"
    assert too_costly(long_gold) is not None and too_costly(long_gold, long_gold) is None
    assert too_costly("2^{2^{20}}") is not None and too_costly("2^{2^{20}}", "2^{2^{21}}") is None
    assert too_costly("5" * 5000, "") is not None  # a 5,000-digit integer: too long to read ...
    assert Verifier().judge("5" * 5000, "5" * 5000) == "correct"  # ... unless it is the gold (no int() limit)


def _forbidden(*args, **kwargs):
    raise AssertionError("math-verify was called for an answer over a size limit")


# ----------------------------------------------------------------------------- probe battery
@pytest.mark.parametrize("form, gold, text, require_boxed, expected", PROBES, ids=[p[0] for p in PROBES])
def test_probe_battery(form, gold, text, require_boxed, expected):
    rewards, counts = Verifier().score([text], [gold], require_boxed=require_boxed)
    assert counts[expected] == 1, counts  # the verdict verifier.py's "Probes" states for this form
