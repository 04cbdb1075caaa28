"""The real service (``salesml serve`` subprocess) against models trained in this session."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import BIN
from tests.service.conftest import TOKEN, Server, start_server, stop_server

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def library(trained_home: Path, monkeypatch_module):
    """The library's own view of the same champions (same SALESML_HOME)."""
    monkeypatch_module.setenv("SALESML_HOME", str(trained_home))
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    from training.registry import connect

    connect()
    return trained_home


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_token_is_required_except_on_probes(server: Server) -> None:
    body = {"customers": [{"customer_id": "C000001"}]}
    assert server.post("/churn/score", body, headers={}).status_code == 401
    wrong = server.post("/churn/score", body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json() == {"error": "unauthorized"}
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert httpx.get(server.url + "/metrics").status_code == 200
    assert server.get("/models", headers={}).status_code == 401


def test_models_and_readiness(server: Server) -> None:
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["ready"] is True
    assert {m["state"] for m in ready["models"].values()} == {"fresh"}
    models = {m["product"]: m for m in server.get("/models").json()["models"]}
    assert set(models) == {"sales_forecast", "churn_risk", "lead_score"}
    for product, m in models.items():
        assert m["alias"] == "champion" and m["version"] and m["trained_at"]
        assert m["metrics"], m
        assert (m["name"], m["dataset"]) == (f"{product}.synthetic", "synthetic")
        assert ready["models"][product]["name"] == m["name"]
    assert models["churn_risk"]["version"] == "1"


def test_churn_by_id_and_by_features_matches_the_library(server: Server, library: Path) -> None:
    from features.churn_columns import fill_cutoff_ranks
    from features.churn_snapshot import read_churn_snapshot
    from training.classifier import load_scoring_model

    snapshot, meta = read_churn_snapshot("synthetic")
    ids = snapshot["customer_id"].astype(str).head(5).tolist()
    feature_row = snapshot.iloc[7]
    scoring = load_scoring_model("models:/churn_risk.synthetic@champion")
    features = {
        c: (
            None
            if pd.isna(feature_row[c])
            else feature_row[c].item()
            if hasattr(feature_row[c], "item")
            else feature_row[c]
        )
        for c in scoring.features
    }
    # what a CRM can send: raw values only; the ranks among the cutoff's customers come from the snapshot
    raw = {c: v for c, v in features.items() if not c.endswith("_rank_in_cutoff")}
    assert len(raw) < len(features)  # the synthetic churn model uses rank features
    body = {
        "customers": [
            *[{"customer_id": i} for i in ids[:3]],
            {"customer_id": "NOT-A-CUSTOMER"},
            {"customer_id": "F-1", "features": features},
            *[{"customer_id": i} for i in ids[3:]],
            {"customer_id": "F-2", "features": raw},
        ]
    }
    response = server.post("/churn/score", body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("customer_id", r.get("id")) for r in results] == [
        c["customer_id"] for c in body["customers"]
    ]
    assert "error" in results[3] and "NOT-A-CUSTOMER" in results[3]["error"]
    expected = scoring.predict(
        snapshot.set_index(snapshot["customer_id"].astype(str)).loc[ids].reset_index(drop=True)
    )
    got = [r for r in results if "probability" in r and r["customer_id"] in ids]
    np.testing.assert_allclose([r["probability"] for r in got], expected["probability"].to_numpy(), rtol=1e-9)
    assert [r["band"] for r in got] == expected["band"].tolist()
    direct = scoring.predict(pd.DataFrame([features]))
    assert results[4]["probability"] == pytest.approx(float(direct["probability"].iloc[0]), rel=1e-9)
    filled = fill_cutoff_ranks(pd.DataFrame([raw]), snapshot)
    assert filled.filter(like="_rank_in_cutoff").notna().sum(axis=1).iloc[0] > 0
    via_ranks = scoring.predict(filled.reindex(columns=scoring.features))
    assert results[-1]["customer_id"] == "F-2"
    assert results[-1]["probability"] == pytest.approx(float(via_ranks["probability"].iloc[0]), rel=1e-9)
    for r in got:
        assert r["model_name"] == "churn_risk.synthetic" and r["model_version"] == "1"
        assert r["as_of"] == meta["cutoff"] and r["dataset"] == "synthetic"
        assert len(r["reasons"]) == 3 and r["horizon_days"] == 90
        assert set(r["reasons"][0]) == {"feature", "contribution", "value"}
        assert r["expected_value"] == pytest.approx(r["probability"] * r["value"])
    empty = server.post("/churn/score", {"customers": [{"customer_id": ids[0], "features": {}}]})
    assert empty.json()["results"][0] == got[0]  # features {} is the snapshot's row, like no features


def test_leads_match_the_library_and_one_bad_lead_does_not_sink_the_batch(
    server: Server, library: Path, small_synthetic_spec: Path
) -> None:
    from features.lead_records import new_lead_context
    from features.load import load_dataset
    from training.classifier import load_scoring_model
    from training.leads import score_lead_records

    good = [
        {
            "lead_id": "N1",
            "features": {
                "source": "referral",
                "company_size": "large",
                "industry": "retail",
                "owner": "R001",
                "demo_requested": True,
            },
        },
        {
            "lead_id": "N2",
            "features": {
                "source": "cold_call",
                "company_size": "small",
                "industry": "health",
                "owner": "R002",
                "demo_requested": False,
            },
        },
    ]
    bad = {"lead_id": "N3", "features": {"no_such_field": 1}}
    response = server.post("/leads/score", {"leads": [good[0], bad, good[1]]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("lead_id", r.get("id")) for r in results] == ["N1", "N3", "N2"]
    assert "no_such_field" in results[1]["error"]
    dataset = load_dataset(small_synthetic_spec)
    scoring = load_scoring_model("models:/lead_score.synthetic@champion")
    expected = score_lead_records(
        [{**g["features"], "lead_id": g["lead_id"]} for g in good],
        new_lead_context(dataset),
        scoring,
        version="x",
    )
    np.testing.assert_allclose(
        [results[0]["probability"], results[2]["probability"]], expected["probability"].to_numpy(), rtol=1e-9
    )
    assert [results[0]["band"], results[2]["band"]] == expected["band"].tolist()
    assert results[0]["band"] in {"A", "B", "C", "D"} and len(results[0]["reasons"]) == 3
    assert [results[0]["reasons"], results[2]["reasons"]] == [json.loads(t) for t in expected["reasons"]]
    assert results[0]["model_name"] == "lead_score.synthetic" and results[0]["dataset"] == "synthetic"
    missing_id = server.post("/leads/score", {"leads": [{"features": {}}]})
    assert missing_id.status_code == 400 and "leads.0.lead_id" in missing_id.json()["error"]


def test_concurrent_lead_requests_scored_together_answer_as_each_alone(server: Server) -> None:
    """Requests that arrive together are scored in one call (serving/batcher.py); each gets the answer it gets
    alone, even when they use the same lead id, and a bad lead is numbered in its own request."""
    sources, sizes = ["referral", "cold_call", "web"], ["large", "small", "medium"]
    requests = [
        {
            "leads": [
                {
                    "lead_id": "L1",
                    "features": {
                        "source": sources[i % 3],
                        "company_size": sizes[i // 3 % 3],
                        "owner": f"R00{1 + i % 5}",
                        "demo_requested": i % 2 == 0,
                    },
                }
            ]
        }
        for i in range(24)
    ]
    requests[5]["leads"].append({"lead_id": "L2", "features": {"no_such_field": 1}})
    alone = [server.post("/leads/score", body).json() for body in requests]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(lambda body: server.post("/leads/score", body).json(), requests))
    assert together == alone
    assert len({r["results"][0]["probability"] for r in alone}) > 3  # the leads differ: not vacuous
    assert "lead #1 (L2)" in alone[5]["results"][1]["error"]  # its position in its request
    assert (
        len({r["results"][0]["as_of"] for r in together}) == 1
    )  # every new lead is decided at the data's end


def test_forecast_and_plan_match_the_library(server: Server, library: Path) -> None:
    from training.forecast.serve_api import forecast_nodes, load_forecast, plan_target, quarter_totals

    art = load_forecast("models:/sales_forecast.synthetic@champion")
    nodes = ["total", *art.nodes["unique_id"].iloc[1:3].tolist()]
    response = server.post("/forecast", {"nodes": nodes})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["node"] for r in results] == nodes
    lib = forecast_nodes(art, nodes=nodes)
    for r in results:
        mine = lib[lib["unique_id"] == r["node"]]
        np.testing.assert_allclose([p["mean"] for p in r["periods"]], mine["mean"].to_numpy(), rtol=1e-9)
        for p in r["periods"]:
            assert (
                p["lo_95"] <= p["lo_80"] <= p["mean"] <= p["hi_80"] <= p["hi_95"]
                or p["lo_95"] <= p["lo_80"] <= p["hi_80"] <= p["hi_95"]
            )
        assert {q["quarter"] for q in r["quarters"]} == {"current", "next"}
        assert r["model_name"] == "sales_forecast.synthetic" and r["as_of"] and r["dataset"] == "synthetic"
    q = quarter_totals(art, nodes=["total"], quarter="next")
    nxt = next(x for x in results[0]["quarters"] if x["quarter"] == "next")
    assert nxt["median"] == pytest.approx(float(q["median"].iloc[0]))
    level = art.nodes["level"].iloc[-1]
    by_level = server.post("/forecast", {"level": level}).json()["results"]
    assert {r["level"] for r in by_level} == {level}

    target = float(q["median"].iloc[0]) * 1.1
    plan = server.post("/plan", {"node": "total", "target": target, "quarter": "next"})
    assert plan.status_code == 200, plan.text
    rows = plan.json()["rows"]
    expected = plan_target(art, "total", target, "next")
    np.testing.assert_allclose(
        [r["probability"] for r in rows], expected["probability"].to_numpy(), rtol=1e-9
    )
    children = [r for r in rows if r["role"] == "child"]
    assert sum(r["target"] for r in children) == pytest.approx(target)
    rep = art.nodes[art.nodes["is_bottom"]]["unique_id"].iloc[0]  # a bottom node's own target: no children
    alone = server.post("/plan", {"node": rep, "target": 100.0}).json()["rows"]
    assert [r["role"] for r in alone] == ["node"] and alone[0]["target"] == 100.0


@pytest.mark.parametrize(
    ("path", "body", "field", "status"),
    [
        ("/churn/score", {"customers": []}, "customers", 400),
        ("/churn/score", {"customers": [{"customer_id": ""}]}, "customers.0.customer_id", 400),
        ("/churn/score", {"customers": [{"customer_id": "C1"}], "extra": 1}, "extra", 400),
        ("/churn/score", {"customers": "C1"}, "customers", 400),
        ("/leads/score", {"leads": [{"lead_id": 5}]}, "leads.0.lead_id", 400),
        ("/forecast", {"nodes": ["no/such/node"]}, "unknown node", 404),
        ("/forecast", {}, "nodes", 400),
        ("/forecast", {"level": "galaxy"}, "unknown level", 404),
        ("/plan", {"node": "total", "target": -1}, "target", 400),
        ("/plan", {"node": "total", "target": "a lot"}, "target", 400),
        ("/plan", {"node": "total", "target": True}, "target", 400),
        ("/plan", {"node": "nowhere", "target": 10}, "unknown node", 404),
        ("/plan", {"node": "total", "target": 10, "quarter": "last"}, "quarter", 400),
        ("/forecast", {"nodes": None, "level": "region"}, "nodes", 400),  # absent is allowed, null is not
        ("/forecast", {"nodes": ["total"], "level": "region"}, "exactly one", 400),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    server: Server, path: str, body: dict, field: str, status: int
) -> None:
    # 404: a well-formed name the served forecast does not hold (the document lists the known ones)
    response = server.post(path, body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]


def test_bad_values_in_an_item_are_its_error_and_the_rest_is_scored(server: Server) -> None:
    # Raw JSON: Infinity / 1e400 are what a client's serialiser can send (httpx's own refuses them).
    customers = (
        '{"customers": [{"customer_id": "X1", "features": {"recency_days": 1e400}},'
        ' {"customer_id": "X2", "features": {"recency_days": "forty"}},'
        ' {"customer_id": "X3", "features": {"recency_days": 12, "revenue_12m": 1000}}]}'
    )
    headers = {**server.headers(), "content-type": "application/json"}
    response = httpx.post(server.url + "/churn/score", content=customers, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    x1, x2, x3 = response.json()["results"]
    assert "'recency_days' must be a finite number" in x1["error"]
    assert "'recency_days' must be a number, got 'forty'" in x2["error"]
    assert x3["expected_value"] == pytest.approx(x3["probability"] * 1000) and x3["value"] == 1000
    leads = [
        {
            "lead_id": "T1",
            "features": {"created_at": "2025-11-01T10:00:00Z"},
        },  # a time zone: converted to UTC
        {"lead_id": "T2", "features": {"created_at": "1700-01-01"}},
        {"lead_id": "T3", "features": {"created_at": "not a date"}},
    ]
    response = server.post("/leads/score", {"leads": leads})
    assert response.status_code == 200, response.text
    t1, t2, t3 = response.json()["results"]
    assert 0 < t1["probability"] < 1 and t1["model_name"] == "lead_score.synthetic"
    for item in (t2, t3):
        assert "field 'created_at' must be a date between 1900-01-01 and 2200-12-31" in item["error"]


def test_the_edge_refuses_big_bodies_unread_and_other_media_types_and_takes_bearer_in_any_case(
    server: Server,
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        f"POST /churn/score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{}"
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:  # a client that claims 100 GB
        conn.sendall(request.encode())
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2] and (chunk := conn.recv(65536)):
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "above the limit" in answer
    lower = server.post(
        "/churn/score", {"customers": [{"customer_id": "X"}]}, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert lower.status_code == 200  # the scheme name is case-insensitive
    jsonp = httpx.post(
        server.url + "/churn/score",
        content=b'{"customers": [{"customer_id": "X"}]}',
        headers={**server.headers(), "content-type": "application/jsonp"},
        timeout=60,
    )
    assert jsonp.status_code == 415


def test_batch_limit(server: Server) -> None:
    body = {"customers": [{"customer_id": f"C{i}"} for i in range(10_001)]}
    response = server.post("/churn/score", body)
    assert response.status_code == 400 and "limit of 10000" in response.json()["error"]


def _new_log_lines(server: Server, offset: int, path: str) -> list[str]:
    """The server log's lines after byte ``offset``, once one names ``path`` (BentoML writes the access line
    after the response)."""
    deadline = time.time() + 10
    while True:
        lines = server.log.read_bytes()[offset:].decode("utf-8", "replace").splitlines()
        if any(f"path={path}," in line for line in lines) or time.time() > deadline:
            return [line for line in lines if line.strip()]
        time.sleep(0.1)


def _settled_size(server: Server) -> int:
    """The log's size once earlier requests' access lines are written (no growth for 0.5 s, at most 10 s)."""
    deadline, size = time.time() + 10, server.log.stat().st_size
    while time.time() < deadline:
        time.sleep(0.5)
        now = server.log.stat().st_size
        if now == size:
            break
        size = now
    return size


def test_rejections_leave_one_log_line_and_no_traceback_or_scores(server: Server) -> None:
    offset = _settled_size(server)
    rejected = server.post("/plan", {"node": "total", "target": -1})
    assert rejected.status_code == 400
    lines = _new_log_lines(server, offset, "/plan")
    # One line, BentoML's access line, that names the request and its status; nothing else (no traceback).
    assert len(lines) == 1, lines
    assert "method=POST,path=/plan," in lines[0] and "(status=400," in lines[0], lines
    offset = _settled_size(server)
    unknown = server.post("/churn/score", {"customers": [{"customer_id": "SECRET-ID-123"}]})
    assert unknown.status_code == 200 and "error" in unknown.json()["results"][0]
    lines = _new_log_lines(server, offset, "/churn/score")
    assert len(lines) == 1 and "path=/churn/score," in lines[0], lines
    log = server.log.read_text()
    assert "Traceback" not in log
    assert "SECRET-ID-123" not in log
    assert "probability" not in log


def test_reload_while_requests_are_in_flight_loses_none(server: Server, library: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions("name='churn_risk.synthetic'"))
    assert len(versions) >= 2
    body = {"customers": [{"customer_id": "C000010"}, {"customer_id": "C000020"}]}

    def call(_: int) -> tuple[int, str]:
        r = server.post("/churn/score", body)
        if r.status_code != 200:
            return r.status_code, r.text
        used = {item["model_version"] for item in r.json()["results"]}
        assert len(used) == 1, used  # one version per answer, even while a reload swaps them
        return r.status_code, used.pop()

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(call, i) for i in range(120)]
            client.set_registered_model_alias("churn_risk.synthetic", "champion", str(versions[-1]))
            reloads = [server.post("/admin/reload", {}) for _ in range(3)]
            outcomes = [f.result() for f in futures]
        assert all(r.status_code == 200 for r in reloads)
        assert [o for o in outcomes if o[0] != 200] == []
        assert {o[1] for o in outcomes} <= {str(v) for v in versions}
        models = {m["product"]: m for m in server.get("/models").json()["models"]}
        assert models["churn_risk"]["version"] == str(versions[-1])
    finally:
        client.set_registered_model_alias("churn_risk.synthetic", "champion", "1")
        server.post("/admin/reload", {})


def test_registry_unreachable_serves_last_good_versions_as_stale(server: Server, tmp_path: Path) -> None:
    # The session server has already copied every champion locally; now the registry is a closed port.
    stale = start_server(server.home, tmp_path / "stale.log", {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    try:
        ready = httpx.get(stale.url + "/readyz").json()
        assert ready["ready"] is True
        assert {m["state"] for m in ready["models"].values()} == {"stale"}
        r = stale.post("/churn/score", {"customers": [{"customer_id": "C000010"}]})
        assert r.status_code == 200 and r.json()["results"][0]["model_name"] == "churn_risk.synthetic"
    finally:
        stop_server(stale)


def run_schemathesis(url: str, tmp_path: Path, examples: int, token: str | None) -> list[dict]:
    """``schemathesis run <url>/docs.json --checks all`` (nothing left out); the HAR entries of what it sent."""
    har = tmp_path / "run.har"
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            url + "/docs.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            "7",
            "--workers",
            "1",
            "--no-shrink",
            *auth,
            "--report",
            "har",
            "--report-har-path",
            str(har),
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return json.loads(har.read_text())["log"]["entries"]


def test_schemathesis_with_every_check_finds_nothing_the_document_and_the_server_disagree_on(
    server: Server, tmp_path: Path
) -> None:
    # Every check: server errors, response schemas and statuses, schema-valid bodies accepted (2xx or 404 for an
    # unknown node), schema-invalid ones refused, 405 with Allow, requests without the token refused.
    # benchmarks/README.md has the run of 2,000+ cases with and without the token.
    entries = run_schemathesis(server.url, tmp_path, 60, TOKEN)
    assert len(entries) >= 400, len(entries)
    statuses = {e["response"]["status"] for e in entries}
    assert not [s for s in statuses if s >= 500]
    assert {200, 400, 401, 404, 405} <= statuses, statuses  # the run reached each kind of answer


def test_schemathesis_on_a_service_without_a_token(server: Server, tmp_path: Path) -> None:
    open_server = start_server(server.home, tmp_path / "open.log", {"SALESML_API_TOKEN": ""})
    try:
        doc = httpx.get(open_server.url + "/docs.json").json()
        assert "security" not in doc  # no token, no scheme: nothing the run could expect a 401 for
        entries = run_schemathesis(open_server.url, tmp_path, 25, None)
    finally:
        stop_server(open_server)
    assert len(entries) >= 200, len(entries)
    assert 401 not in {e["response"]["status"] for e in entries}


def test_every_answer_is_in_the_prediction_log_with_ids_hashed_and_never_in_clear(
    server: Server, library: Path
) -> None:
    from features.churn_snapshot import read_churn_snapshot
    from training.prediction_log import entity_hash, read_log

    snapshot, _ = read_churn_snapshot("synthetic")
    ids = snapshot["customer_id"].astype(str).iloc[10:13].tolist()
    churn = server.post("/churn/score", {"customers": [{"customer_id": i} for i in ids]}).json()["results"]
    lead_id = "PLOG-LEAD-7f3a"
    features = {"source": "referral", "company_size": "large", "industry": "retail", "owner": "R001"}
    lead = server.post("/leads/score", {"leads": [{"lead_id": lead_id, "features": features}]})
    assert "probability" in lead.json()["results"][0], lead.text
    fc = server.post("/forecast", {"nodes": ["total"]}).json()["results"][0]

    url = f"sqlite:///{server.home / 'prediction_log.sqlite'}"
    salt = (server.home / "prediction_log.salt").read_bytes()
    hashed = {entity_hash(salt, i): i for i in [*ids, lead_id]}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # written off the request path: a moment later
        log = read_log(url) if (server.home / "prediction_log.sqlite").exists() else pd.DataFrame()
        if len(log) and set(hashed) <= set(log["entity"]) and "total" in set(log["entity"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not logged within 15 s: {len(log)} rows")
    mine = log[log["entity"].isin(hashed)].drop_duplicates("entity", keep="last").set_index("entity")
    for r in churn:
        row = mine.loc[entity_hash(salt, r["customer_id"])]
        assert (row["product"], row["model_version"], row["band"]) == (
            "churn_risk",
            r["model_version"],
            r["band"],
        )
        assert row["score"] == pytest.approx(r["probability"], abs=1e-12)
    assert mine.loc[entity_hash(salt, lead_id), "product"] == "lead_score"
    total = log[(log["product"] == "sales_forecast") & (log["entity"] == "total")].iloc[-1]
    nxt = next(q for q in fc["quarters"] if q["quarter"] == "next")
    assert total["score"] == pytest.approx(nxt["mean"]) and total["model_version"] == fc["model_version"]
    raw = [*ids, lead_id]
    stored = (server.home / "prediction_log.sqlite").read_bytes()
    assert not [i for i in raw if i.encode() in stored]
    server_log = server.log.read_text()
    assert not [i for i in raw if i in server_log]
