"""The prediction log: written off the request path, ids hashed with the installation's salt, a store that
cannot be written costs counted rows and never an exception, and SALESML_PREDICTION_LOG=off turns it off."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from training.prediction_log import (
    PredictionLog,
    entity_hash,
    installation_salt,
    prediction_log_from_env,
    read_log,
)


def test_rows_are_written_with_ids_hashed_and_nodes_kept(tmp_path: Path) -> None:
    salt = installation_salt(tmp_path)
    assert installation_salt(tmp_path) == salt and len(salt) == 32  # made once, kept
    assert stat.S_IMODE(os.stat(tmp_path / "prediction_log.salt").st_mode) == 0o600
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    log = PredictionLog(url, salt, flush_seconds=0.05)
    log.record("churn_risk", "churn_risk.x", "3", ["C1", "C2"], [0.25, 0.75], ["low", "high"])
    log.record("sales_forecast", "sales_forecast.x", "1", ["total"], [1234.5], None, ["current=99"])
    assert log.flush()
    rows = read_log(url)
    assert rows["entity"].tolist() == [entity_hash(salt, "C1"), entity_hash(salt, "C2"), "total"]
    assert rows["score"].tolist() == [0.25, 0.75, 1234.5]
    assert rows["band"].tolist()[:2] == ["low", "high"] and rows["detail"].iloc[2] == "current=99"
    assert (rows["model_version"] == ["3", "3", "1"]).all() and log.written == 3 and log.dropped == 0
    assert b"C1" not in (tmp_path / "log.sqlite").read_bytes()
    # another installation (another salt) cannot join its log to this one by id
    assert entity_hash(os.urandom(32), "C1") != entity_hash(salt, "C1")
    log.close()


def test_a_store_that_cannot_be_written_counts_what_is_dropped(tmp_path: Path) -> None:
    log = PredictionLog(
        f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'log.sqlite'}", b"s" * 32, flush_seconds=0.01
    )
    log.record("lead_score", "lead_score.x", "1", ["L1", "L2"], [0.1, 0.2], ["D", "D"])
    assert log.flush()
    assert (log.written, log.dropped) == (0, 2)


def test_a_full_queue_drops_new_records_instead_of_waiting(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.sqlite'}", b"s" * 32, max_queue=1, flush_seconds=0.5)
    for _ in range(50):  # the writer holds at most one batch while it gathers; the rest must not block
        log.record("churn_risk", "churn_risk.x", "1", ["C1"], [0.5], ["low"])
    assert log.flush()
    assert log.written + log.dropped == 50 and log.dropped > 0


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false"])
def test_off_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SALESML_PREDICTION_LOG", value)
    assert prediction_log_from_env(tmp_path) is None
    assert not (tmp_path / "prediction_log.salt").exists()


def test_the_log_goes_to_postgresql_when_configured(
    pg_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from tests.conftest import pg_url

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS prediction_log"))
    monkeypatch.setenv("SALESML_PREDICTION_LOG_URL", pg_url(pg_engine))
    log = prediction_log_from_env(tmp_path)
    assert log is not None
    try:
        log.record("lead_score", "lead_score.x", "2", ["L-9"], [0.4], ["B"])
        assert log.flush()
        rows = read_log(pg_url(pg_engine), product="lead_score")
        assert rows["entity"].tolist() == [entity_hash(installation_salt(tmp_path), "L-9")]
        assert (log.written, log.dropped) == (1, 0)
    finally:
        log.close()
        with pg_engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS prediction_log"))
