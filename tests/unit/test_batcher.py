"""serving/batcher.py: requests waiting together are scored in one call, each gets its own results back, and a
call that fails is retried job by job so one request's failure never reaches another."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.batcher import MicroBatcher


def test_waiting_jobs_share_one_call_and_each_gets_its_own_results() -> None:
    gate = threading.Event()
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        gate.wait(5)  # the first call holds the thread while the other jobs queue up
        calls.append(list(items))
        return [i * 10 for i in items]

    batcher = MicroBatcher(fn)

    async def main() -> list[list[int]]:
        first = asyncio.ensure_future(batcher([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher([i, i + 100])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *[await r for r in rest]]

    results = asyncio.run(main())
    assert results == [[0], *[[i * 10, (i + 100) * 10] for i in range(1, 6)]]
    assert calls[0] == [0] and len(calls) == 2  # the five waiting jobs were one call, in arrival order
    assert calls[1] == [x for i in range(1, 6) for x in (i, i + 100)]
    assert batcher.batches == 2 and batcher.largest == 5


def test_a_failing_job_is_retried_alone_and_fails_only_itself() -> None:
    gate = threading.Event()

    def fn(items: list[str]) -> list[str]:
        gate.wait(5)
        if "bad" in items:
            raise ValueError("bad item")
        return [s.upper() for s in items]

    batcher = MicroBatcher(fn)

    async def main() -> list[object]:
        first = asyncio.ensure_future(batcher(["a"]))
        await asyncio.sleep(0.05)
        jobs = [asyncio.ensure_future(batcher(x)) for x in (["b"], ["c", "bad"], ["d"])]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *jobs, return_exceptions=True)

    a, b, bad, d = asyncio.run(main())
    assert (a, b, d) == (["A"], ["B"], ["D"])
    assert isinstance(bad, ValueError)


def test_max_items_bounds_a_merged_call_and_an_empty_job_costs_nothing() -> None:
    gate = threading.Event()
    sizes: list[int] = []

    def fn(items: list[int]) -> list[int]:
        gate.wait(5)
        sizes.append(len(items))
        return items

    batcher = MicroBatcher(fn, max_items=4)

    async def main() -> None:
        first = asyncio.ensure_future(batcher([1]))
        await asyncio.sleep(0.05)
        jobs = [asyncio.ensure_future(batcher([1, 2, 3])) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *jobs)
        assert await batcher([]) == []

    asyncio.run(main())
    assert sizes == [1, 6, 3]  # a call takes jobs until it holds at least 4 items; a job is never split


@pytest.mark.parametrize("n", [1, 50])
def test_results_are_the_callers_whatever_the_interleaving(n: int) -> None:
    batcher = MicroBatcher(lambda items: [(k, x * x) for k, x in items])

    async def main() -> list[list[tuple[int, int]]]:
        return await asyncio.gather(*(batcher([(k, x) for x in range(k % 7 + 1)]) for k in range(n)))

    for k, got in enumerate(asyncio.run(main())):
        assert got == [(k, x * x) for x in range(k % 7 + 1)]
