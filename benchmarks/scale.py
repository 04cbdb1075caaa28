"""The churn training set built in one process and on a Dask ``LocalCluster`` whose workers read the order lines'
Parquet parts themselves, by size (issue 18).

Usage::

    .venv/bin/python benchmarks/scale.py --lines 1000000 10000000 50000000 --workers 2 --memory-limit 4GiB

Each size is the synthetic organisation written by :func:`features.synthetic.write_parted` (seed 7, order lines
in parts of ``--lines-per-part``; cached under ``$SALESML_HOME/data/scale``; the writing is timed once, when it
happens). Then, each in a fresh process of its own (so each peak memory is that run's):

* ``single``: ``load_dataset`` (every part read into this process) and ``build_churn_set`` (``--cutoffs``
  labelled monthly cutoffs + the scoring cutoff); only for sizes up to ``--single-max`` lines (one process
  peaks at 3.6 GiB for 10 M lines, so about 18 GiB for 50 M: too close to the 24 GiB machine to run beside
  anything);
* ``cluster``: ``LocalCluster(n_workers=--workers, threads_per_worker=1, memory_limit=--memory-limit)``, started
  first and timed apart, then ``load_dataset(defer_parted=True)`` (only the parts' footers read here) and
  ``build_churn_set(client=...)``: the workers read, check and split the parts by customer and build the
  partitions; the rows come back here. Each worker's resident memory is sampled every 50 ms (its peak), and the
  workers' process ids are compared before and after (a worker the nanny killed for memory would be new).

Where both ran, the two sets are compared (identical rows and values, or the script fails). Prints one JSON line
per run and a JSON report (``--out`` writes it).

``--step series`` measures the forecast's first steps instead: ``build_series`` (one process: from the loaded
order lines; cluster: each worker sums its parts, inside ``features.distributed.using``) and the statistical
baselines of one cutoff 13 weeks before the end (:data:`BASELINES`, 13 weeks ahead; on the cluster a partition of
series per task); the series are compared to 1e-9 and the baselines to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from features.churn import build_churn_set
from features.distributed import using, worker_memory
from features.load import load_dataset
from features.series import build_series
from features.settings import get_settings
from features.spec import GeneratorSpec
from features.synthetic import write_parted

BASELINES = ["SeasonalNaive", "Theta", "AutoTheta", "CrostonSBA", "TSB", "ADIDA"]


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _data(lines: int, lines_per_part: int, reps: int, products: int) -> tuple[Path, float | None]:
    shape = "" if (reps, products) == (4, 4) else f"-r{reps}-k{products}"
    folder = get_settings().generated_dir / "scale" / f"synthetic-parted-n{lines}-p{lines_per_part}{shape}"
    if (folder / "spec.yaml").exists():
        return folder / "spec.yaml", None
    t = time.perf_counter()
    spec = write_parted(
        GeneratorSpec(name="synthetic", n_order_lines=lines),
        folder,
        lines_per_part=lines_per_part,
        reps_per_manager=reps,
        products_per_series=products,
    )
    return spec, time.perf_counter() - t


def _run_single(
    spec: Path, cutoffs: int, out: Path, step: str = "churn", baselines: list[str] = BASELINES
) -> dict:
    t = time.perf_counter()
    ds = load_dataset(spec)
    load_s = time.perf_counter() - t
    n_lines = len(ds.tables["orders"])
    table_gib = ds.tables["orders"].memory_usage(deep=True).sum() / 2**30
    if step == "series":
        timing = _series_and_baselines(ds, out, baselines)
        work_s = timing["series_s"] + timing["baselines_s"]
        return {
            "order_lines": n_lines,
            "load_s": round(load_s, 1),
            **timing,
            "total_s": round(load_s + work_s, 1),
            "peak_rss_gib": round(_peak_rss_gib(), 2),
        }
    t = time.perf_counter()
    built = build_churn_set(ds, n_cutoffs=cutoffs)
    build_s = time.perf_counter() - t
    built.frame.to_parquet(out)
    return {
        "order_lines": n_lines,
        "orders_in_memory_gib": round(table_gib, 2),
        "rows": len(built.frame),
        "load_s": round(load_s, 1),
        "build_s": round(build_s, 1),
        "total_s": round(load_s + build_s, 1),
        "peak_rss_gib": round(_peak_rss_gib(), 2),
    }


def _series_and_baselines(dataset, frame: Path | None, baselines: list[str]) -> dict:  # noqa: ANN001 - a Dataset
    """``build_series`` and the statistical baselines of the last quarter's cutoff (13 weeks ahead)."""
    from training.forecast.config import ForecastConfig
    from training.forecast.models import stats_forecast

    t = time.perf_counter()
    series = build_series(dataset)
    series_s = time.perf_counter() - t
    t = time.perf_counter()
    train = series.truncate(series.end - pd.Timedelta(weeks=13))
    base = stats_forecast(series, train, 13, ForecastConfig(), baselines)
    base_s = time.perf_counter() - t
    if frame is not None:
        series.Y.to_parquet(frame.with_suffix(".series.parquet"))
        base.sort_values(["unique_id", "ds"], ignore_index=True).to_parquet(frame)
    return {
        "series": int(series.Y["unique_id"].nunique()),
        "series_s": round(series_s, 1),
        "baselines_s": round(base_s, 1),
    }


def _run_cluster(
    spec: Path,
    cutoffs: int,
    workers: int,
    memory_limit: str,
    out: Path | None,
    step: str = "churn",
    baselines: list[str] = BASELINES,
) -> dict:
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        start_s = time.perf_counter() - t
        pids = client.run(os.getpid)
        t = time.perf_counter()
        with worker_memory(client, every_s=0.05) as peak:
            ds = load_dataset(spec, defer_parted=True)
            if step == "series":
                with using(client):
                    timing = _series_and_baselines(ds, out, baselines)
            else:
                built = build_churn_set(ds, n_cutoffs=cutoffs, client=client)
        total_s = time.perf_counter() - t
        restarted = client.run(os.getpid) != pids
        limit = next(iter(client.scheduler_info()["workers"].values()))["memory_limit"]
    if out is not None and step == "churn":
        built.frame.to_parquet(out)
    return {
        "order_lines": sum(ds.parted["orders"].rows),
        "parts": len(ds.parted["orders"].files),
        **(timing if step == "series" else {"rows": len(built.frame)}),
        "cluster_start_s": round(start_s, 1),
        "total_s": round(total_s, 1),
        "driver_peak_rss_gib": round(_peak_rss_gib(), 2),
        "worker_memory_limit_gib": round(limit / 2**30, 2),
        "worker_peak_rss_gib": sorted(round(v / 2**30, 2) for v in peak.values()),
        "worker_restarted": restarted,
    }


def _child(args: argparse.Namespace) -> None:
    out = Path(args.frame) if args.frame else None
    if args.run == "single":
        row = _run_single(Path(args.spec), args.cutoffs, out, args.step, args.baselines)
    else:
        row = _run_cluster(
            Path(args.spec), args.cutoffs, args.workers, args.memory_limit, out, args.step, args.baselines
        )
    print(json.dumps(row), flush=True)


def _in_child(args: argparse.Namespace, run: str, spec: Path, frame: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--run", run, "--spec", str(spec), "--cutoffs", str(args.cutoffs)]
    cmd += ["--workers", str(args.workers), "--memory-limit", args.memory_limit, "--step", args.step]
    cmd += ["--baselines", *args.baselines]
    if frame is not None:
        cmd += ["--frame", str(frame)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{run} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--lines-per-part", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--memory-limit", default="4GiB", help="per worker")
    parser.add_argument("--single-max", type=int, default=10_000_000, help="largest size run in one process")
    parser.add_argument(
        "--step",
        choices=["churn", "series"],
        default="churn",
        help="churn: the churn training set; series: build_series + the statistical baselines of one cutoff",
    )
    parser.add_argument(
        "--reps-per-manager", type=int, default=4, help="6 managers; 4: the built-in organisation"
    )
    parser.add_argument(
        "--products-per-series", type=int, default=4, help="3 series; bottom = reps x products"
    )
    parser.add_argument("--baselines", nargs="+", default=BASELINES, help="for --step series")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--run", choices=["single", "cluster"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--frame", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        _child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            spec, write_s = _data(lines, args.lines_per_part, args.reps_per_manager, args.products_per_series)
            single = lines <= args.single_max
            one_frame = Path(tmp) / f"single-{lines}.parquet" if single else None
            many_frame = Path(tmp) / f"cluster-{lines}.parquet" if single else None
            row: dict = {
                "lines_asked": lines,
                "write_parted_s": None if write_s is None else round(write_s, 1),
            }
            if single:
                row["single"] = _in_child(args, "single", spec, one_frame)
                print(json.dumps(row["single"]), flush=True)
            row["cluster"] = _in_child(args, "cluster", spec, many_frame)
            print(json.dumps(row["cluster"]), flush=True)
            if single and args.step == "series":
                for suffix, rtol in ((".series.parquet", 1e-9), (".parquet", 1e-6)):
                    pd.testing.assert_frame_equal(
                        pd.read_parquet(one_frame.with_suffix(suffix)),
                        pd.read_parquet(many_frame.with_suffix(suffix)),
                        check_exact=False,
                        rtol=rtol,
                    )
                row["same_to"] = "series 1e-9, baselines 1e-6"
                row["speedup"] = round(row["single"]["total_s"] / row["cluster"]["total_s"], 2)
            elif single:
                key = ["cutoff", "customer_id"]
                pd.testing.assert_frame_equal(
                    pd.read_parquet(one_frame).sort_values(key).reset_index(drop=True),
                    pd.read_parquet(many_frame).sort_values(key).reset_index(drop=True),
                    check_exact=True,
                )
                row["identical"] = True
                row["speedup"] = round(row["single"]["total_s"] / row["cluster"]["total_s"], 2)
            rows.append(row)
    report = {
        "step": args.step,
        "workers": args.workers,
        "memory_limit": args.memory_limit,
        "cutoffs": args.cutoffs,
        "lines_per_part": args.lines_per_part,
        "cpus": os.cpu_count(),
        "sizes": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
