"""Timing helpers shared by the benchmark scripts: interleaved repeats, the median ratio to a baseline."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_call(fn: Callable[[], object], *, number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def compare(
    candidates: dict[str, Callable[[], object]],
    *,
    baseline: str,
    repeats: int = 7,
    min_time: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Time every candidate in interleaved rounds; return ``{name: (seconds, ratio to baseline)}``.

    Each round times every candidate once, so a slow phase of the machine hits all of them alike; the
    reported time is the best round (interference only adds time), the ratio that of the best times.
    """
    for fn in candidates.values():  # warm-up, and pick a call count per candidate
        fn()
    numbers = {}
    for name, fn in candidates.items():
        once = max(time_call(fn, number=1), 1e-6)
        numbers[name] = max(1, int(min_time / once))
    rounds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            rounds[name].append(time_call(fn, number=numbers[name]))
    # best-of-rounds times: interference from other work on the machine only ever adds time
    best = {name: min(times) for name, times in rounds.items()}
    return {name: (t, t / best[baseline]) for name, t in best.items()}
