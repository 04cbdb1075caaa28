"""Micro-batching: the items of every request waiting at one moment are scored in one call, on one thread.

Scoring a lead costs mostly per call (building a feature frame of any size: ~10 ms), little per row (~0.1 ms), so
a CRM that sends one lead per request at 100 requests a second would keep one worker busy with frame overhead and
its queue would never drain. :class:`MicroBatcher` lets an async endpoint hand its items over and wait: a single
scoring thread takes every job waiting when it is free, calls the scoring function once on all their items and
gives each job its own results back. Nothing waits on purpose (no batching window): an idle service scores a
lone request at once, a busy one in batches as large as the load makes them.

This is only correct for scoring that does not depend on the other rows of a call; for leads that is a tested
property (``tests/unit/test_lead_scoring_context.py``: the same probabilities alone, in a batch and in any
order). A call that raises is retried job by job, so one request's failure never reaches another.

Plain Python (threads and asyncio): no BentoML here.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger("salesml.batcher")


@dataclass
class _Job(Generic[T]):
    items: Sequence[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class MicroBatcher(Generic[T, R]):
    """``await batcher(items)``: ``fn(items)``'s results, computed in one call with the other waiting jobs' items.

    Args:
        fn: scores a list of items and returns one result per item, in order.
        max_items: a batch takes jobs until it holds at least this many items (a job is never split).
        name: the scoring thread's name.
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], *, max_items: int = 10_000, name: str = "batcher"):
        self.fn, self.max_items, self.name = fn, max_items, name
        self._queue: queue.SimpleQueue[_Job[T]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0  # calls of fn, for the benchmark and the tests
        self.largest = 0  # the most jobs one call served

    async def __call__(self, items: Sequence[T]) -> list[R]:
        if not items:
            return []
        self._start()
        loop = asyncio.get_running_loop()
        job = _Job(items, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            size = len(jobs[0].items)
            while size < self.max_items:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job.items)
            self._serve(jobs)

    def _serve(self, jobs: list[_Job[T]]) -> None:
        self.batches += 1
        self.largest = max(self.largest, len(jobs))
        try:
            results = self.fn([item for job in jobs for item in job.items])
            if len(results) != sum(len(job.items) for job in jobs):
                raise RuntimeError(
                    f"{self.name}: {len(results)} results for {sum(len(j.items) for j in jobs)} items"
                )
        except Exception as err:  # noqa: BLE001 - each job is retried alone, so only its own failure reaches it
            if len(jobs) > 1:
                for job in jobs:
                    self._serve([job])
                return
            _resolve(jobs[0], error=err)
            return
        start = 0
        for job in jobs:
            _resolve(job, value=results[start : start + len(job.items)])
            start += len(job.items)


def _resolve(job: _Job[Any], *, value: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if job.future.done():  # the request was cancelled (client gone, timeout)
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the request's event loop has closed
        logger.debug("a job's event loop closed before its result")
