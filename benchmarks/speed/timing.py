"""Single-query latency in rotating rounds: the timing loop the side-by-side benches (width, engine-options) share.

Every round times every key in turn, starting one key later than the round before, so a noisy neighbour on a
shared machine slows all of them alike and ratios taken within a round stay comparable.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rotating_p50(
    keys: Sequence[K], search: Callable[[K, int], object], queries: int, repeats: int
) -> list[dict[K, float]]:
    """Per round, the p50 in ms of `queries` calls `search(key, i)` (i = 0..queries-1) for every key."""
    rounds = []
    for r in range(repeats):
        p50: dict[K, float] = {}
        for key in [*keys[r % len(keys) :], *keys[: r % len(keys)]]:
            times = []
            for i in range(queries):
                start = time.perf_counter()
                search(key, i)
                times.append(time.perf_counter() - start)
            p50[key] = 1000 * statistics.median(times)
        rounds.append(p50)
    return rounds
