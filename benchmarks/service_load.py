"""Latency of the HTTP service on loopback, and the in-process cost of the same predictions.

Starts ``salesml serve`` on a free loopback port against the champions of ``SALESML_HOME`` (train them first,
e.g. ``make demo`` or the commands in benchmarks/README.md), then:

1. ``/churn/score`` with one customer by id at a fixed rate (default 100 requests/s for 60 s, open loop, bounded
   by count and time): errors, p50 / p95 / p99 latency;
2. ``/churn/score`` with 1,000 customers by id (sequential requests): latency per request;
3. ``/forecast`` for 100 nodes (sequential requests): latency per request;
4. the same predictions in process (the model called directly), so the service's overhead shows as a ratio.

Only loopback traffic; every loop stops by itself. Prints a JSON report (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from _serve import served

BIN = Path(sys.executable).parent


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": _pct(values, 50),
        "p95_ms": _pct(values, 95),
        "p99_ms": _pct(values, 99),
        "max_ms": float(max(values) * 1000),
    }


async def _open_loop(url: str, body: dict, rate: float, seconds: float) -> tuple[list[float], int]:
    """Send ``rate`` requests per second for ``seconds`` whatever the answers' speed (open loop)."""
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=body)
                ok = r.status_code == 200 and "probability" in r.json()["results"][0]
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += 0 if ok else 1

        start = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, errors


def _settle_client_gc() -> None:
    """Collect and freeze this process's garbage before a timed section (the open loop leaves thousands of
    objects behind; a full collection of them inside a timed request is the load generator's pause, not the
    service's latency)."""
    gc.collect()
    gc.freeze()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second in the open-loop run")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the open-loop run")
    parser.add_argument("--repeats", type=int, default=30, help="requests for the batch and forecast timings")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--batch", type=int, default=1000, help="customers per request in the batch timing")
    parser.add_argument("--workers", type=int, default=1, help="salesml serve --workers")
    parser.add_argument("--threads", type=int, default=1, help="salesml serve --threads")
    args = parser.parse_args()
    # `timeout` and Ctrl-C end the run through SystemExit, so leaving `served` always stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from features.churn_snapshot import read_churn_snapshot
    from training.classifier import load_scoring_model
    from training.forecast.serve_api import forecast_nodes, load_forecast, quarter_totals
    from training.registry import connect

    connect()
    extra = ("--workers", str(args.workers), "--threads", str(args.threads))
    report: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores",
        "serve": {"workers": args.workers, "threads": args.threads},
        "load_before": os.getloadavg(),
    }
    with served(extra if (args.workers, args.threads) != (1, 1) else ()) as (url, models):
        report["models"] = {k: v["version"] + " (" + v["dataset"] + ")" for k, v in models.items()}

        snapshot, _ = read_churn_snapshot(models["churn_risk"]["dataset"])
        ids = snapshot["customer_id"].astype(str).tolist()
        one = {"customers": [{"customer_id": ids[0]}]}
        # The load generator's own pauses are not the service's latency: this process holds pandas, MLflow and
        # the snapshot, and a full collection here (~100 ms) would land inside a timed request.
        gc.collect()
        gc.freeze()
        httpx.post(url + "/churn/score", json=one, timeout=30)  # warm-up
        lat, errors = asyncio.run(_open_loop(url + "/churn/score", one, args.rate, args.seconds))
        report["churn_one_by_id_open_loop"] = {
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "errors": errors,
            **_summary(lat),
        }

        # A snapshot smaller than the batch is repeated: the service scores every requested row (no dedup).
        batch_ids = (ids * (args.batch // len(ids) + 1))[: args.batch]
        batch = {"customers": [{"customer_id": i} for i in batch_ids]}
        times = []
        _settle_client_gc()
        with httpx.Client(timeout=60) as client:
            client.post(url + "/churn/score", json=batch)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = client.post(url + "/churn/score", json=batch)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.json()["results"]) == len(batch["customers"])
        report["churn_1000_by_id"] = {
            "customers": len(batch_ids),
            "distinct_customers": len(set(batch_ids)),
            **_summary(times),
        }

        art = load_forecast(f"models:/{models['sales_forecast']['name']}/{models['sales_forecast']['version']}")
        nodes = art.nodes["unique_id"].tolist()[:100]
        times = []
        _settle_client_gc()
        with httpx.Client(timeout=60) as client:
            client.post(url + "/forecast", json={"nodes": nodes})
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = client.post(url + "/forecast", json={"nodes": nodes})
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200 and len(r.json()["results"]) == len(nodes)
        report["forecast_100_nodes"] = {"nodes": len(nodes), **_summary(times)}

        # The same predictions in process: the model called directly on the same rows.
        scoring = load_scoring_model(f"models:/{models['churn_risk']['name']}/{models['churn_risk']['version']}")
        indexed = snapshot.set_index(snapshot["customer_id"].astype(str), drop=False)
        inproc = {}
        for label, rows in (("churn_one", ids[:1]), ("churn_1000", batch_ids)):
            frame = indexed.loc[rows].reset_index(drop=True)
            scoring.predict(frame)
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                scoring.predict(indexed.loc[rows].reset_index(drop=True))
                ts.append(time.perf_counter() - t0)
            inproc[label] = statistics.median(ts) * 1000
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            forecast_nodes(art, nodes=nodes)
            quarter_totals(art, nodes=nodes)
            ts.append(time.perf_counter() - t0)
        inproc["forecast_100"] = statistics.median(ts) * 1000
        report["in_process_median_ms"] = inproc
        report["overhead_ratio_p50"] = {
            "churn_one": report["churn_one_by_id_open_loop"]["p50_ms"] / inproc["churn_one"],
            "churn_1000": report["churn_1000_by_id"]["p50_ms"] / inproc["churn_1000"],
            "forecast_100": report["forecast_100_nodes"]["p50_ms"] / inproc["forecast_100"],
        }
        report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
