"""A trained model store and a real ``salesml serve`` process for the service tests.

The three models are trained once per session on the small synthetic organisation, through the same CLI a user
runs, into a private SALESML_HOME. The server is started as a subprocess on a free loopback port. The ``service``
marker is set on every test here by ``tests/conftest.py`` (a ``pytestmark`` in a conftest has no effect).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN

TOKEN = "test-token-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    home: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def post(self, path: str, body: dict, **kw) -> httpx.Response:
        return httpx.post(
            self.url + path, json=body, headers=kw.pop("headers", self.headers()), timeout=60, **kw
        )

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers=kw.pop("headers", self.headers()), timeout=60, **kw)


def start_server(
    home: Path, log: Path, extra_env: dict[str, str] | None = None, timeout: float = 150
) -> Server:
    port = free_port()
    # The trained store holds the small synthetic organisation (its spec is named synthetic) for every product.
    served = {f"SALESML_SERVE_{p}": "synthetic" for p in ("SALES", "CHURN", "LEADS")}
    env = {**os.environ, **served, "SALESML_HOME": str(home), "SALESML_API_TOKEN": TOKEN, **(extra_env or {})}
    if "MLFLOW_TRACKING_URI" not in (extra_env or {}):
        env.pop("MLFLOW_TRACKING_URI", None)
    fh = log.open("w")
    proc = subprocess.Popen(
        [str(BIN / "salesml"), "serve", "--port", str(port)],
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", proc, log, home)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"salesml serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            up = httpx.get(server.url + "/healthz", timeout=2).status_code == 200
            if up and httpx.get(server.url + "/readyz", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(server)
    raise RuntimeError(f"salesml serve not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def server(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(trained_home, tmp_path_factory.mktemp("logs") / "serve.log")
    yield srv
    stop_server(srv)
