"""``salesml serve`` for the service benchmarks: a free loopback port, started, ready, always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(
    extra_args: tuple[str, ...] = (), *, code: Path | None = None, ready_s: int = 180
) -> Iterator[tuple[str, dict[str, dict]]]:
    """Start ``salesml serve`` against ``SALESML_HOME``'s champions (``code``: another checkout's modules), wait
    for ``/readyz`` and yield its URL and ``/models`` by product; the server's process group is stopped on leaving.
    Its log goes to ``SALESML_BENCH_LOG`` (default ``/tmp/salesml-bench-serve.log``)."""
    url = f"http://127.0.0.1:{(port := free_port())}"
    env = {**os.environ, **({"PYTHONPATH": str(code.resolve())} if code else {})}
    with open(os.environ.get("SALESML_BENCH_LOG", "/tmp/salesml-bench-serve.log"), "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "salesml"), "serve", "--port", str(port), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=code,
        )
        try:
            for _ in range(ready_s):
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            # by product (a server of the code before per-data-set models names them by their product)
            models = {m.get("product", m["name"]): m for m in httpx.get(url + "/models", timeout=10).json()["models"]}
            yield url, models
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=60)
