"""``python -m rewards_as_labels.tools.verifier_bench``: the verifier's time in this process and in
process pools, on realistic pairs that reach math-verify -- the measurement behind
``Verifier.workers = 0`` (in-process on 2 or fewer CPUs) -- how often a correct answer among
them times out, and the time per call on the probe battery (:data:`PROBES`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from ..verifier import Verifier, _judge_pair, read_gold
from ..verifier_pool import MathVerifyPool

SCI = "8.224 \\times 10^{-19}"
# The probe battery: responses as a policy probing the verifier writes them, each with the verdict
# the verifier's documentation states for it ("Probes" in verifier.py).
# (form, gold, response, require_boxed, outcome); tests/test_verifier_battery.py checks every verdict.
PROBES: list[tuple[str, str, str, bool, str]] = [
    ("several boxes: the last counts", "4", "First \\boxed{3}, on reflection \\boxed{4}.", True, "correct"),
    ("several boxes: an earlier right one does not", "3", "First \\boxed{3}, on reflection \\boxed{4}.", True, "wrong"),
    ("nested boxes: the outer one", "4", "So \\boxed{\\boxed{4}}.", True, "correct"),
    ("nested boxes holding a hedge", "4", "\\boxed{\\boxed{3} \\text{ or } \\boxed{4}}", True, "wrong"),
    ("unclosed box", "4", "The answer is \\boxed{4", True, "parse_failure"),
    ("unclosed box after a closed one", "4", "\\boxed{3} or rather \\boxed{4", True, "wrong"),
    ("equation with a name on the left", "4", "\\boxed{x = 4}", True, "correct"),
    ("equation 1 = tiny", SCI, "\\boxed{1 = 5 \\times 10^{-19}}", True, "parse_failure"),
    ("equation 2p = near miss", ".0000672", "\\boxed{2p = .0000673}", True, "parse_failure"),
    ("equation 99 = gold", "15\\mbox{ cm}^2", "\\boxed{99 = 15\\mbox{ cm}^2}", True, "parse_failure"),
    ("equation gold = other", "15\\mbox{ cm}^2", "\\boxed{15\\text{ cm}^2 = 16\\text{ cm}^2}", True, "parse_failure"),
    ("chain with a false link", "4", "\\boxed{x = 3 = 4}", True, "parse_failure"),
    ("unit list", "15\\mbox{ cm}^2", "\\boxed{15 \\text{ cm}^2, 16 \\text{ cm}^2}", True, "wrong"),
    ("unit or", "15\\mbox{ cm}^2", "\\boxed{15 \\text{ cm}^2 \\text{ or } 16 \\text{ cm}^2}", True, "wrong"),
    ("unit list of cents", "5.4 \\text{ cents}", "\\boxed{5.4 \\text{ cents}, 5.5 \\text{ cents}}", True, "wrong"),
    ("single answer with a unit", "15\\mbox{ cm}^2", "\\boxed{15 \\text{ cm}^2}", True, "correct"),
    ("hedge with or", "4", "\\boxed{3 \\text{ or } 4}", True, "wrong"),
    ("hedge with \\lor", "4", "\\boxed{3 \\lor 4}", True, "wrong"),
    ("hedge of equations", "4", "\\boxed{x = 3 \\text{ or } x = 4}", True, "wrong"),
    ("hedge with \\pm", "4", "\\boxed{3 \\pm 1}", True, "wrong"),
    ("hedge in dollars", "4", "\\boxed{$3$ or $4$}", True, "wrong"),
    ("fullwidth digits", "42", "\\boxed{\uff14\uff12}", True, "wrong"),
    ("Arabic-Indic digits, no box", "42", "The answer is \u0664\u0662", False, "parse_failure"),
    ("power tower", "5", "\\boxed{9^{9^{9}}}", True, "parse_failure"),
    ("tower of twos", "5", "\\boxed{2^{2^{2^{2^{2^{2}}}}}}", True, "parse_failure"),
    ("huge factorial", "5", "\\boxed{1000000!}", True, "parse_failure"),
    ("deep nesting", "5", "\\boxed{" + "(" * 30 + "5" + ")" * 30 + "}", True, "parse_failure"),
    ("5,000 candidates", "5", "\\boxed{" + ", ".join(map(str, range(5000))) + "}", True, "parse_failure"),
    ("5,000-digit integer", "5", "\\boxed{" + "5" * 5000 + "}", True, "wrong"),
    ("a small tower, evaluated", "65536", "\\boxed{2^{2^{2^{2}}}}", True, "correct"),
    ("Euler's number rewritten", "\\frac{1}{15} e^{-2t}", "\\boxed{e^{-2t}/15}", True, "correct"),
    ("very long response", "4", "Let me think. " * 100_000 + "\\boxed{4}", True, "correct"),
    ("50,000 unclosed boxes", "4", "\\boxed{" * 50_000, True, "parse_failure"),
    ("20,000 boxes", "4", "\\boxed{1} " * 20_000 + "\\boxed{4}", True, "correct"),
]


def probe_bench(repeats: int = 2) -> dict:
    """Seconds per call on :data:`PROBES` with cold caches (best of ``repeats``): the worst and per 1,000 responses.

    Returns ``per_1000``, ``worst`` (seconds), ``worst_form`` and ``slow``: the forms over 1 s
    that are not correct answers (the bar: none; the CLI exits non-zero otherwise).
    """
    Verifier(workers=1).judge("\\frac{1}{2}", "0.5")  # warm up: math-verify's first parse loads its grammar
    seconds: dict[str, float] = {}
    for form, gold, response, boxed, _expected in PROBES:
        best = float("inf")
        for _ in range(repeats):
            read_gold.cache_clear()
            start = time.perf_counter()
            Verifier(workers=1).score([response], [gold], require_boxed=boxed)
            best = min(best, time.perf_counter() - start)
        seconds[form] = best
    worst = max(seconds, key=seconds.get)
    correct = {form for form, *_, expected in PROBES if expected == "correct"}
    return {
        "per_1000": 1000 * sum(seconds.values()) / len(seconds),
        "worst": seconds[worst],
        "worst_form": worst,
        "slow": sorted(f for f, t in seconds.items() if t > 1.0 and f not in correct),
    }


def labelled_pairs(n: int = 3000, seed: int = 0) -> list[tuple[str, str, bool]]:
    """``n`` distinct realistic ``(gold, extracted answer, right)`` triples that reach math-verify (no integer pairs).

    Golds in the forms of MATH, Minerva and OlympiadBench; answers right (equivalent forms) and
    wrong (near misses), as a model's ``\\boxed{}`` would hold them.

    >>> len(labelled_pairs(50)), sorted({right for _, _, right in labelled_pairs(50)})
    (50, [False, True])
    """
    import random

    rng = random.Random(seed)

    def forms() -> tuple[str, list[str], list[str]]:
        a, b, k = rng.randint(1, 99), rng.randint(2, 30), rng.randint(-30, 30)
        c = rng.choice([a + 1, a - 1, -a, 10 * a])
        mantissa = f"{rng.randint(100, 999) / 100:.2f}"
        return rng.choice(
            [
                (
                    f"\\frac{{{a}}}{{{b}}}",
                    [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"\\dfrac{{{a}}}{{{b}}}"],
                    [f"\\frac{{{c}}}{{{b}}}"],
                ),
                (f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"], [f"{c}\\sqrt{{{b}}}"]),
                (f"({a},{a + b}]", [f"({a},{a + b}]"], [f"[{a},{a + b}]", f"({a},{a + b})", f"({c},{a + b}]"]),
                (
                    f"\\{{{a},{b}\\}}",
                    [f"\\{{{b},{a}\\}}", f"{a},{b}"] if a != b else [f"\\{{{a}\\}}"],
                    [f"\\{{{a},{b},{c}\\}}"],
                ),
                (
                    f"{mantissa} \\times 10^{{{k}}}",
                    [f"{mantissa} \\times 10^{{{k}}}", f"{mantissa}e{k}"],
                    [f"{mantissa} \\times 10^{{{k + 1}}}", f"-{mantissa} \\times 10^{{{k}}}"],
                ),
                (f"{a}.5\\%", [f"{a}.5", f"{a}.5\\%"], [f"{c}.5\\%"]),
                (f"{a}x^2+{b}", [f"{a}x^2+{b}", f"{b}+{a}x^{{2}}"], [f"{c}x^2+{b}", f"{a}x+{b}"]),
                (
                    f"({a},{b})",
                    [f"({a},{b})", f"\\left({a}, {b}\\right)"],
                    [f"({a},{c})"] + ([f"({b},{a})"] if a != b else []),
                ),
                (
                    str(a),
                    [f"\\frac{{{2 * a}}}{{2}}", f"x = {a}", f"{a}^\\circ", f"{a}.0", f"\\text{{{a}}}"],
                    [f"{c}.5"],
                ),
            ]
        )

    triples: dict[tuple[str, str], bool] = {}
    while len(triples) < n:
        gold, right, wrong = forms()
        answer = rng.choice(right + wrong)
        triples[(gold, answer)] = answer in right
    return [(gold, answer, right) for (gold, answer), right in triples.items()]


def bench_pairs(n: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    """The ``(gold, answer)`` pairs of :func:`labelled_pairs`.

    >>> len(bench_pairs(50)), all(isinstance(a, str) for _, a in bench_pairs(5))
    (50, True)
    """
    return [(gold, answer) for gold, answer, _ in labelled_pairs(n, seed)]


def correct_timeouts(n: int = 3000, timeout: int = 5) -> dict[str, int]:
    """How the right answers of :func:`labelled_pairs` fare in-process: counts of their outcomes.

    A ``timeout`` among them is a correct answer refused for its cost; ``wrong`` or
    ``parse_failure`` would be an equivalent form the verifier misses.
    """
    verifier = Verifier(workers=1, timeout_seconds=timeout)
    read_gold.cache_clear()
    counts: dict[str, int] = {}
    for gold, answer, right in labelled_pairs(n):
        if right:
            outcome = verifier.judge(gold, answer)
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def bench(n: int = 3000, pool_workers: Sequence[int] = (1, 2), timeout: int = 5) -> dict[str, float]:
    """Seconds to judge :func:`bench_pairs` ``(n)`` with cold caches: in this process, and in pools.

    Pool times include starting the workers (``<k>_workers_start``, the one-off part).
    Measured with ``python -m rewards_as_labels.tools.verifier_bench`` (3,000 pairs, 2 CPUs shared
    with other jobs, load average 2-5), seconds in-process / pool of 1 / pool of 2:

        before the pool waited per result in O(1):  34.6 / 43.9 / 40.1   and  30.1 / 62.6 / 57.7
        after:                                      38.9 / 46.9 / 35.8   and  28.2 / 30.8 / 35.0

    Starting the workers took 0.3-1.0 s. A pool never paid on 2 cores, so there the default
    (``Verifier.workers = 0``) judges in-process.
    """
    pairs = bench_pairs(n)
    seconds: dict[str, float] = {}
    read_gold.cache_clear()
    start = time.perf_counter()
    Verifier(workers=1).judge_many(pairs)
    seconds["in_process"] = time.perf_counter() - start
    for workers in pool_workers:
        read_gold.cache_clear()
        start = time.perf_counter()
        pool = MathVerifyPool(_judge_pair, workers)
        seconds[f"{workers}_workers_start"] = time.perf_counter() - start
        results, _ = pool.judge(pairs, timeout, 3 * timeout + 5)
        seconds[f"{workers}_workers"] = time.perf_counter() - start
        pool.executor.shutdown(wait=True)
        assert len(results) == len(pairs)
    return seconds


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(description="Time the verifier in this process and in process pools.")
    cli.add_argument("--pairs", type=int, default=3000)
    cli.add_argument("--workers", default="1,2", help="pool sizes to time, comma-separated ('' for none)")
    cli.add_argument("--probes-only", action="store_true", help="time the probe battery and count timeouts only")
    args = cli.parse_args()
    print(f"{args.pairs} pairs on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    probes = probe_bench()
    print(
        f"probe battery ({len(PROBES)} responses): {probes['per_1000']:.1f} s per 1,000 responses, "
        f"worst call {probes['worst']:.2f} s ({probes['worst_form']})"
    )
    print("probes over 1 s that are not correct answers:", probes["slow"] or "none")
    print("outcomes of the right answers among the pairs:", correct_timeouts(args.pairs))
    if not args.probes_only:
        workers = [int(w) for w in args.workers.split(",") if w]
        for name, value in bench(args.pairs, workers).items():
            print(f"{name:>20}: {value:7.1f} s")
    if probes["slow"]:
        raise SystemExit(f"probe calls over 1 s: {probes['slow']}")
