"""A spec whose tables live in PostgreSQL gives the same frames as the file spec."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.load import load_dataset
from features.spec import BUILTIN_SPEC_DIR, SpecError
from tests.conftest import pg_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema(pg_engine):
    import sqlalchemy as sa

    schema = f"salesml_test_{uuid.uuid4().hex[:8]}"
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield pg_engine, schema, pg_url(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def _to_sql_spec(name: str, schema: str, tmp_path: Path, *, query_table: str | None = None) -> Path:
    """The built-in spec with every file source replaced by a SQL table of the same name."""
    spec = yaml.safe_load((BUILTIN_SPEC_DIR / f"{name}.yaml").read_text())
    for tname, table in spec["tables"].items():
        stem = Path(table.pop("path")).name.split(".")[0]
        table.pop("read", None)
        if tname == query_table:
            table["sql"] = {"url": "${SALESML_TEST_PG_URL}", "query": f'SELECT * FROM "{schema}"."{stem}"'}
        else:
            table["sql"] = {"url": "${SALESML_TEST_PG_URL}", "table": f"{schema}.{stem}"}
    path = tmp_path / f"{name}-sql.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_crm_from_postgres_equals_crm_from_files(
    shared_data: Path, pg_schema, tmp_path: Path, monkeypatch
) -> None:
    engine, schema, url = pg_schema
    folder = shared_data / "crm_sales_opportunities"
    for csv in ("sales_pipeline", "accounts", "products", "sales_teams"):
        # Load the public file into the database as a DBA would: typed columns, dates as DATE.
        frame = pd.read_csv(
            folder / f"{csv}.csv",
            parse_dates=[c for c in ("engage_date", "close_date") if csv == "sales_pipeline"],
        )
        frame.to_sql(csv, engine, schema=schema, index=False)
    monkeypatch.setenv("SALESML_TEST_PG_URL", url)
    from_files = load_dataset("crm")
    from_sql = load_dataset(_to_sql_spec("crm", schema, tmp_path, query_table="accounts"))
    assert from_sql.tables.keys() == from_files.tables.keys()
    for name, expected in from_files.tables.items():
        # SQL promises no row order; compare rows by their key.
        key = list(expected.columns[:1])
        got = from_sql.tables[name].sort_values(key).reset_index(drop=True)
        expected = expected.sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(
            got.astype(object).where(got.notna(), None),
            expected.astype(object).where(expected.notna(), None),
            check_dtype=False,
            obj=f"table {name}",
        )


def test_missing_sql_table_is_a_clear_error(pg_schema, tmp_path: Path, monkeypatch) -> None:
    _, schema, url = pg_schema
    monkeypatch.setenv("SALESML_TEST_PG_URL", url)
    with pytest.raises(SpecError, match=rf"SQL table '{schema}.sales_pipeline' does not exist"):
        load_dataset(_to_sql_spec("crm", schema, tmp_path))


def test_unset_url_variable_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SALESML_TEST_PG_URL", raising=False)
    with pytest.raises(SpecError, match=r"\$\{SALESML_TEST_PG_URL\} but the environment variable"):
        load_dataset(_to_sql_spec("telco", "public", tmp_path))
