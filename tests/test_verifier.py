"""The verifier fails closed and counts every reason for a zero reward."""

import threading

import pytest
import torch

from rewards_as_labels.verifier import OUTCOMES, Verifier, extract_answer, score_completions


@pytest.mark.parametrize(
    "text, expected",
    [
        ("432", "432"),
        ("12+3", "3"),  # echoing the prompt: only the final number counts
        ("12-3", "3"),  # a binary minus is not a sign
        ("-3", "-3"),
        ("the answer is 0.5.", "0.5"),
        ("3/4", "3/4"),
        ("so \\frac{3}{4}", "\\frac{3}{4}"),
        ("first 7 then \\boxed{\\frac{1}{2}} and 9", "\\frac{1}{2}"),
        ("\\boxed{1} \\boxed{2}", "2"),
        ("4<pad>32", "32"),
        ("we get 1,000 apples", "1000"),  # thousands separators: one number
        ("the roots are 1, 2", "2"),  # a list is not a number
        ("so 8.7e8", "8.7e8"),
        ("it is 8.7 \\times 10^{8} m", "8.7\\times10^{8}"),
        ("E = -(2 \\times 10^{-3})", "-2\\times10^{-3}"),  # the sign of "-(...)" is kept
        ("f(2)-(3)", "3"),  # ... but not a binary minus
        ("the share is 62.5%", "62.5%"),
        ("it is .5", ".5"),
        ("", None),
        ("+= *", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_rewards_and_counts():
    completions = ["432", "431", "", "=+", "432", "12+3", "0.5", "\\frac{1}{2}", "\\boxed{15}"]
    golds = ["432", "432", "432", "432", "432", "15", "1/2", "0.5", "15"]
    truncated = [False, False, False, False, True, False, False, False, False]
    rewards, counts = score_completions(completions, golds, truncated)
    assert rewards.dtype == torch.float32 and rewards.shape == (9,)
    assert rewards.tolist() == [1, 0, 0, 0, 0, 0, 1, 1, 1]
    assert counts == {"correct": 4, "wrong": 2, "parse_failure": 2, "truncated": 1, "timeout": 0, "error": 0}
    assert sum(counts.values()) == len(completions)


def test_truncated_is_zero_even_when_right():
    rewards, counts = score_completions(["432"], ["432"], [True])
    assert rewards.tolist() == [0.0] and counts["truncated"] == 1 and counts["correct"] == 0


def test_timeout_and_error_count_separately(monkeypatch):
    from math_verify.errors import TimeoutException

    import rewards_as_labels.verifier as V

    def slow(gold, pred, **kwargs):
        raise TimeoutException("too slow")

    v = Verifier(integer_fast_path=False)  # plain integers would never reach math-verify
    monkeypatch.setattr(V, "verify", slow)
    assert v.score(["5"], ["6"])[1]["timeout"] == 1
    monkeypatch.setattr(V, "verify", lambda *a, **k: 1 / 0)
    assert v.score(["7"], ["6"])[1]["error"] == 1


def test_unparsable_gold_fails_loudly():
    with pytest.raises(ValueError, match="gold answer"):
        Verifier().score(["1"], ["+="])


def test_refuses_worker_threads():
    errors = []
    thread = threading.Thread(target=lambda: errors.append(_catch(lambda: score_completions(["1"], ["1"]))))
    thread.start()
    thread.join()
    assert isinstance(errors[0], RuntimeError) and "main thread" in str(errors[0])


def _catch(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return exc


def test_repeats_are_cache_lookups(monkeypatch):
    # performance belongs in benchmarks (python -m rewards_as_labels.tools.verifier_bench); here we
    # check the reason it is cheap: a repeated pair never reaches math-verify again
    import rewards_as_labels.verifier as V

    v = Verifier()
    golds = ["\\frac{1}{2}", "(0,1]", "432"] * 4  # 3 prompts x 4 rollouts
    texts = ["\\boxed{0.5}", "\\boxed{[0,1]}", "432", "\\boxed{0.25}", "\\boxed{(0,1]}", "431"] * 2
    first = v.score(texts, golds)
    assert len(v._pairs) == len(set(zip(golds, [V.extract_answer(t) for t in texts])))
    monkeypatch.setattr(V, "parse", _forbidden)
    monkeypatch.setattr(V, "verify", _forbidden)
    again = v.score(texts, golds)
    assert again[0].tolist() == first[0].tolist() == [1, 0, 1, 0, 1, 0] * 2 and again[1] == first[1]


def _forbidden(*args, **kwargs):
    raise AssertionError("math-verify was called for a cached pair")


def test_every_outcome_is_reachable_and_counted(monkeypatch):
    import rewards_as_labels.verifier as V

    seen = {}
    for text, gold, cut in [("432", "432", False), ("431", "432", False), ("", "432", False), ("432", "432", True)]:
        for name, n in Verifier().score([text], [gold], [cut])[1].items():
            seen[name] = seen.get(name, 0) + n

    def timeout(*args, **kwargs):
        from math_verify.errors import TimeoutException

        raise TimeoutException("too slow")

    for fake in (timeout, lambda *a, **k: 1 / 0):
        monkeypatch.setattr(V, "verify", fake)
        for name, n in Verifier().score(["\\boxed{0.5}"], ["\\frac12"])[1].items():
            seen[name] = seen.get(name, 0) + n
    assert tuple(seen) == OUTCOMES and all(n == 1 for n in seen.values()), seen


def test_integer_fast_path_agrees_with_math_verify():
    pairs = [(g, a) for g in ["432", "0", "1998", "-7"] for a in ["432", "0432", "0", "00", "1998", "-7", "7", "431"]]
    fast, slow = Verifier(), Verifier(integer_fast_path=False)
    for gold, answer in pairs:
        assert fast.judge(gold, answer) == slow.judge(gold, answer), (gold, answer)
    assert not fast._gold  # the fast path never called math-verify
