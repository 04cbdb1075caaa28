"""``salesml monitor`` on the sales forecast, end to end: a champion trained ``--as-of`` a day is judged on the
four weeks that follow. West's sales -40 % over those weeks fire an alert naming region=West and a shocked
period (exit 1); the same weeks as they are fire none (exit 0); the report is written either way; the webhook
gets one message per alert, and a receiver that is down costs bounded retries, not the report.

One seed here (the built-in 7); ``benchmarks/monitor_alerts.py`` runs 20 (benchmarks/README.md).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

LINES = 300_000
AS_OF = "2025-10-12"
SHOCK_WEEKS = {"2025-10-19", "2025-10-26", "2025-11-02", "2025-11-09"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("monitor-home")


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, home: Path) -> dict[str, Path]:
    """The organisation at 300,000 lines with its sales champion trained as of AS_OF, and a copy of its data
    whose West sales after AS_OF are 40 % lower (same spec name, files instead of the generator)."""
    folder = tmp_path_factory.mktemp("monitor-specs")
    spec = yaml.safe_load((REPO / "features" / "specs" / "synthetic.yaml").read_text())
    spec["generator"]["n_order_lines"] = LINES
    plain = folder / "synthetic.yaml"
    plain.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {"SALESML_HOME": str(home)}
    trained = run_cli("train", "sales", "--dataset", str(plain), "--as-of", AS_OF, "--promote", env=env)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    assert "data to 2025-10-12" in trained.stdout

    generated = next((home / "data").glob(f"synthetic-seed7-n{LINES}"))
    shocked_dir = folder / "shocked-data"
    shutil.copytree(generated, shocked_dir)
    orders = pd.read_parquet(shocked_dir / "orders.parquet")
    reps = pd.read_parquet(shocked_dir / "reps.parquet")
    west = orders["rep"].isin(reps.loc[reps["region"] == "West", "rep"]) & (
        orders["time"] >= pd.Timestamp(AS_OF) + pd.Timedelta(days=1)
    )
    orders.loc[west, "amount"] *= 0.6
    orders.to_parquet(shocked_dir / "orders.parquet", index=False)
    del spec["generator"]
    shocked = folder / "synthetic-shocked.yaml"
    shocked.write_text(yaml.safe_dump(spec, sort_keys=False))  # name: synthetic, as the champion's
    return {"plain": plain, "shocked": shocked, "shocked_dir": shocked_dir}


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _rules(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "rules": [{"name": "sales anomaly", "metric": "forecast.anomaly_p", "threshold": 0.01}],
                "webhook": {"url": url, "timeout_seconds": 2, "retries": 2, "backoff_seconds": 0},
            }
        )
    )
    return path


def test_a_shock_fires_an_alert_naming_the_node_and_period_and_the_webhook_gets_each(
    org: dict[str, Path], home: Path, tmp_path: Path
) -> None:
    _Receiver.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rules = _rules(tmp_path / "rules.yaml", f"http://127.0.0.1:{server.server_port}/hook")
        env = {"SALESML_HOME": str(home), "SALESML_DATA_DIR": str(org["shocked_dir"])}
        out = tmp_path / "report"
        done = run_cli(
            "monitor", "--dataset", str(org["shocked"]), "--rules", str(rules), "--out", str(out), env=env
        )
    finally:
        server.shutdown()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "monitor.json").read_text())
    alerts = report["alerts"]
    west = [a for a in alerts if a["node"] == "region=West"]
    assert west, [a["node"] for a in alerts]
    assert all(set(a["period"].split("..")) <= SHOCK_WEEKS for a in west)
    assert "region=West" in done.stdout
    assert len(_Receiver.bodies) == len(alerts)  # exactly one message per alert
    assert sorted(b["node"] + b["period"] for b in _Receiver.bodies) == sorted(
        a["node"] + a["period"] for a in alerts
    )
    html = (out / "monitor.html").read_text()
    assert "region=West" in html and "<svg" in html
    assert (
        "<script" not in html and "src=" not in html and "<link" not in html
    )  # nothing fetched from anywhere


def test_a_receiver_that_is_down_costs_bounded_retries_and_the_report_is_still_written(
    org: dict[str, Path], home: Path, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    rules = _rules(tmp_path / "rules.yaml", f"http://127.0.0.1:{port}/hook")
    env = {"SALESML_HOME": str(home), "SALESML_DATA_DIR": str(org["shocked_dir"])}
    out = tmp_path / "report"
    done = run_cli(
        "monitor",
        "--dataset",
        str(org["shocked"]),
        "--rules",
        str(rules),
        "--out",
        str(out),
        "--no-log",
        env=env,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    alerts = json.loads((out / "monitor.json").read_text())["alerts"]
    assert f"webhook: 0 sent, {len(alerts)} failed ({3 * len(alerts)} attempts)" in done.stdout


def test_the_same_weeks_unshocked_fire_no_alert(org: dict[str, Path], home: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = run_cli(
        "monitor", "--dataset", str(org["plain"]), "--out", str(out), env={"SALESML_HOME": str(home)}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "monitor.json").read_text())
    sales = report["sections"]["sales_forecast"]
    assert sales["periods"] == sorted(SHOCK_WEEKS)
    assert report["alerts"] == []
    levels = {r["level"]: r for r in sales["levels"]}
    assert levels["total"]["nodes"] == 1 and levels["bottom"]["nodes"] > 100
    assert abs(levels["total"]["bias"]) < 0.15  # the check measures the forecast, it does not just pass
