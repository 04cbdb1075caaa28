"""What one bad lead costs a batch on ``/leads/score``: the same batch with every lead valid and with one lead whose
numeric field holds a text.

Starts ``salesml serve`` on a free loopback port against the champions of ``SALESML_HOME`` (e.g. after ``make
demo``: lead_score on bank-marketing). The leads are the first N rows of the champion's data set's leads table
(pre-outcome columns only, as a CRM would send them); then the same batch with the middle lead given an unknown
field, and with its first numeric field set to ``"lots"``. Prints, per batch size and case, the best of
``--repeats`` wall times and the error entries returned. ``--server-code`` serves an earlier checkout's code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
from _serve import served

BIN = Path(sys.executable).parent


def _leads(dataset_name: str, n: int) -> tuple[list[dict], str]:
    """``n`` leads of the data set as request items, and the numeric field to spoil."""
    from features.inputs import lead_record_errors
    from features.load import load_dataset
    from features.spec import LEAD_ID, Role

    dataset = load_dataset(dataset_name)
    name, table = dataset.spec.table_of(Role.leads)  # type: ignore[misc]
    allowed = (set(table.columns) | {LEAD_ID}) - {"outcome", "closed_at"} - set(table.post_outcome)
    frame = dataset.tables[name][[c for c in dataset.tables[name].columns if c in allowed]].head(n)
    frame = frame.astype(object).where(frame.notna(), None)
    records = [
        {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]
    numeric = next(c for c, kind in table.types.items() if kind == "numeric" and c in frame.columns)
    if lead_record_errors(records, table):
        raise SystemExit("the data set's own leads do not pass the checks; nothing to compare")
    items = [
        {"lead_id": f"B{i}", "features": {k: v for k, v in r.items() if k != LEAD_ID}}
        for i, r in enumerate(records)
    ]
    return items, numeric


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="leads per request")
    parser.add_argument("--repeats", type=int, default=3, help="requests per case (the best is reported)")
    parser.add_argument(
        "--server-code",
        type=Path,
        help="serve another checkout's code (e.g. an earlier commit unpacked with git archive) for a before run",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores",
        "server_code": str(args.server_code or "this checkout"),
        "cases": [],
    }
    with served(code=args.server_code) as (url, models):
        lead_model = models["lead_score"]
        report["lead_score"] = f"v{lead_model['version']} ({lead_model['dataset']})"
        items, numeric = _leads(lead_model["dataset"], max(args.sizes))
        for n in args.sizes:
            for case in ("all valid", "one unknown field", "one text in a numeric field"):
                batch = [dict(item, features=dict(item["features"])) for item in items[:n]]
                if case == "one unknown field":
                    batch[n // 2]["features"]["no_such_field"] = 1
                if case == "one text in a numeric field":
                    batch[n // 2]["features"][numeric] = "lots"
                best, errors = float("inf"), []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    response = httpx.post(url + "/leads/score", json={"leads": batch}, timeout=600)
                    best = min(best, time.perf_counter() - t0)
                    errors = [r["error"] for r in response.json()["results"] if "error" in r]
                report["cases"].append(  # type: ignore[union-attr]
                    {
                        "leads": n,
                        "case": case,
                        "status": response.status_code,
                        "best_s": round(best, 3),
                        "errors": errors,
                    }
                )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
