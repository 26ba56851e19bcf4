"""The worker's garbage-collector thresholds: rarer young collections, and cyclic
garbage still collected without anyone calling gc.collect()."""

from __future__ import annotations

import gc
import weakref

from groundwork_app.worker.runner import WORKER_GC_THRESHOLDS, tune_gc_for_in_flight_jobs


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_worker_collects_less_often_but_still_collects_cycles() -> None:
    saved = gc.get_threshold()
    try:
        tune_gc_for_in_flight_jobs()
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
        # Young collections run after tens of thousands of net allocations, not 700.
        assert WORKER_GC_THRESHOLDS[0] >= 10 * 700
        gc.collect()
        young_before = gc.get_stats()[0]["collections"]
        freed = [0]

        def count(_: object) -> None:
            freed[0] += 1

        refs = []
        # 400,000 objects in two-node cycles, never collected by hand; at most one
        # young threshold's worth of them (~50,000 allocations) is still uncollected
        # at the end.
        for _ in range(200_000):
            a, b = _Node(), _Node()
            a.other, b.other = b, a
            refs.append(weakref.ref(a, count))
        young = gc.get_stats()[0]["collections"] - young_before
        # Collections happened on their own (the collector is on) and freed the cycles...
        assert freed[0] > 150_000
        # ...far fewer of them than CPython's defaults run here (~850).
        assert 0 < young <= 60
    finally:
        gc.set_threshold(*saved)
