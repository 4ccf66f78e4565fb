"""A process pool that judges (gold, answer) pairs with a hard timeout per pair.

math-verify implements its timeouts with ``signal.alarm``, which only works in a process's
main thread. Each worker runs the judge function in its main thread, so those timeouts work
there too; a pair still running after ``hard_timeout`` seconds (stuck in C code, where no
alarm is seen) scores ``timeout``, its worker is killed and the pool restarted; a worker
that dies scores its pair ``error``. Workers publish the pair they hold in shared memory, so
exactly the culprit is blamed.

Workers start with ``spawn`` (safe beside CUDA). A script without an
``if __name__ == "__main__":`` guard cannot use ``spawn`` (each worker would re-run the
script): :func:`unguarded_main` detects it before any worker starts, so the caller can judge
in-process instead.

This module knows nothing of answers: the judge function is handed in by reference
(``verifier._judge_pair``), so the verifier imports the pool and not the other way round.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import queue
import re
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

Judge = Callable[[str, str, int], str]  # (gold, answer, timeout seconds) -> outcome

_WORKER: dict = {}  # in a pool worker: "slots" (shared array), "index", "judge"


def _init_worker(slots, counter, judge: Judge) -> None:
    with counter.get_lock():
        _WORKER["index"] = counter.value % len(slots)
        counter.value += 1
    _WORKER["slots"] = slots
    _WORKER["judge"] = judge


def _work(item: int, gold: str, answer: str, timeout: int) -> tuple[int, str]:
    """One pair in a worker: its index and the judge's outcome."""
    slots, index = _WORKER["slots"], _WORKER["index"]
    slots[index] = item  # the parent reads this to blame exactly this pair if we hang
    try:
        return item, _WORKER["judge"](gold, answer, timeout)
    finally:
        slots[index] = -1


def _ping() -> int:
    return os.getpid()


_GUARD = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.MULTILINE)


def unguarded_main() -> str | None:
    """The path of the running script if ``spawn`` would re-run it in every worker (no main guard), else None.

    ``python -m pkg.mod``, ``python -c``, notebooks and a worker itself are never reported.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is not None or not path or multiprocessing.parent_process() is not None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return None if _GUARD.search(handle.read()) else path
    except OSError:
        return None


class MathVerifyPool:
    """A ``ProcessPoolExecutor`` that runs ``judge(gold, answer, timeout)`` per pair with per-pair hard timeouts.

    ``judge`` must be a module-level function (it is pickled by reference into each worker).
    """

    def __init__(self, judge: Judge, workers: int, start_method: str = "spawn", startup_timeout: float = 300.0):
        ctx = multiprocessing.get_context(start_method)
        self.workers = workers
        self.slots = ctx.Array("q", [-1] * workers, lock=False)
        self.executor = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(self.slots, ctx.Value("i", 0), judge)
        )
        # start every worker now, so that start-up (imports) never counts against a pair's timeout
        wait([self.executor.submit(_ping) for _ in range(workers)], timeout=startup_timeout)

    def kill(self) -> None:
        """End the workers now, running calls included."""
        # ProcessPoolExecutor cannot cancel a running call: end its processes (private, but stable since 3.8)
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def judge(self, items: list[tuple[str, str]], timeout: int, hard_timeout: float) -> tuple[dict[int, str], bool]:
        """Outcomes by item index, and whether the pool had to be killed (the rest is then missing)."""
        finished: queue.SimpleQueue = queue.SimpleQueue()
        # one callback per future, not concurrent.futures.wait over all pending futures per
        # result: that costs O(pairs) each time, O(pairs^2) in all, and took a core from the workers
        for i, (gold, answer) in enumerate(items):
            self.executor.submit(_work, i, gold, answer, timeout).add_done_callback(finished.put)
        results: dict[int, str] = {}
        idle_rounds = 0
        while len(results) < len(items):
            try:
                future = finished.get(timeout=hard_timeout)
            except queue.Empty:
                stuck = [v for v in self.slots if v >= 0 and v not in results]
                if stuck:  # nothing finished for hard_timeout seconds while these ran
                    for index in stuck:
                        results[index] = "timeout"
                    self.kill()
                    return results, True
                idle_rounds += 1
                if idle_rounds >= 10:
                    self.kill()
                    raise RuntimeError(f"the math-verify pool made no progress in {10 * hard_timeout:.0f} s") from None
                continue
            idle_rounds = 0
            try:
                index, outcome = future.result()
            except BrokenProcessPool:  # a worker died (e.g. killed for memory): blame what it held
                for index in [v for v in self.slots if v >= 0 and v not in results]:
                    results[index] = "error"
                self.kill()
                return results, True
            results[index] = outcome
        return results, False


_POOLS: dict[tuple, MathVerifyPool] = {}


def shared_pool(judge: Judge, workers: int, start_method: str) -> MathVerifyPool:
    """The process-wide pool for these settings, started on first use and shut down at exit."""
    key = (judge, workers, start_method)
    if key not in _POOLS:
        _POOLS[key] = MathVerifyPool(judge, workers, start_method)
    return _POOLS[key]


def forget_pool(judge: Judge, workers: int, start_method: str) -> None:
    """Drop a killed pool, so that the next :func:`shared_pool` call starts a fresh one."""
    _POOLS.pop((judge, workers, start_method), None)


@atexit.register
def _shutdown_pools() -> None:
    for pool in _POOLS.values():
        pool.executor.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()
