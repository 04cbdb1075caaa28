"""An open-loop HTTP/1.1 load generator light enough not to be the bottleneck.

httpx's AsyncClient costs about 3 ms of CPU per request in this process: at 300 requests a second the load
generator itself took 90 % of a core and its own queue was what the latencies measured (benchmarks/README.md).
This one writes pre-encoded requests on keep-alive loopback connections and reads the status line, the
``content-length`` and the body: a few tens of microseconds per request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit


def encode(url: str, body: Any, headers: dict[str, str] | None = None) -> bytes:
    """One POST of ``body`` (JSON) to ``url``, as bytes on the wire."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[int, bytes]:
    writer.write(payload)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def open_loop(
    url: str,
    payload_of: Callable[[int], bytes],
    rate: float,
    seconds: float,
    *,
    keep_answers: bool = False,
    during: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[float], int, list[Any]]:
    """Send ``rate`` requests a second for ``seconds`` whatever the answers' speed; returns the latencies (send
    to last byte), the count of non-200 answers or broken connections, and (``keep_answers``) the JSON answers."""
    parts = urlsplit(url)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    answers: list[Any] = []
    errors = 0

    async def one(i: int, t0: float) -> None:
        nonlocal errors
        reused = bool(idle)
        conn = idle.pop() if idle else await asyncio.open_connection(parts.hostname, parts.port)
        try:
            try:
                status, body = await _exchange(*conn, payload_of(i))
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                if not reused:
                    raise
                # the server closed a keep-alive connection that sat idle (as any HTTP client, retry once anew)
                conn[1].close()
                conn = await asyncio.open_connection(parts.hostname, parts.port)
                status, body = await _exchange(*conn, payload_of(i))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
            latencies.append(time.perf_counter() - t0)
            conn[1].close()
            return
        latencies.append(time.perf_counter() - t0)
        idle.append(conn)
        if status != 200:
            errors += 1
        elif keep_answers:
            answers.append(json.loads(body))

    side = asyncio.create_task(during()) if during else None
    start = time.perf_counter()
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))  # timed from when it was due: sender lag counts
    await asyncio.gather(*tasks)
    if side is not None:
        await side
    for _, writer in idle:
        writer.close()
    return latencies, errors, answers
