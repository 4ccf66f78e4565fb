r"""math-verify on real maths answers: equivalent surface forms score 1, adversarial strings fail
closed and fast, and the process pool gives the main thread's verdicts."""

import time

import pytest

from rewards_as_labels.data import Problem
from rewards_as_labels.verifier import Verifier, asks_for_box, extract_answer, parse_gold, score_completions

EQUIVALENT = [  # (gold, completion): math-verify must call these equal
    ("\\frac{1}{2}", "so the answer is \\boxed{0.5}"),
    ("\\frac12", "\\boxed{\\frac{1}{2}}"),
    ("0.5", "We get $\\boxed{\\frac12}$."),
    ("3", "Therefore \\boxed{3}."),
    ("3", "the answer is 3"),  # plain final number, no box
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}"),  # sets are unordered
    ("(0,1]", "\\boxed{(0,1]}"),
    ("3", "\\boxed{x=3}"),  # an equation's right-hand side
    ("\\frac34", "\\boxed{\\dfrac{3}{4}}"),
    ("50\\%", "\\boxed{50}"),  # percentages: math-verify accepts 50 and 0.5 for 50%
    ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\sqrt{2}/2}"),
    ("\\frac{1}{2}", "\\boxed{\\frac{1}{\\sqrt{4}}}"),  # nested braces
    ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}"),  # simplification
]
DIFFERENT = [
    ("(0,1]", "\\boxed{[0,1]}"),  # interval ends matter
    ("(0,1]", "\\boxed{(0,1)}"),
    ("\\{1,2\\}", "\\boxed{\\{1,3\\}}"),
    ("\\frac12", "\\boxed{\\frac13}"),
    ("3", "\\boxed{x=4}"),
]


@pytest.mark.parametrize("gold, completion", EQUIVALENT)
def test_equivalent_forms_score_one(gold, completion):
    rewards, counts = Verifier().score([completion], [gold])
    assert rewards.tolist() == [1.0], counts


@pytest.mark.parametrize("gold, completion", DIFFERENT)
def test_different_answers_score_zero(gold, completion):
    rewards, counts = Verifier().score([completion], [gold])
    assert rewards.tolist() == [0.0] and counts["wrong"] == 1


def test_boxed_content_is_parsed_as_latex():
    # bare, math-verify reads "1,2" as 1.2 and "\{1,2\}" as nothing: the verifier boxes the span first
    v = Verifier()
    assert v.score(["\\boxed{1,2}"], ["\\{1,2\\}"])[0].tolist() == [1.0]
    assert v.score(["\\boxed{1,2}"], ["1.2"])[0].tolist() == [0.0]


def test_gold_parse_checks():
    assert parse_gold("\\frac{1}{2}") is not None and parse_gold("(0,1]") is not None
    assert parse_gold("+=") is None and parse_gold("") is None  # only a raw-string fallback: unparsable
    with pytest.raises(ValueError, match="gold answer"):
        Verifier().score(["\\boxed{1}"], ["+="])


# ----------------------------------------------------------------------------- adversarial
def test_huge_exponent_fails_closed_quickly():
    v = Verifier(timeout_seconds=1)
    start = time.perf_counter()
    rewards, counts = v.score(["\\boxed{10^{10^{10}}}", "so \\boxed{9^{9^{9}}}"], ["5", "5"])
    assert rewards.tolist() == [0.0, 0.0]
    assert counts["parse_failure"] == 2  # refused unread by the size limits (too_costly)
    assert time.perf_counter() - start < 8  # before the limits, about 1 s each (math-verify's own alarm)


def test_many_and_unbalanced_boxes_are_linear_time():
    text = "\\boxed{1} " * 20_000 + "\\boxed{42}"
    start = time.perf_counter()
    assert extract_answer(text) == "42"
    assert extract_answer("\\boxed{" * 50_000) is None  # unbalanced: no box and no number
    assert extract_answer("\\boxed{7} then \\boxed{" * 5_000) == "7"
    assert time.perf_counter() - start < 1.0


def test_answer_hidden_in_the_prompt_echo():
    # an echoed worked example holds the gold in a box, but the final box is the model's answer
    echo = "Example: 40+2 gives \\boxed{42}. Now the question: what is 40+2? My answer: \\boxed{41}"
    assert Verifier().score([echo], ["42"])[0].tolist() == [0.0]
    # echoing a question whose last number is the answer: the final-number rule would pay it,
    # but a prompt that asks for \boxed{} is answered only by a box
    question = Problem("q", "Let x = 12. Find x.", "Let x = 12. Find x.\n\nPut it in \\boxed{}.", "12", 0)
    assert asks_for_box([question])
    assert score_completions(["Let x = 12. Find x."], ["12"])[0].tolist() == [1.0]  # the fallback's hole ...
    rewards, counts = score_completions(["Let x = 12. Find x."], ["12"], require_boxed=True)
    assert rewards.tolist() == [0.0] and counts["parse_failure"] == 1  # ... closed
    assert score_completions(["x is \\boxed{12}"], ["12"], require_boxed=True)[0].tolist() == [1.0]


# ----------------------------------------------------------------------------- process pool
@pytest.mark.slow
def test_pool_matches_main_thread_and_kills_a_hung_worker(monkeypatch):
    golds = [["0.3", "\\frac{1}{2}"], "(0,1]", "\\{1,2\\}", "3"] * 6  # a list: alternatives
    texts = [f"\\boxed{{{a}}}" for a in ["0.5", "(0,1]", "\\{2,1\\}", "x=3", "0.25", "[0,1]"]] * 4
    main = Verifier(workers=1).score(texts, golds)
    pooled = Verifier(workers=2, pool_min_items=4, timeout_seconds=2).score(texts, golds)
    assert pooled[0].tolist() == main[0].tolist() and pooled[1] == main[1]

    # a pair stuck outside Python (simulated by a sleep the alarm cannot see) scores timeout;
    # the others are still judged, in a restarted pool
    import rewards_as_labels.verifier as V

    v = Verifier(
        workers=2, pool_min_items=2, timeout_seconds=1, hard_timeout=3, start_method="fork", integer_fast_path=False
    )
    monkeypatch.setattr(V, "judge_answer", _hang_on_seven)  # fork: the workers inherit the patch
    start = time.perf_counter()
    rewards, counts = v.score(["\\boxed{7}", "\\boxed{1}", "\\boxed{2}", "\\boxed{3}"], ["7", "1", "5", "3"])
    assert rewards.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert counts["timeout"] == 1 and counts["correct"] == 2 and counts["wrong"] == 1
    assert time.perf_counter() - start < 30


def _hang_on_seven(gold, answer, timeout):
    import signal

    if answer == "7":
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(60)
    return "correct" if gold.text == answer else "wrong"
