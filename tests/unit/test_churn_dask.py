"""The churn training set on a real Dask cluster: the same rows and values as in one process, on a LocalCluster
and on a scheduler and workers started as separate processes (the way a user runs them), and a worker killed
during a build is retried or, when it keeps dying, a clear error.

Dask workers are processes of their own: the functions they run live in this module (importable by them).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.churn import build_churn_set
from features.distributed import map_partitions, scheduler_client
from features.errors import SalesmlError
from features.load import load_dataset
from tests.conftest import BIN, REPO, requires_shared, run_cli
from tests.service.conftest import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        yield client


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["cutoff", "customer_id"]
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True), check_exact=True
    )


def test_the_synthetic_churn_set_is_the_same_on_a_local_cluster(small_synthetic_spec: Path, cluster) -> None:
    ds = load_dataset(small_synthetic_spec)
    one = build_churn_set(ds)
    on_cluster = build_churn_set(ds, client=cluster)
    assert len(one.frame) > 1_000
    _same(one.frame, on_cluster.frame)
    assert on_cluster.numeric == one.numeric and on_cluster.score_cutoff == one.score_cutoff


@requires_shared()
def test_the_cdnow_churn_set_is_the_same_on_a_local_cluster(cluster) -> None:
    ds = load_dataset("cdnow")
    _same(build_churn_set(ds).frame, build_churn_set(ds, client=cluster).frame)


def _dies_once(marker: str, value: int) -> int:
    """Kills its worker process the first time any partition runs (the marker file says it happened)."""
    if value == 2 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies mid-build, as with an out-of-memory kill
    return value * 10


def _always_dies(value: int) -> int:
    os._exit(1)


def test_a_worker_killed_during_a_build_has_its_partition_run_again(cluster, tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    out = map_partitions(cluster, _dies_once, [(marker, v) for v in range(6)])
    assert Path(marker).exists()  # a worker did die
    assert out == [v * 10 for v in range(6)]  # and every partition came back, in order


def test_a_partition_that_keeps_killing_its_worker_is_one_clear_error(cluster) -> None:
    with pytest.raises(SalesmlError, match="a partition failed on the Dask cluster: KilledWorker"):
        map_partitions(cluster, _always_dies, [(1,)])


def test_a_bad_scheduler_value_is_named() -> None:
    with (
        pytest.raises(SalesmlError, match="expected 'local' or a scheduler address"),
        scheduler_client("my-cluster"),
    ):
        pass
    with scheduler_client("") as client:
        assert client is None


def test_train_churn_with_a_scheduler_and_workers_started_as_processes(
    small_synthetic_spec: Path, tmp_path: Path
) -> None:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = (tmp_path / "dask.log").open("w")
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    ]
    try:
        time.sleep(3)
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--dashboard-address", ":0"],
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=env,
                    start_new_session=True,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            ds = load_dataset(small_synthetic_spec)
            _same(build_churn_set(ds).frame, build_churn_set(ds, client=client).frame)
        home = tmp_path / "home"
        result = run_cli(
            "train",
            "churn",
            "--dataset",
            str(small_synthetic_spec),
            "--trials",
            "2",
            "--scheduler",
            address,
            env={"SALESML_HOME": str(home)},
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "registered churn_risk.synthetic v1" in result.stdout
        bad = run_cli(
            "train",
            "churn",
            "--dataset",
            str(small_synthetic_spec),
            "--scheduler",
            "tcp://127.0.0.1:9",
            env={"SALESML_HOME": str(home)},
            timeout=120,
        )
        assert bad.returncode != 0 and "no Dask scheduler answered" in bad.stdout + bad.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()
