"""Print one working curl per endpoint of a running salesml service (each is tried first).

Used by `make demo`; ids and nodes come from the served champions, not from this file.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import httpx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="Base URL of the running service.")
    args = parser.parse_args()
    token = os.environ.get("SALESML_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    models = {m["product"]: m for m in httpx.get(args.url + "/models", headers=headers, timeout=30).json()["models"]}

    calls: list[tuple[str, str, dict | None]] = [("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/models", None)]
    if "sales_forecast" in models:
        calls.append(("POST", "/forecast", {"nodes": ["total"]}))
        fc = httpx.post(args.url + "/forecast", json={"nodes": ["total"]}, headers=headers, timeout=60).json()
        nxt = next(q for q in fc["results"][0]["quarters"] if q["quarter"] == "next")
        calls.append(("POST", "/plan", {"node": "total", "target": round(nxt["median"] * 1.05, 2), "quarter": "next"}))
    if "churn_risk" in models:
        from features.churn_snapshot import read_churn_snapshot

        snapshot, _ = read_churn_snapshot(models["churn_risk"]["dataset"])
        ids = snapshot["customer_id"].astype(str).head(2).tolist()
        calls.append(("POST", "/churn/score", {"customers": [{"customer_id": i} for i in ids]}))
    if "lead_score" in models:
        from features.load import load_dataset
        from features.spec import Role

        ds = load_dataset(models["lead_score"]["dataset"])
        leads = ds.table(Role.leads)
        table = ds.spec.table_of(Role.leads)[1]
        skip = {"lead_id", "outcome", "closed_at", *table.post_outcome}
        row = leads.iloc[-1]
        features = {k: (None if v != v else v.item() if hasattr(v, "item") else str(v)) for k, v in row.items() if k not in skip}
        features = {k: v for k, v in features.items() if not hasattr(v, "isoformat")}
        calls.append(("POST", "/leads/score", {"leads": [{"lead_id": "DEMO-1", "features": features}]}))
    calls.append(("GET", "/ui/", None))  # the planner's page (a browser signs in with the token once)
    calls.append(("POST", "/admin/reload", {}))

    ok = True
    for method, path, body in calls:
        response = httpx.request(method, args.url + path, json=body, headers=headers, timeout=60)
        auth = f" -H {shlex.quote('Authorization: Bearer ' + token)}" if token and path not in ("/healthz", "/readyz") else ""
        data = f" -H 'content-type: application/json' -d {shlex.quote(json.dumps(body))}" if body is not None else ""
        mark = "ok " if response.status_code == 200 else f"{response.status_code}"
        ok &= response.status_code == 200
        print(f"[{mark}] curl -s -X {method} {args.url}{path}{auth}{data}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
