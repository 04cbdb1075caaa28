"""``salesml score churn|leads --to-sql URL --table NAME`` publishes the scores for the CRM."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import pg_url, run_cli

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_table(pg_engine):
    import sqlalchemy as sa

    name = f"crm_scores_{uuid.uuid4().hex[:8]}"
    yield pg_engine, pg_url(pg_engine), name
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))


@pytest.mark.parametrize(("kind", "key"), [("churn", "customer_id"), ("leads", "lead_id")])
def test_score_to_sql_upserts_one_row_per_entity(
    trained_home: Path, small_synthetic_spec: Path, pg_table, kind: str, key: str
) -> None:
    import pandas as pd

    engine, url, table = pg_table
    env = {"SALESML_HOME": str(trained_home)}
    out = trained_home / f"{kind}-scores.parquet"
    first = run_cli(
        "score",
        kind,
        "--dataset",
        str(small_synthetic_spec),
        "--to-sql",
        url,
        "--table",
        table,
        "--out",
        str(out),
        env=env,
    )
    assert first.returncode == 0, first.stderr
    again = run_cli(
        "score", kind, "--dataset", str(small_synthetic_spec), "--to-sql", url, "--table", table, env=env
    )
    assert again.returncode == 0, again.stderr
    rows = pd.read_sql_table(table, engine)
    scores = pd.read_parquet(out)
    assert len(rows) == len(scores) == rows[key].nunique()
    assert set(rows[key]) == set(scores[key].astype(str))
    assert {"probability", "reasons", "model_name", "model_version", "scored_at"} <= set(rows.columns)
    assert rows["probability"].between(0, 1).all()


def test_to_sql_needs_a_table(trained_home: Path, small_synthetic_spec: Path) -> None:
    r = run_cli(
        "score",
        "leads",
        "--dataset",
        str(small_synthetic_spec),
        "--to-sql",
        "sqlite:///x.db",
        env={"SALESML_HOME": str(trained_home)},
    )
    assert r.returncode == 2 and "--to-sql and --table go together" in r.stderr
