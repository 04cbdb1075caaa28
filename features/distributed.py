"""Where the feature pipelines run: in this process (the default) or on a Dask cluster.

``--scheduler`` (or ``SALESML_DASK_SCHEDULER``) names the cluster: ``local`` starts a
``distributed.LocalCluster`` sized to this machine (one single-threaded worker process per core, the memory split
between them) for the length of the command; an address (``tcp://host:8786``) joins a running scheduler and its
workers (``dask scheduler`` / ``dask worker tcp://host:8786``); unset or empty keeps everything in one process.

The pipelines hand the cluster pure functions of one partition of entities (a customer's history is never split:
customers are hashed to partitions), so a partition lost with a worker is run again by the scheduler on another
one; the results come back to this process, which writes them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

import numpy as np
import pandas as pd

from features.errors import SalesmlError

__all__ = [
    "ENV",
    "entity_buckets",
    "gather",
    "map_partitions",
    "current_client",
    "n_workers",
    "scheduler_client",
    "using",
    "worker_memory",
]

_CLIENT: ContextVar[Any | None] = ContextVar("salesml_dask_client", default=None)

ENV = "SALESML_DASK_SCHEDULER"


def _check(value: str) -> str:
    if value == "local" or value.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        return value
    raise SalesmlError(
        f"--scheduler / {ENV}: expected 'local' or a scheduler address such as tcp://127.0.0.1:8786, got {value!r}"
    )


@contextmanager
def scheduler_client(value: str | None = None) -> Iterator[Any | None]:
    """A ``distributed.Client`` for ``value`` (default: ``$SALESML_DASK_SCHEDULER``), or None to run in process.

    Raises:
        SalesmlError: a value that is neither ``local`` nor an address, or a scheduler that does not answer.
    """
    value = (value if value is not None else os.environ.get(ENV, "")).strip()
    if not value:
        yield None
        return
    value = _check(value)
    from distributed import Client, LocalCluster

    if value == "local":
        n = max(os.cpu_count() or 1, 1)
        with (
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(value, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise SalesmlError(
            f"--scheduler {value}: no Dask scheduler answered there ({type(err).__name__}: {err}); start one with "
            "`dask scheduler` and its workers with `dask worker <address>`"
        ) from None
    with client:
        yield client


@contextmanager
def using(client: Any | None) -> Iterator[Any | None]:
    """Within the block, steps that take no client argument (the forecast's statistical baselines, deep inside a
    backtest) run on ``client`` (:func:`current_client`); ``None`` keeps them in this process."""
    token = _CLIENT.set(client)
    try:
        yield client
    finally:
        _CLIENT.reset(token)


def current_client() -> Any | None:
    """The client of the innermost :func:`using` block, or None."""
    return _CLIENT.get()


def map_partitions(
    client: Any | None, func: Callable[..., Any], parts: Sequence[tuple[Any, ...]], **kwargs: Any
) -> list[Any]:
    """``[func(*part, **kwargs) for part in parts]``, on the cluster when ``client`` is given (each partition's
    data sent once, the shared ``kwargs`` once for all), in order.

    Raises:
        SalesmlError: a partition failed on the cluster (the first failure's type and message).
    """
    if client is None:
        return [func(*part, **kwargs) for part in parts]
    shared = {k: client.scatter(v, broadcast=True) if _large(v) else v for k, v in kwargs.items()}
    futures = []
    for i, part in enumerate(parts):
        args = [client.scatter(a) if _large(a) else a for a in part]
        futures.append(
            client.submit(func, *args, **shared, key=f"{func.__name__}-{i}-{id(parts)}", pure=False)
        )
    return gather(client, futures)


def gather(client: Any, futures: Sequence[Any]) -> list[Any]:
    """The futures' results in order, each let go on the cluster as soon as it is here (a worker holds only what
    has not been fetched yet). A task's own SalesmlError (a bad part, a bad value) is raised as it is, any other
    failure (a worker that kept dying, an exception in a task) as one SalesmlError line.
    """
    from distributed import as_completed

    where = {future.key: i for i, future in enumerate(futures)}
    out: list[Any] = [None] * len(futures)
    try:
        for future in as_completed(futures):
            out[where[future.key]] = future.result()
            future.release()
        return out
    except SalesmlError:
        raise
    except Exception as err:  # noqa: BLE001 - a worker's failure, told as one line; nothing is written
        raise SalesmlError(
            f"a partition failed on the Dask cluster: {type(err).__name__}: {err}; nothing was written"
        ) from err


def n_workers(client: Any) -> int:
    """How many workers the cluster has now (at least 1)."""
    return max(len(client.scheduler_info().get("workers", {})), 1)


def entity_buckets(ids: pd.Series, n_buckets: int) -> np.ndarray:
    """The partition (``0 .. n_buckets - 1``) of each row's entity id (a customer, a lead, a series): a hash of
    its text, the same in every process and for every part of a table, so one entity's rows always meet in one
    partition."""
    if n_buckets <= 1:
        return np.zeros(len(ids), np.int64)
    return (pd.util.hash_array(ids.astype(str).to_numpy()) % np.uint64(n_buckets)).astype(np.int64)


def _large(value: Any) -> bool:
    """Frames and arrays travel as scattered data, not inside the task graph."""
    return hasattr(value, "shape") and getattr(value, "size", 0) > 1_000


@contextmanager
def worker_memory(client: Any, every_s: float = 0.02) -> Iterator[dict[int, int]]:
    """Each worker process's peak resident memory (process id -> bytes) while the block runs, sampled every
    ``every_s`` seconds; for workers on this machine (a LocalCluster, or workers started on loopback). A worker
    restarted meanwhile has another process id: compare ``client.run(os.getpid)`` after the block."""
    import threading

    import psutil

    peak = dict.fromkeys(client.run(os.getpid).values(), 0)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in peak:
                with suppress(psutil.NoSuchProcess):
                    peak[pid] = max(peak[pid], psutil.Process(pid).memory_info().rss)
            time.sleep(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
