"""Scores for the CRM: the transactional upsert against the real PostgreSQL server, and SQLite without one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import SalesmlError
from tests.conftest import pg_url
from training import score_columns as sc
from training.scores_sql import crm_rows, write_score_frame, write_scores

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def churn_frame(n: int = 6, *, shift: float = 0.0, version: str = "1") -> pd.DataFrame:
    """A frame shaped like ``training.churn.score_churn``'s output (the fixed names of score_columns)."""
    p = np.linspace(0.05, 0.75, n) + shift
    reasons = [
        [
            {"feature": "recency_days", "contribution": c, "value": str(10 * i)},
            *([{"feature": "tenure_days", "contribution": -0.3, "value": "400"}] if i < n - 1 else []),
        ]
        for i, c in enumerate(np.linspace(0.4, 1.2, n))
    ]
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:03d}" for i in range(n)],
            "probability": p,
            "band": np.where(p > 0.5, "high", np.where(p > 0.2, "medium", "low")),
            "reasons": sc.reasons_json(reasons),
            "value": 1000.0,
            "expected_value": p * 1000.0,
            "as_of": pd.Timestamp("2025-12-31"),
            "horizon_days": 90,
            "dataset": "synthetic",
            "model_name": "churn_risk.synthetic",
            "model_version": version,
        }
    )


def leads_frame(n: int = 4) -> pd.DataFrame:
    """A frame shaped like ``training.leads.score_leads``'s output."""
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "probability": np.linspace(0.9, 0.1, n),
            "band": ["ABCD"[i % 4] for i in range(n)],
            "reasons": sc.reasons_json(
                [[{"feature": "source", "contribution": 0.7, "value": "referral"}]] * n
            ),
            "value": 5000.0,
            "expected_value": np.linspace(0.9, 0.1, n) * 5000.0,
            "as_of": pd.Timestamp("2025-11-30"),
            "age_days": 12,
            "dataset": "crm",
            "model_name": "lead_score.crm",
            "model_version": "3",
        }
    )


def read_table(url: str, table: str, key: str) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(f"SELECT * FROM {table} ORDER BY {key}"), conn)
    finally:
        engine.dispose()


# --- PostgreSQL --------------------------------------------------------------------------------------------


@pytest.fixture
def pg_table(pg_engine):
    """A unique table name in the test database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"salesml_scores_{uuid.uuid4().hex[:10]}"
    yield pg_url(pg_engine), name, pg_engine
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))


@pytest.mark.postgres
def test_postgres_first_write_then_upsert(pg_table) -> None:
    url, table, _ = pg_table
    assert write_score_frame(churn_frame(), kind="churn", url=url, table=table, scored_at=T0) == 6
    first = read_table(url, table, "customer_id")
    assert first["customer_id"].tolist() == [f"C{i:03d}" for i in range(6)]
    assert first["probability"].to_numpy() == pytest.approx(np.linspace(0.05, 0.75, 6))
    assert first["band"].tolist() == ["low", "low", "medium", "medium", "high", "high"]
    assert list(first.columns) == [
        "customer_id",
        *sc.SCORE_COLUMNS[:6],
        "horizon_days",
        *sc.SCORE_COLUMNS[6:],
        "scored_at",
    ]
    assert first["model_version"].unique().tolist() == ["1"]
    assert first["as_of"].unique().tolist() == ["2025-12-31"]
    reasons = json.loads(first.loc[0, "reasons"])
    assert reasons == [
        {"feature": "recency_days", "contribution": 0.4, "value": "0"},
        {"feature": "tenure_days", "contribution": -0.3, "value": "400"},
    ]
    assert json.loads(first.loc[5, "reasons"]) == [
        {"feature": "recency_days", "contribution": 1.2, "value": "50"}
    ]
    assert pd.Timestamp(first.loc[0, "scored_at"]) == pd.Timestamp(T0)

    # Re-scoring upserts: same ids, new values and version, scored_at moves; a new id is added.
    second = churn_frame(7, shift=0.2, version="2")
    later = T0 + timedelta(days=1)
    assert write_score_frame(second, kind="churn", url=url, table=table, scored_at=later) == 7
    after = read_table(url, table, "customer_id")
    assert len(after) == 7
    assert after["probability"].to_numpy() == pytest.approx(np.linspace(0.05, 0.75, 7) + 0.2)
    assert after["model_version"].unique().tolist() == ["2"]
    assert (pd.to_datetime(after["scored_at"], utc=True) == pd.Timestamp(later)).all()

    # A smaller batch only touches its own ids.
    write_score_frame(
        churn_frame(2, shift=0.1, version="3"), kind="churn", url=url, table=table, scored_at=later
    )
    last = read_table(url, table, "customer_id")
    assert len(last) == 7
    assert last["model_version"].tolist() == ["3", "3", "2", "2", "2", "2", "2"]


@pytest.mark.postgres
def test_postgres_constraint_violation_mid_write_leaves_old_rows_intact(pg_table) -> None:
    import sqlalchemy as sa

    url, table, engine = pg_table
    write_score_frame(churn_frame(), kind="churn", url=url, table=table, scored_at=T0)
    before = read_table(url, table, "customer_id")
    with engine.begin() as conn:
        # The CRM's own rule: it refuses probabilities of 0.9 and above.
        conn.execute(sa.text(f"ALTER TABLE {table} ADD CONSTRAINT p_below_09 CHECK (probability < 0.9)"))
    batch = churn_frame(9, version="2")  # new values for the 6 ids and 3 new ids
    batch["probability"] = 0.5
    batch.loc[4, "probability"] = 0.95  # the middle row breaks the constraint
    with pytest.raises(SalesmlError, match=r"rolled back.*p_below_09|p_below_09.*rolled back|rolled back"):
        write_score_frame(batch, kind="churn", url=url, table=table, scored_at=T0 + timedelta(hours=1))
    after = read_table(url, table, "customer_id")
    pd.testing.assert_frame_equal(after, before)
    # No staging table is left behind either.
    with engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'salesml_stage_%'")
        ).scalar()
    assert left == 0


@pytest.mark.postgres
def test_postgres_leads_rows_and_an_existing_table_of_another_shape(pg_table) -> None:
    import sqlalchemy as sa

    url, table, engine = pg_table
    assert write_score_frame(leads_frame(), kind="leads", url=url, table=table) == 4
    rows = read_table(url, table, "lead_id")
    assert rows["band"].tolist() == list("ABCD")
    assert rows["expected_value"].to_numpy() == pytest.approx(np.linspace(0.9, 0.1, 4) * 5000.0)
    other = f"{table}_other"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {other} (lead_id text, probability double precision)"))
        with pytest.raises(SalesmlError, match="without column"):
            write_score_frame(leads_frame(), kind="leads", url=url, table=other)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {other}"))


# --- SQLite and input validation (no server needed) --------------------------------------------------------


def test_sqlite_upsert_and_rollback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    assert write_score_frame(leads_frame(), kind="leads", url=url, table="lead_scores", scored_at=T0) == 4
    changed = leads_frame().assign(probability=0.42, model_version="4")
    assert write_score_frame(changed, kind="leads", url=url, table="lead_scores", scored_at=T0) == 4
    rows = read_table(url, "lead_scores", "lead_id")
    assert len(rows) == 4
    assert rows["probability"].tolist() == [0.42] * 4
    assert rows["model_version"].unique().tolist() == ["4"]

    # A trigger that refuses one id stands in for a constraint the CRM enforces; the batch fails as a whole.
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_l2 BEFORE UPDATE ON lead_scores WHEN NEW.lead_id = 'L2' "
            "BEGIN SELECT RAISE(ABORT, 'L2 is locked'); END"
        )
    engine.dispose()
    before = read_table(url, "lead_scores", "lead_id")
    with pytest.raises(SalesmlError, match="L2 is locked"):
        write_score_frame(
            leads_frame(6).assign(model_version="5"), kind="leads", url=url, table="lead_scores"
        )
    pd.testing.assert_frame_equal(read_table(url, "lead_scores", "lead_id"), before)


def test_sqlite_first_write_rolled_back_leaves_no_table(tmp_path: Path) -> None:
    """Table creation is part of the transaction: a failed first write leaves nothing behind."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    frame = crm_rows(leads_frame(), "leads", scored_at=T0)
    frame["reasons"] = [object()] * len(frame)  # the driver cannot bind it
    with pytest.raises(SalesmlError, match="rolled back"):
        write_scores(frame, url, "lead_scores", "lead_id")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    assert not sa.inspect(engine).has_table("lead_scores")
    engine.dispose()


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda f: f.drop(columns=["lead_id"]), {}, "lead_id"),
        (lambda f: f.assign(lead_id=["L0", "L1", "L1", "L3"]), {}, r"repeats 1 id.*L1"),
        (lambda f: f.assign(probability=[0.1, 1.5, 0.2, 0.3]), {}, "0..1"),
        (lambda f: f, {"url": "not a url"}, "not a usable SQLAlchemy URL"),
        (lambda f: f, {"url": "nosuchdb://host/x"}, "not a usable SQLAlchemy URL"),
        (lambda f: f, {"table": "scores; DROP TABLE x"}, "not a plain SQL identifier"),
    ],
)
def test_bad_input_is_named(tmp_path: Path, mutate, kwargs, message) -> None:
    args = {"url": f"sqlite:///{tmp_path / 'crm.db'}", "table": "lead_scores", **kwargs}
    with pytest.raises(SalesmlError, match=message):
        write_score_frame(mutate(leads_frame()), kind="leads", **args)


def test_unreachable_server_is_named() -> None:
    with pytest.raises(SalesmlError, match="could not write scores"):
        write_score_frame(
            leads_frame(), kind="leads", url="postgresql+psycopg://postgres@127.0.0.1:1/none", table="t"
        )


def test_rows_from_the_real_score_frame_builders(tmp_path: Path) -> None:
    """The column names come from the functions that build the score frames, not from a copy of them."""
    from training.churn import churn_output
    from training.leads import _output as lead_output

    feats = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "cutoff": pd.Timestamp("2025-12-31"),
            "revenue_12m": [100.0, 50.0],
            "recency_days": [3.0, 90.0],
        }
    )
    preds = pd.DataFrame(
        {
            "probability": [0.2, 0.7],
            "band": ["low", "high"],
            "reason_1": ["recency_days", "recency_days"],
            "reason_1_contribution": [-0.5, 1.1],
            "reason_1_value": ["3", "90"],
        }
    )
    churn = crm_rows(
        churn_output(feats, preds, dataset="cdnow", model_version="7", horizon_days=90), "churn", scored_at=T0
    )
    assert churn["band"].tolist() == ["low", "high"]
    assert churn["expected_value"].tolist() == pytest.approx([20.0, 35.0])
    assert churn["value"].tolist() == pytest.approx([100.0, 50.0])
    assert churn["as_of"].tolist() == ["2025-12-31"] * 2
    assert churn["model_name"].tolist() == ["churn_risk.cdnow"] * 2
    assert json.loads(churn.loc[1, "reasons"]) == [
        {"feature": "recency_days", "contribution": 1.1, "value": "90"}
    ]

    class Scoring:  # what training.leads._output needs of a scoring model: encode, then score's arrays
        categorical: list[str] = []

        def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
            return frame

        def score(self, encoded: pd.DataFrame) -> dict:
            return {c: v.to_numpy() for c, v in preds.assign(band=["B", "A"]).items()}

    leads = pd.DataFrame(
        {"lead_id": ["L1", "L2"], "decision_at": pd.Timestamp("2025-11-30"), "amount": [1000.0, 10.0]}
    )
    import features.leads as fl

    out = lead_output(
        leads.rename(columns={"decision_at": fl.DECISION_TIME}), Scoring(), "amount", "crm", "4"
    )
    rows = crm_rows(out, "leads", scored_at=T0)
    assert rows["band"].tolist() == ["B", "A"]
    assert rows["expected_value"].tolist() == pytest.approx([200.0, 7.0])
    assert rows["model_name"].tolist() == ["lead_score.crm"] * 2
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    assert write_scores(rows, url, "lead_scores", "lead_id") == 2
    assert read_table(url, "lead_scores", "lead_id")["model_version"].tolist() == ["4", "4"]


def _legacy_churn_table(conn, table: str) -> None:  # noqa: ANN001
    """A churn table as ``--to-sql`` wrote it before the fixed score names."""
    conn.exec_driver_sql(
        f"CREATE TABLE {table} (customer_id TEXT PRIMARY KEY, probability DOUBLE PRECISION, tier TEXT, "
        "reasons TEXT, value_at_risk DOUBLE PRECISION, as_of TEXT, model_name TEXT, model_version TEXT, "
        "scored_at TIMESTAMP WITH TIME ZONE)"
    )
    old = json.dumps([{"factor": "recency_days", "contribution": 0.5, "value": "30"}])
    conn.exec_driver_sql(
        f"INSERT INTO {table} VALUES ('OLD1', 0.3, 'medium', '{old}', 12.5, '2025-06-30', 'churn_risk', '1', "
        "'2025-07-01 00:00:00+00')"
    )


def _check_migrated(url: str, table: str, messages: list[str]) -> None:
    rows = read_table(url, table, "customer_id")
    assert "tier" not in rows.columns and "value_at_risk" not in rows.columns
    old = rows.set_index("customer_id").loc["OLD1"]
    assert (old["band"], old["expected_value"], old["model_version"]) == ("medium", 12.5, "1")
    assert pd.isna(old["value"]) and pd.isna(old["dataset"])  # added, empty for the rows already there
    assert json.loads(old["reasons"]) == [{"feature": "recency_days", "contribution": 0.5, "value": "30"}]
    assert len(rows) == 7 and rows.set_index("customer_id").loc["C000", "band"] == "low"
    assert len(messages) == 1 and "renamed tier -> band, value_at_risk -> expected_value" in messages[0]
    log = read_table(url, "salesml_schema_migrations", "applied_at")
    assert log["table_name"].tolist() == [table] and "tier -> band" in log.loc[0, "description"]
    write_score_frame(churn_frame(), kind="churn", url=url, table=table, on_migrate=messages.append)
    assert len(messages) == 1  # migrated once


def test_sqlite_table_of_the_old_names_is_migrated_in_the_write(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _legacy_churn_table(conn, "churn_scores")
    engine.dispose()
    messages: list[str] = []
    write_score_frame(churn_frame(), kind="churn", url=url, table="churn_scores", on_migrate=messages.append)
    _check_migrated(url, "churn_scores", messages)


@pytest.mark.postgres
def test_postgres_table_of_the_old_names_is_migrated_in_the_write(pg_table) -> None:
    import sqlalchemy as sa

    url, table, engine = pg_table
    with engine.begin() as conn:
        _legacy_churn_table(conn, table)
    messages: list[str] = []
    try:
        write_score_frame(churn_frame(), kind="churn", url=url, table=table, on_migrate=messages.append)
        _check_migrated(url, table, messages)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS salesml_schema_migrations"))
