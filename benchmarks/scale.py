"""The churn training set built in one process and on a Dask ``LocalCluster``, by size (issue 18).

Usage::

    .venv/bin/python benchmarks/scale.py --lines 1000000 10000000 --workers 2 --cutoffs 12

Each size is the synthetic organisation generated at that many order lines (seed 7; cached under
``$SALESML_HOME/data``) and loaded through the ``synthetic`` spec; loading is not timed. Then, per size:

* one process: ``build_churn_set`` (``--cutoffs`` labelled monthly cutoffs + the scoring cutoff), best of
  ``--repeat``;
* the cluster: ``LocalCluster(n_workers=--workers, threads_per_worker=1, processes=True)`` started once per size
  (its start is timed apart), then ``build_churn_set(client=...)``: four customer partitions per worker sent to the
  workers, built there, their rows gathered; best of ``--repeat``;
* the two sets compared (identical rows and values, or the script fails);
* where the cluster's time goes: the same build in one process in the cluster's partitions, the driver's split of
  the order lines into them, and sending them to the workers (``client.scatter``);
* memory: this process's peak RSS and each worker's resident memory after the builds.

Prints a JSON report (``--out`` writes it).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from churn_features import _spec_for  # the synthetic spec at a size (benchmarks/ is on the path)

from features.churn import build_churn_set
from features.distributed import customer_buckets
from features.load import load_dataset


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _best(run, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--memory-limit", default="auto", help="per worker, e.g. 4GiB")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            t = time.perf_counter()
            ds = load_dataset(_spec_for(lines, Path(tmp)))
            load_s = time.perf_counter() - t
            n_lines = len(ds.tables["orders"])
            single_s, one = _best(lambda ds=ds: build_churn_set(ds, n_cutoffs=args.cutoffs), args.repeat)
            n_parts = 4 * args.workers  # what the cluster path uses
            parted_s, _ = _best(
                lambda ds=ds, n=n_parts: build_churn_set(ds, n_cutoffs=args.cutoffs, n_partitions=n), 1
            )
            t = time.perf_counter()
            with (
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    memory_limit=args.memory_limit,
                    dashboard_address=":0",
                ) as cluster,
                Client(cluster) as client,
            ):
                start_s = time.perf_counter() - t
                cluster_s, many = _best(
                    lambda ds=ds, client=client: build_churn_set(ds, n_cutoffs=args.cutoffs, client=client),
                    args.repeat,
                )
                orders = ds.tables["orders"][["customer_id", "time", "amount", "quantity", "product_id"]]
                part_of = customer_buckets(orders["customer_id"], n_parts)
                t = time.perf_counter()
                split = [orders[part_of == p] for p in range(n_parts)]
                split_s = time.perf_counter() - t
                t = time.perf_counter()
                futures = client.scatter(split)
                scatter_s = time.perf_counter() - t
                del futures, split, orders
                # Each worker's resident memory after the builds (its results handed back): the peak is not read,
                # since a forked worker's ru_maxrss starts at its parent's.
                workers = client.run(lambda: __import__("psutil").Process().memory_info().rss / 2**30)
            key = ["cutoff", "customer_id"]
            pd.testing.assert_frame_equal(
                one.frame.sort_values(key).reset_index(drop=True),
                many.frame.sort_values(key).reset_index(drop=True),
                check_exact=True,
            )
            rows.append(
                {
                    "order_lines": n_lines,
                    "customers": int(ds.tables["orders"]["customer_id"].nunique()),
                    "rows": len(one.frame),
                    "load_s": round(load_s, 1),
                    "single_s": round(single_s, 2),
                    "cluster_start_s": round(start_s, 1),
                    "single_in_partitions_s": round(parted_s, 2),
                    "cluster_s": round(cluster_s, 2),
                    "split_s": round(split_s, 2),
                    "scatter_s": round(scatter_s, 2),
                    "speedup": round(single_s / cluster_s, 2),
                    "identical": True,
                    "driver_peak_rss_gib": round(_peak_rss_gib(), 2),
                    "worker_rss_after_gib": sorted(round(v, 2) for v in workers.values()),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            del ds, one, many
    report = {"workers": args.workers, "cutoffs": args.cutoffs, "repeat": args.repeat, "sizes": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
