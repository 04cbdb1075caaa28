"""The churn and lead training sets on a real Dask cluster: the same rows and values as in one process, on a LocalCluster
and on a scheduler and workers started as separate processes (the way a user runs them), from order lines held
in this process or read part by part by the workers themselves (a folder of Parquet parts), with the same rules
checked; a worker killed during a build is retried or, when it keeps dying, a clear error.

Dask workers are processes of their own: the functions they run live in this module (importable by them).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.churn import build_churn_set
from features.distributed import map_partitions, scheduler_client, worker_memory
from features.errors import SalesmlError
from features.leads import build_lead_set
from features.load import DataValidationError, load_dataset
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


def _parted_copy(spec_path: Path, folder: Path, by: str = "Q") -> Path:
    """The data set of ``spec_path`` with its order lines written as one Parquet part per period ``by``
    (``orders/period=2023Q1/part-0.parquet``, ...), so each customer's history is spread over many parts; a spec
    that reads it, every path absolute."""
    ds = load_dataset(spec_path)
    spec = yaml.safe_load(spec_path.read_text())
    spec.pop("generator", None)
    for name, table in spec["tables"].items():
        source = ds.root / table["path"]
        if name == "orders":
            raw = pd.read_parquet(source)
            for period, rows in raw.groupby(raw["time"].dt.to_period(by)):
                part = folder / "orders" / f"period={period}"
                part.mkdir(parents=True)
                rows.to_parquet(part / "part-0.parquet", index=False)
            table["path"] = str(folder / "orders")
        else:
            table["path"] = str(source)
    out = folder / "parted.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def parted_spec(small_synthetic_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _parted_copy(small_synthetic_spec, tmp_path_factory.mktemp("parted"))


def test_order_parts_read_by_the_workers_give_the_one_process_set(parted_spec: Path, cluster) -> None:
    ds = load_dataset(parted_spec, defer_parted=True)
    assert "orders" not in ds.tables  # this process only listed the parts
    parts = ds.parted["orders"]
    assert len(parts.files) >= 15 and sum(parts.rows) == len(load_dataset(parted_spec).tables["orders"])
    in_parts = pd.concat(
        pd.read_parquet(f, columns=["customer_id"]).assign(part=i) for i, f in enumerate(parts.files)
    )
    assert (in_parts.groupby("customer_id")["part"].nunique() > 1).mean() > 0.5  # histories span parts
    one = build_churn_set(load_dataset(parted_spec))
    _same(one.frame, build_churn_set(ds, client=cluster).frame)
    as_of = "2024-06-30"
    _same(
        build_churn_set(load_dataset(parted_spec), as_of=as_of).frame,
        build_churn_set(ds, client=cluster, as_of=as_of).frame,
    )
    with pytest.raises(SalesmlError, match="read part by part on the Dask cluster"):
        ds.table(__import__("features.spec", fromlist=["Role"]).Role.transactions)


def test_broken_parts_give_the_one_process_message(parted_spec: Path, cluster, tmp_path: Path) -> None:
    """A number that is not one, an order line repeated in another part and a product the lookup lacks, each in
    a different part: the workers report the rules, rows and examples one process reports for the whole table."""
    spec = yaml.safe_load(parted_spec.read_text())
    files = sorted(Path(spec["tables"]["orders"]["path"]).rglob("*.parquet"))
    broken = tmp_path / "orders"
    parts = {}
    for f in files:
        parts[f] = pd.read_parquet(f)
    a, b, c, d = files[1], files[4], files[6], files[9]
    parts[a]["amount"] = parts[a]["amount"].astype(str)  # a part whose amounts are text
    parts[a].loc[parts[a].index[[3, 7, 8]], "amount"] = "n/a"
    parts[b] = pd.concat([parts[b], parts[c].iloc[[5]]], ignore_index=True)  # the same (order_id, line) twice
    parts[d].loc[parts[d].index[[0, 2]], "product_id"] = "ZZ9"
    for f, frame in parts.items():
        out = broken / f.parent.name / f.name
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(out, index=False)
    spec["tables"]["orders"]["path"] = str(broken)
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump(spec, sort_keys=False))

    with pytest.raises(DataValidationError) as in_process:
        load_dataset(bad)
    ds = load_dataset(bad, defer_parted=True)
    with pytest.raises(DataValidationError) as on_cluster:
        build_churn_set(ds, client=cluster)
    lines = sorted(v.describe() for v in on_cluster.value.violations)
    assert lines == sorted(v.describe() for v in in_process.value.violations)
    message = str(on_cluster.value)
    assert len(lines) == 4  # not a number, so empty; the repeated line; the unknown product
    assert "column 'amount' (source column 'amount'): not a number [3 row(s)]" in message
    assert "duplicate key ['order_id', 'line'] [2 row(s)]" in message and "['ZZ9'] not found" in message


def _same_leads(dataset_name: str | Path, client) -> None:
    ds = load_dataset(dataset_name)
    one = build_lead_set(ds)
    for many in (build_lead_set(ds, client=client), build_lead_set(ds, n_partitions=3)):
        pd.testing.assert_frame_equal(one.frame, many.frame, check_exact=True)  # the same order too
        assert (many.numeric, many.categorical, many.excluded) == (one.numeric, one.categorical, one.excluded)


def test_the_synthetic_lead_set_is_the_same_built_per_partition_of_leads(
    small_synthetic_spec: Path, cluster
) -> None:
    _same_leads(small_synthetic_spec, cluster)  # dated leads with activities, win rates over all history


@requires_shared()
def test_the_crm_and_bank_marketing_lead_sets_are_the_same_on_a_local_cluster(cluster) -> None:
    _same_leads("crm", cluster)  # dated deals, lookups (agent -> manager), an identifier-like column left out
    _same_leads("bank-marketing", cluster)  # rows in time order: one sequence, built as one partition


def test_the_statistical_baselines_are_the_same_fitted_per_partition_of_series(
    small_synthetic_spec: Path, cluster
) -> None:
    from distributed import get_task_stream

    from features.distributed import using
    from features.series import build_series
    from training.forecast.config import ForecastConfig
    from training.forecast.models import stats_forecast

    series = build_series(load_dataset(small_synthetic_spec))
    train = series.truncate(series.end - pd.Timedelta(weeks=13))
    names = ["SeasonalNaive", "Theta", "CrostonSBA", "TSB"]
    one = stats_forecast(series, train, 13, ForecastConfig(), names)
    with get_task_stream(cluster) as tasks, using(cluster):
        many = stats_forecast(series, train, 13, ForecastConfig(), names)
    assert sum("_stats_partition" in t["key"] for t in tasks.data) >= 4  # fitted on the workers
    assert len(many) == len(one) == 13 * train["unique_id"].nunique()
    one = one.sort_values(["unique_id", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(one, many, check_exact=False, rtol=1e-6, atol=1e-6)


def test_the_lightgbm_forecast_is_the_same_with_its_features_and_forecast_built_per_partition(
    small_synthetic_spec: Path, cluster
) -> None:
    """The features and the recursive forecast a partition of series per task, the one model fitted here on the
    rows in the one-process order: the same forecast (the issue allows a WAPE within 0.002; it is identical)."""
    from distributed import get_task_stream

    from features.distributed import using
    from features.series import build_series
    from training.forecast.config import ForecastConfig
    from training.forecast.models import lgbm_forecast

    series = build_series(load_dataset(small_synthetic_spec))
    cutoff = series.end - pd.Timedelta(weeks=13)
    train = series.truncate(cutoff)
    one = lgbm_forecast(series, train, cutoff, 13, ForecastConfig(), objective="tweedie")
    with get_task_stream(cluster) as tasks, using(cluster):
        many = lgbm_forecast(series, train, cutoff, 13, ForecastConfig(), objective="tweedie")
    assert sum("_lgbm_features" in t["key"] for t in tasks.data) >= 4
    assert sum("_lgbm_predict" in t["key"] for t in tasks.data) >= 4
    one = one.sort_values(["unique_id", "ds"], ignore_index=True)
    pd.testing.assert_frame_equal(one, many, check_exact=False, rtol=1e-9)


def test_series_summed_from_the_parts_by_the_workers_are_the_one_process_series(
    parted_spec: Path, cluster
) -> None:
    from features.distributed import using
    from features.series import build_series

    one = build_series(load_dataset(parted_spec))
    deferred = load_dataset(parted_spec, defer_parted=True)
    with pytest.raises(SalesmlError, match="build the series inside features.distributed.using"):
        build_series(deferred)
    with using(cluster):
        many = build_series(deferred)
    assert many.Y["unique_id"].nunique() == one.Y["unique_id"].nunique() > 300
    pd.testing.assert_frame_equal(one.Y, many.Y, check_exact=False, rtol=1e-9)  # sums in another order
    for frame in ("nodes", "S", "known_ahead", "past_only", "static"):
        pd.testing.assert_frame_equal(getattr(one, frame), getattr(many, frame))
    assert (one.tags.keys(), one.season_length, one.nonnegative) == (
        many.tags.keys(),
        many.season_length,
        many.nonnegative,
    )


def test_means_of_summed_facts_count_each_row_as_its_lines() -> None:
    from features.series import _mean_by

    lines = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "v": [1.0, 1.0, 4.0, np.nan, 3.0]})
    summed = pd.DataFrame({"g": ["a", "a", "b", "b"], "v": [1.0, 4.0, np.nan, 3.0], "_rows": [2, 1, 1, 1]})
    expect = _mean_by(lines[["v"]], lines["g"], None)
    got = _mean_by(summed[["v"]], summed["g"], summed["_rows"])
    pd.testing.assert_frame_equal(expect, got)  # a: (1 + 1 + 4) / 3, b: 3 (the empty value left out)


MEMORY_LIMIT = 400 * 2**20  # per worker; a worker alone is about 145 MiB


def test_workers_with_less_memory_than_the_order_lines_build_the_same_set(tmp_path: Path) -> None:
    """2 M order lines take 540 MiB in one process; two workers limited to 400 MiB each build the same set from
    the parts they read, none of them above its limit (sampled every 20 ms) and none restarted."""
    from distributed import Client, LocalCluster

    from features.spec import GeneratorSpec
    from features.synthetic import write_parted

    spec = write_parted(
        GeneratorSpec(name="synthetic", n_order_lines=2_000_000), tmp_path / "data", lines_per_part=100_000
    )
    in_process = load_dataset(spec)
    assert (
        in_process.tables["orders"].memory_usage(deep=True).sum() > MEMORY_LIMIT
    )  # could not fit one worker
    one = build_churn_set(in_process)
    del in_process
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=MEMORY_LIMIT, dashboard_address=":0"
        ) as lc,
        Client(lc) as client,
    ):
        pids = client.run(os.getpid)
        with worker_memory(client) as peak:
            on_cluster = build_churn_set(load_dataset(spec, defer_parted=True), client=client)
        assert client.run(os.getpid) == pids  # no worker was killed and restarted
    assert 0 < max(peak.values()) < MEMORY_LIMIT, {pid: v / 2**20 for pid, v in peak.items()}
    _same(one.frame, on_cluster.frame)


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

        def salesml(*args: str) -> subprocess.CompletedProcess:
            return run_cli(*args, env={"SALESML_HOME": str(home)}, timeout=600)

        parted = _parted_copy(small_synthetic_spec, tmp_path / "parted")  # the workers read the order parts
        result = salesml("train", "churn", "--dataset", str(parted), "--trials", "2", "--scheduler", address)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "registered churn_risk.synthetic v1" in result.stdout
        scored = {}
        for out, on in ((tmp_path / "one.parquet", ()), (tmp_path / "scores", ("--scheduler", address))):
            score = salesml(
                "score", "churn", "--dataset", str(parted), "--version", "1", "--out", str(out), *on
            )
            assert score.returncode == 0, score.stdout[-2000:] + score.stderr[-3000:]
            files = sorted(out.glob("part-*.parquet")) if out.is_dir() else [out]
            scored[out.name] = pd.concat(pd.read_parquet(f) for f in files)
        assert len(list((tmp_path / "scores").iterdir())) == 4  # partitioned by customer
        by_id = [frame.sort_values("customer_id").reset_index(drop=True) for frame in scored.values()]
        pd.testing.assert_frame_equal(*by_id, check_exact=True)  # the same scores, reasons and values
        leads = salesml(
            "train", "leads", "--dataset", str(small_synthetic_spec), "--trials", "2", "--scheduler", address
        )
        assert leads.returncode == 0, leads.stdout[-2000:] + leads.stderr[-3000:]
        assert "registered lead_score.synthetic v1" in leads.stdout
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
