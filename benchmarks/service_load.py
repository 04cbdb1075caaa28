"""Latency of the HTTP service on loopback for every endpoint, beside the in-process cost of the same answers.

Starts ``salesml serve`` on a free loopback port against the champions of ``SALESML_HOME`` (``make demo``
trains walmart / cdnow / bank-marketing; see benchmarks/README.md), then, open loop (requests sent at a fixed
rate whatever the answers' speed, bounded by count and time):

(the open loop is ``benchmarks/_load.py``, a raw HTTP/1.1 client: httpx's own cost saturated the load generator
at 300 requests a second)

1. ``/leads/score``, one lead per request (the data set's leads, round robin) at ``--lead-rate`` for ``--seconds``;
2. ``/leads/score`` with 1,000 leads per request (sequential requests);
3. ``/churn/score``, one customer id per request at ``--churn-rate``;
4. ``/churn/score`` with 1,000 ids (sequential);
5. ``/forecast`` for 100 nodes at ``--forecast-rate``; ``/plan`` for the total (sequential);
6. ``/admin/reload`` three times during a ``/churn/score`` run at ``--reload-rate``: errors, latency, the reload
   times, and whether any answer mixed versions;
7. the same answers in process (the product contract's functions called directly), and the ratio of the HTTP
   p50 to them.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _load import encode, open_loop
from _serve import served


def _summary(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def _sequential(url: str, body: dict, repeats: int) -> list[float]:
    times = []
    gc.collect()
    gc.freeze()
    with httpx.Client(timeout=120) as client:
        assert client.post(url, json=body).status_code == 200  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = client.post(url, json=body)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text[:300]
    return times


def _in_process(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def _lead_records(dataset: str, n: int) -> list[dict]:
    """Raw leads as a CRM sends them: the data set's last ``n`` leads' pre-outcome attributes, JSON values."""
    from features.load import load_dataset
    from features.spec import Role

    ds = load_dataset(dataset)
    leads = ds.table(Role.leads)
    table = ds.spec.table_of(Role.leads)[1]
    skip = {"lead_id", "outcome", "closed_at", *table.post_outcome}
    records = json.loads(
        leads.drop(columns=[c for c in skip if c in leads])
        .tail(n)
        .to_json(orient="records", date_format="iso")
    )
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each open-loop run")
    parser.add_argument("--lead-rate", type=float, default=100.0)
    parser.add_argument("--churn-rate", type=float, default=300.0)
    parser.add_argument("--forecast-rate", type=float, default=20.0)
    parser.add_argument("--reload-rate", type=float, default=100.0)
    parser.add_argument("--reload-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=30, help="requests for the sequential timings")
    parser.add_argument("--batch", type=int, default=1000, help="items per request in the batch timings")
    parser.add_argument("--only", nargs="*", help="run only these parts (leads, churn, forecast, reload)")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # leaving `served` always stops the server
    parts = set(args.only or ["leads", "churn", "forecast", "reload"])

    from features.churn_snapshot import read_churn_snapshot
    from features.lead_records import new_lead_context
    from features.load import load_dataset
    from training.forecast.serve_api import forecast_nodes, load_forecast, plan_target, quarter_totals
    from training.products import PRODUCTS, load_model
    from training.registry import connect

    connect()
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "load_before": os.getloadavg()}
    inproc: dict[str, float] = {}
    http_p50: dict[str, float] = {}
    with served() as (url, models):
        report["models"] = {k: f"{v['name']} v{v['version']}" for k, v in models.items()}

        if "leads" in parts:
            dataset = models["lead_score"]["dataset"]
            records = _lead_records(dataset, args.batch)
            one = lambda i: {"leads": [{"lead_id": f"L{i}", "features": records[i % len(records)]}]}  # noqa: E731
            _sequential(url + "/leads/score", one(0), 3)
            wire = [encode(url + "/leads/score", one(i)) for i in range(len(records))]
            lat, errors, _ = asyncio.run(
                open_loop(url + "/leads/score", lambda i: wire[i % len(wire)], args.lead_rate, args.seconds)
            )
            report["leads_one_open_loop"] = {"rate_per_s": args.lead_rate, "errors": errors, **_summary(lat)}
            batch = {"leads": [{"lead_id": f"B{i}", "features": r} for i, r in enumerate(records)]}
            report["leads_1000"] = {
                "leads": len(records),
                **_summary(_sequential(url + "/leads/score", batch, args.repeats)),
            }
            loaded = load_model("lead_score", dataset)
            context = new_lead_context(load_dataset(dataset))
            rows = [{**r, "lead_id": f"B{i}"} for i, r in enumerate(records)]
            score = PRODUCTS["lead_score"].score_rows
            inproc["leads_one"] = _in_process(lambda: score(loaded, rows[:1], context=context), args.repeats)
            inproc["leads_1000"] = _in_process(lambda: score(loaded, rows, context=context), 10)
            http_p50 |= {
                "leads_one": report["leads_one_open_loop"]["p50_ms"],
                "leads_1000": report["leads_1000"]["p50_ms"],
            }

        snapshot, _ = read_churn_snapshot(models["churn_risk"]["dataset"])
        ids = snapshot["customer_id"].astype(str).tolist()
        by_id = lambda i: {"customers": [{"customer_id": ids[i % len(ids)]}]}  # noqa: E731
        if "churn" in parts:
            _sequential(url + "/churn/score", by_id(0), 3)
            wire = [encode(url + "/churn/score", by_id(i)) for i in range(len(ids))]
            lat, errors, _ = asyncio.run(
                open_loop(url + "/churn/score", lambda i: wire[i % len(wire)], args.churn_rate, args.seconds)
            )
            report["churn_one_open_loop"] = {"rate_per_s": args.churn_rate, "errors": errors, **_summary(lat)}
            batch_ids = (ids * (args.batch // len(ids) + 1))[: args.batch]
            batch = {"customers": [{"customer_id": i} for i in batch_ids]}
            report["churn_1000"] = {
                "customers": len(batch_ids),
                **_summary(_sequential(url + "/churn/score", batch, args.repeats)),
            }
            # In process: the model on the snapshot rows (the service answers by id from rows scored at load).
            loaded = load_model("churn_risk", models["churn_risk"]["dataset"])
            indexed = snapshot.set_index(snapshot["customer_id"].astype(str), drop=False)
            for label, chosen in (("churn_one", ids[:1]), ("churn_1000", batch_ids)):
                frame = indexed.loc[chosen].reset_index(drop=True)
                inproc[label] = _in_process(lambda f=frame: loaded.model.predict(f), args.repeats)
            http_p50 |= {
                "churn_one": report["churn_one_open_loop"]["p50_ms"],
                "churn_1000": report["churn_1000"]["p50_ms"],
            }

        if "forecast" in parts:
            champ = models["sales_forecast"]
            art = load_forecast(f"models:/{champ['name']}/{champ['version']}")
            nodes = art.nodes["unique_id"].tolist()[:100]
            body = {"nodes": nodes}
            _sequential(url + "/forecast", body, 3)
            wire_one = encode(url + "/forecast", body)
            lat, errors, _ = asyncio.run(
                open_loop(url + "/forecast", lambda i: wire_one, args.forecast_rate, args.seconds / 2)
            )
            report["forecast_100_open_loop"] = {
                "nodes": len(nodes),
                "rate_per_s": args.forecast_rate,
                "errors": errors,
                **_summary(lat),
            }
            target = float(quarter_totals(art, nodes=["total"], quarter="next")["median"].iloc[0])
            plan = {"node": "total", "target": target, "quarter": "next"}
            report["plan_total"] = _summary(_sequential(url + "/plan", plan, args.repeats))
            inproc["forecast_100"] = _in_process(
                lambda: (forecast_nodes(art, nodes=nodes), quarter_totals(art, nodes=nodes)), args.repeats
            )
            inproc["plan_total"] = _in_process(
                lambda: plan_target(art, "total", target, "next"), args.repeats
            )
            http_p50 |= {
                "forecast_100": report["forecast_100_open_loop"]["p50_ms"],
                "plan_total": report["plan_total"]["p50_ms"],
            }

        if "reload" in parts:
            reloads: list[float] = []

            async def reload_thrice() -> None:
                start = time.perf_counter()
                async with httpx.AsyncClient(timeout=120) as client:
                    for at in (0.2, 0.5, 0.8):  # at 20 %, 50 % and 80 % of the run
                        await asyncio.sleep(max(0.0, start + args.reload_seconds * at - time.perf_counter()))
                        t0 = time.perf_counter()
                        r = await client.post(url + "/admin/reload", json={})
                        assert r.status_code == 200, r.text[:300]
                        reloads.append(time.perf_counter() - t0)

            def pair(i: int) -> dict:
                return {
                    "customers": [
                        {"customer_id": ids[i % len(ids)]},
                        {"customer_id": ids[(i + 1) % len(ids)]},
                    ]
                }

            wire = [encode(url + "/churn/score", pair(i)) for i in range(len(ids))]
            lat, errors, answers = asyncio.run(
                open_loop(
                    url + "/churn/score",
                    lambda i: wire[i % len(wire)],
                    args.reload_rate,
                    args.reload_seconds,
                    keep_answers=True,
                    during=reload_thrice,
                )
            )
            mixed = sum(
                len({r["model_version"] for r in a["results"] if "model_version" in r}) > 1 for a in answers
            )
            report["churn_during_3_reloads"] = {
                "rate_per_s": args.reload_rate,
                "errors": errors,
                "answers_mixing_versions": mixed,
                "reload_s": [round(r, 2) for r in reloads],
                **_summary(lat),
            }
        report["in_process_median_ms"] = inproc
        report["ratio_http_p50_to_in_process"] = {
            k: http_p50[k] / inproc[k] for k in http_p50 if inproc.get(k)
        }
        report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
