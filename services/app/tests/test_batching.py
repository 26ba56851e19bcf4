"""groundwork_app.batching: concurrent submissions coalesce, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from groundwork_app.batching import Coalescer, each_alone_on_failure


class Recorder:
    """A run_batch that doubles its items, records every batch and the peak overlap."""

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.active = 0
        self.peak = 0

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return [ValueError(f"bad {i}") if i < 0 else i * 2 for i in items]


async def test_idle_call_runs_alone_and_at_once():
    run = Recorder(delay=0)
    coalescer: Coalescer[int, int] = Coalescer(run, name="t")
    assert await coalescer.submit(21) == 42
    assert run.batches == [[21]]


async def test_concurrent_calls_share_batches_and_each_gets_its_own_result():
    run = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(run, name="t", max_batch=16, max_concurrent=2)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(100)))
    assert results == [i * 2 for i in range(100)]
    assert sorted(i for batch in run.batches for i in batch) == list(range(100))
    assert len(run.batches) < 20  # coalesced: far fewer calls than items
    assert max(len(batch) for batch in run.batches) == 16  # capped at max_batch
    assert run.peak == 2  # never more batches in flight than max_concurrent
    assert (coalescer.batches, coalescer.items) == (len(run.batches), 100)


async def test_an_item_outcome_that_is_an_exception_fails_only_its_caller():
    coalescer: Coalescer[int, int] = Coalescer(Recorder(), name="t", max_concurrent=1)
    outcomes = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-1), coalescer.submit(3), return_exceptions=True
    )
    assert outcomes[0] == 2 and outcomes[2] == 6
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -1"


async def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs():
    calls = 0

    async def flaky(items: Sequence[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(flaky, name="t", max_concurrent=1)
    first = await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in first)
    assert await coalescer.submit(7) == 7


async def test_wrong_number_of_outcomes_is_an_error_not_a_mismatch():
    async def short(items: Sequence[int]) -> list[int | BaseException]:
        return list(items)[:-1]

    coalescer: Coalescer[int, int] = Coalescer(short, name="t", max_concurrent=1)
    outcomes = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(2), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) and "2 items" in str(o) for o in outcomes)


async def test_a_caller_cancelled_while_queued_is_left_out_of_the_batch():
    run = Recorder(delay=0.05)
    coalescer: Coalescer[int, int] = Coalescer(run, name="t", max_concurrent=1)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0.01)  # batch [1] is in flight
    doomed = asyncio.create_task(coalescer.submit(2))
    survivor = asyncio.create_task(coalescer.submit(3))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await first == 2 and await survivor == 6
    assert run.batches == [[1], [3]]
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_no_item_is_stranded_under_bursty_load():
    """Items queued while a flusher is finishing must still be flushed."""
    rng = random.Random(7)

    async def jittery(items: Sequence[int]) -> list[int | BaseException]:
        if rng.random() < 0.5:
            await asyncio.sleep(0)
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(jittery, name="t", max_batch=8, max_concurrent=2)

    async def caller(i: int) -> int:
        for _ in range(rng.randint(0, 3)):
            await asyncio.sleep(0)
        return await coalescer.submit(i)

    async with asyncio.timeout(10):
        for wave in range(20):
            items = range(wave * 100, wave * 100 + 100)
            assert await asyncio.gather(*(caller(i) for i in items)) == list(items)
    await coalescer.close()


async def test_linger_gathers_callers_that_arrive_a_little_apart():
    # Callers 10 ms apart, statements 10 ms long: without linger nearly every item runs
    # alone; with 200 ms of linger the first batch waits for the rest. (Milliseconds
    # apart, a loaded machine's stalled event loop would fire the timers together.)
    async def staggered(coalescer: Coalescer[int, int]) -> list[int]:
        async def one(i: int) -> int:
            await asyncio.sleep(i * 0.01)
            return await coalescer.submit(i)

        return list(await asyncio.gather(*(one(i) for i in range(10))))

    eager, lingering = Recorder(delay=0.01), Recorder(delay=0.01)
    assert await staggered(Coalescer(eager, name="t", max_concurrent=1)) == [
        i * 2 for i in range(10)
    ]
    assert await staggered(Coalescer(lingering, name="t", max_concurrent=1, linger=0.2)) == [
        i * 2 for i in range(10)
    ]
    assert len(eager.batches) >= 4
    assert len(lingering.batches) <= 2
    assert sorted(i for batch in lingering.batches for i in batch) == list(range(10))
    # A full batch does not wait.
    full = Recorder(delay=0)
    coalescer: Coalescer[int, int] = Coalescer(full, name="t", max_batch=4, linger=10)
    started = asyncio.get_running_loop().time()
    tasks = [asyncio.ensure_future(coalescer.submit(i)) for i in range(4)]
    assert await asyncio.gather(*tasks) == [0, 2, 4, 6]
    assert asyncio.get_running_loop().time() - started < 1


def test_rejects_nonsense_limits():
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Recorder(), name="t", max_batch=0)
    with pytest.raises(ValueError, match="linger"):
        Coalescer(Recorder(), name="t", linger=-1)


async def test_each_alone_on_failure_isolates_the_bad_item():
    calls: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if any(i < 0 for i in items):
            raise LookupError(f"bad item in {list(items)}")
        return [i * 10 for i in items]

    assert await each_alone_on_failure([1, 2], run, LookupError) == [10, 20]
    outcomes = await each_alone_on_failure([1, -2, 3], run, LookupError)
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], LookupError)
    assert calls[-3:] == [[1], [-2], [3]]  # the failed batch, retried one by one
    [alone] = await each_alone_on_failure([-1], run, LookupError)
    assert isinstance(alone, LookupError)

    async def broken(items: Sequence[int]) -> list[int]:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):  # not one of ``errors``: the whole batch fails
        await each_alone_on_failure([1, 2], broken, LookupError)
