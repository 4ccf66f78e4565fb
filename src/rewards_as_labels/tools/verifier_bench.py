"""``python -m rewards_as_labels.tools.verifier_bench``: the verifier's time in this process and in
process pools, on realistic pairs that reach math-verify -- the measurement behind
``Verifier.workers = 0`` (in-process on 2 or fewer CPUs).
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from ..verifier import Verifier, _judge_pair, read_gold
from ..verifier_pool import MathVerifyPool


def bench_pairs(n: int = 3000, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct realistic (gold, extracted answer) pairs that reach math-verify (no integer pairs).

    Golds in the forms of MATH, Minerva and OlympiadBench; answers right, equivalent, wrong and
    near misses, as a model's ``\\boxed{}`` would hold them.

    >>> len(bench_pairs(50)), all(isinstance(a, str) for _, a in bench_pairs(5))
    (50, True)
    """
    import random

    rng = random.Random(seed)

    def forms() -> tuple[str, list[str]]:
        a, b, k = rng.randint(1, 99), rng.randint(2, 30), rng.randint(-30, 30)
        c = rng.choice([a + 1, a - 1, -a, 10 * a])
        mantissa = f"{rng.randint(100, 999) / 100:.2f}"
        return rng.choice([
            (f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}", f"{a / b:.6f}", f"\\frac{{{c}}}{{{b}}}", f"\\dfrac{{{a}}}{{{b}}}"]),
            (f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{c}\\sqrt{{{b}}}", f"{a}\\sqrt{{{b + 1}}}"]),
            (f"({a},{a + b}]", [f"({a},{a + b}]", f"[{a},{a + b}]", f"({a},{a + b})", f"({c},{a + b}]"]),
            (f"\\{{{a},{b}\\}}", [f"\\{{{b},{a}\\}}", f"{a},{b}", f"\\{{{a}\\}}", f"\\{{{a},{b},{c}\\}}"]),
            (f"{mantissa} \\times 10^{{{k}}}", [f"{mantissa} \\times 10^{{{k}}}", f"{mantissa}e{k}", f"{mantissa} \\times 10^{{{k + 1}}}", f"-{mantissa} \\times 10^{{{k}}}"]),
            (f"{a}.5\\%", [f"{a}.5", f"{a}.5\\%", f"{(a + 0.5) / 100:.4f}", f"{c}.5\\%"]),
            (f"{a}x^2+{b}", [f"{a}x^2+{b}", f"{b}+{a}x^{{2}}", f"{c}x^2+{b}", f"{a}x+{b}"]),
            (f"({a},{b})", [f"({a},{b})", f"({b},{a})", f"\\left({a}, {b}\\right)", f"({a},{c})"]),
            (str(a), [f"\\frac{{{2 * a}}}{{2}}", f"x = {a}", f"{a}^\\circ", f"{a}.0", f"\\text{{{a}}}", f"{c}.5"]),
        ])

    pairs: dict[tuple[str, str], None] = {}
    while len(pairs) < n:
        gold, answers = forms()
        pairs[(gold, rng.choice(answers))] = None
    return list(pairs)


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
    cli.add_argument("--workers", default="1,2", help="pool sizes to time, comma-separated")
    args = cli.parse_args()
    print(f"{args.pairs} pairs on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, value in bench(args.pairs, [int(w) for w in args.workers.split(",")]).items():
        print(f"{name:>20}: {value:7.1f} s")
