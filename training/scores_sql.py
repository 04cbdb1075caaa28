"""Scores for the CRM: upsert one row per customer / lead into a SQL table, all or nothing.

* :func:`crm_rows` takes the frames written by ``salesml score churn`` (:func:`training.churn.score_churn`) and
  ``salesml score leads`` (:func:`training.leads.score_leads`), which already carry the fixed names of
  :mod:`training.score_columns`, and checks them into the published row shape (below).
* :func:`write_scores` upserts any frame with a key column into a table through SQLAlchemy, in ONE transaction:
  create the table if absent (key column = primary key), stage the batch in a temporary table, then
  ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE`` (PostgreSQL and SQLite), commit. Any failure rolls the
  whole transaction back, so the previous scores stay exactly as they were.
* :func:`write_score_frame` is the two in one: what ``--to-sql URL --table NAME`` calls.

Row shape (one row per entity; the key is ``customer_id`` for churn, ``lead_id`` for leads), the names of
:mod:`training.score_columns`: ``<key>``, ``probability``, ``band``, ``reasons`` (JSON text), ``value``,
``expected_value``, ``as_of`` (text), ``horizon_days`` (churn), ``dataset``, ``model_name``, ``model_version``,
``scored_at`` (UTC, the same for every row of one batch).

A table written before these names (``tier`` / ``grade``, ``value_at_risk``, reasons with a ``factor`` key) is
migrated inside the same transaction as the write (:func:`_migrate_legacy`): the columns renamed, the new ones
added empty, the reasons rewritten; the migration is recorded in ``salesml_schema_migrations`` and reported.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.errors import SalesmlError
from training import score_columns as sc

__all__ = ["KEYS", "crm_rows", "write_score_frame", "write_scores"]

Kind = Literal["churn", "leads"]
KEYS: dict[str, str] = {"churn": "customer_id", "leads": "lead_id"}
_COLUMNS: dict[str, tuple[str, ...]] = {
    "churn": (*sc.SCORE_COLUMNS[:6], sc.HORIZON_DAYS, *sc.SCORE_COLUMNS[6:]),
    "leads": sc.SCORE_COLUMNS,
}
_OPTIONAL = {sc.VALUE, sc.EXPECTED_VALUE, sc.AS_OF}  # empty when the data set has no value / no clock
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIGRATIONS = "salesml_schema_migrations"
# Old column -> fixed name, for tables written before training/score_columns.py.
_LEGACY_RENAMES = {"tier": sc.BAND, "grade": sc.BAND, "value_at_risk": sc.EXPECTED_VALUE}


def _as_text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        ts = pd.Timestamp(value)
        return f"{ts:%Y-%m-%d}" if ts == ts.normalize() else ts.isoformat()
    return str(value)


def crm_rows(frame: pd.DataFrame, kind: Kind, *, scored_at: datetime | None = None) -> pd.DataFrame:
    """The published CRM rows (see the module docstring) of a churn or lead score frame.

    Args:
        frame: what :func:`training.churn.score_churn` or :func:`training.leads.score_leads` returned.
        kind: ``"churn"`` or ``"leads"``.
        scored_at: the batch time (default: now, UTC).

    Raises:
        SalesmlError: an unknown kind, a missing column, or a probability outside 0..1.
    """
    if kind not in KEYS:
        raise SalesmlError(f"kind must be one of {sorted(KEYS)}, got {kind!r}")
    key = KEYS[kind]
    missing = [c for c in (key, *_COLUMNS[kind]) if c not in frame.columns and c not in _OPTIONAL]
    if missing:
        raise SalesmlError(
            f"the {kind} score frame has no column(s) {missing} (found {list(frame.columns)[:20]}); expected the "
            "names of training/score_columns.py"
        )
    frame = frame.reset_index(drop=True)
    prob = pd.to_numeric(frame[sc.PROBABILITY], errors="coerce").astype(float)
    bad = frame.loc[~prob.between(0.0, 1.0), key]
    if len(bad):
        raise SalesmlError(
            f"probability must lie in 0..1; {len(bad)} row(s) do not, e.g. {key} {bad.astype(str).head(3).tolist()}"
        )
    when = pd.Timestamp(scored_at or datetime.now(UTC))
    when = when.tz_localize(UTC) if when.tzinfo is None else when.tz_convert(UTC)
    out = pd.DataFrame({key: frame[key].astype(str)})
    for col in _COLUMNS[kind]:
        values = frame[col] if col in frame.columns else pd.Series(np.nan, index=frame.index)
        if col == sc.PROBABILITY:
            out[col] = prob
        elif col in (sc.VALUE, sc.EXPECTED_VALUE):
            out[col] = pd.to_numeric(values, errors="coerce").astype(float)
        elif col == sc.HORIZON_DAYS:
            out[col] = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif col == sc.AS_OF:
            out[col] = [_as_text(v) for v in values]
        else:
            out[col] = values.astype(str)
    out[sc.SCORED_AT] = when
    return out


# --- the transactional upsert ----------------------------------------------------------------------------


def _split_table(table: str) -> tuple[str | None, str]:
    parts = table.split(".")
    if len(parts) > 2 or not all(_NAME.match(p) for p in parts):
        raise SalesmlError(
            f"table name {table!r} is not a plain SQL identifier (letters, digits, _; optionally schema.table)"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def _sql_type(series: pd.Series, *, key: bool) -> Any:
    import sqlalchemy as sa

    if key:
        return sa.Text()
    if pd.api.types.is_bool_dtype(series):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(series):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(series):
        return sa.Float(precision=53)
    if pd.api.types.is_datetime64_any_dtype(series):
        return sa.DateTime(timezone=True)
    return sa.Text()


def _engine(url: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy import event

    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as err:
        raise SalesmlError(
            f"--to-sql {url!r} is not a usable SQLAlchemy URL ({err}); expected e.g. "
            "postgresql+psycopg://user@host:5432/db or sqlite:///path/scores.db"
        ) from None
    if engine.dialect.name not in ("postgresql", "sqlite"):
        raise SalesmlError(
            f"--to-sql {url!r}: the {engine.dialect.name} dialect is not supported; use PostgreSQL or SQLite"
        )
    if engine.dialect.name == "sqlite":
        # pysqlite's own transaction handling commits DDL on its own; let SQLAlchemy BEGIN so that table
        # creation, staging and the upsert are one transaction here too (SQLAlchemy's documented recipe).
        @event.listens_for(engine, "connect")
        def _no_implicit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Plain Python values (None for missing) for the DB driver."""
    out = frame.astype(object).where(frame.notna(), None)
    rows = out.to_dict(orient="records")
    for row in rows:
        for k, v in row.items():
            if isinstance(v, np.generic):
                row[k] = v.item()
            elif isinstance(v, pd.Timestamp):
                row[k] = v.to_pydatetime()
    return rows


def write_scores(
    frame: pd.DataFrame,
    url: str,
    table: str,
    key_column: str,
    *,
    on_migrate: Callable[[str], None] | None = None,
) -> int:
    """Upsert the rows of ``frame`` into ``table`` at ``url`` in one transaction; returns the rows written.

    The table is created when absent (``key_column`` as primary key, the other columns typed from the frame).
    An existing table must have ``key_column`` as its primary key and every column of the frame. The batch is
    staged in a temporary table, then upserted with ``INSERT ... ON CONFLICT (key) DO UPDATE``; rows of the
    table that are not in the batch are left alone. Any failure (a constraint violation, a lost connection)
    rolls everything back: the previous scores stay intact. A table of the names from before
    :mod:`training.score_columns` is migrated first, in the same transaction; ``on_migrate`` receives what was
    done.

    Raises:
        SalesmlError: a missing key column, missing or duplicate ids, a bad table name or URL, a table of
            another shape, or a failed write (after the rollback).
    """
    import sqlalchemy as sa

    if key_column not in frame.columns:
        raise SalesmlError(
            f"key column {key_column!r} is not in the score frame (columns: {list(frame.columns)})"
        )
    ids = frame[key_column]
    if ids.isna().any():
        raise SalesmlError(f"key column {key_column!r} has {int(ids.isna().sum())} missing id(s)")
    dup = ids[ids.astype(str).duplicated(keep=False)].astype(str).unique()
    if len(dup):
        raise SalesmlError(
            f"key column {key_column!r} repeats {len(dup)} id(s) in one batch, e.g. {list(dup[:5])}: "
            "one row per id is expected"
        )
    for col in frame.columns:
        if not _NAME.match(str(col)):
            raise SalesmlError(f"column name {col!r} is not a plain SQL identifier")
    schema, name = _split_table(table)
    engine = _engine(url)
    frame = frame.assign(**{key_column: ids.astype(str)})
    meta = sa.MetaData()
    columns = [
        sa.Column(c, _sql_type(frame[c], key=c == key_column), primary_key=c == key_column)
        for c in frame.columns
    ]
    target = sa.Table(name, meta, *columns, schema=schema)
    stage_name = f"salesml_stage_{uuid.uuid4().hex[:12]}"
    stage = sa.Table(
        stage_name,
        sa.MetaData(),
        *[sa.Column(c.name, c.type) for c in columns],
        prefixes=["TEMPORARY"],
        **({"postgresql_on_commit": "DROP"} if engine.dialect.name == "postgresql" else {}),
    )
    rows = _records(frame)
    where = f"{schema + '.' if schema else ''}{name}"
    try:
        with engine.begin() as conn:
            done = _migrate_legacy(conn, target, key_column, where)
            target.create(conn, checkfirst=True)
            _check_existing(conn, target, key_column, where)
            stage.create(conn)
            if rows:
                conn.execute(stage.insert(), rows)
            conn.execute(_upsert(engine.dialect.name, target, stage, key_column))
            stage.drop(conn)
    except SalesmlError:
        raise
    except sa.exc.OperationalError as err:
        raise SalesmlError(
            f"could not write scores to {engine.url.render_as_string(hide_password=True)} table {where}: "
            f"{_first_line(err)}; nothing was changed"
        ) from None
    except sa.exc.DBAPIError as err:
        raise SalesmlError(
            f"writing {len(rows)} score rows to {where} failed and was rolled back (the previous scores are "
            f"intact): {_first_line(err)}"
        ) from None
    finally:
        engine.dispose()
    if done and on_migrate is not None:
        on_migrate(done)
    return len(rows)


def _first_line(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _migrate_legacy(conn: Any, target: Any, key_column: str, where: str) -> str:
    """Rename the columns of a table written before the fixed score names, add the new columns empty, rewrite the
    reasons' ``factor`` key to ``feature``, and record it in ``salesml_schema_migrations``; ``""`` when there was
    nothing to do (no table, or a table of today's names)."""
    import sqlalchemy as sa

    insp = sa.inspect(conn)
    if not insp.has_table(target.name, schema=target.schema):
        return ""
    have = [c["name"] for c in insp.get_columns(target.name, schema=target.schema)]
    renames = {old: new for old, new in _LEGACY_RENAMES.items() if old in have and new not in have}
    if not renames:
        return ""
    quote = conn.dialect.identifier_preparer.quote
    full = f"{quote(target.schema)}.{quote(target.name)}" if target.schema else quote(target.name)
    for old, new in renames.items():
        conn.exec_driver_sql(f"ALTER TABLE {full} RENAME COLUMN {quote(old)} TO {quote(new)}")
    have = [renames.get(c, c) for c in have]
    added = [c for c in target.columns if c.name not in have]
    for col in added:
        kind = col.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {full} ADD COLUMN {quote(col.name)} {kind}")
    rewritten = 0
    if sc.REASONS in have:
        table = sa.Table(target.name, sa.MetaData(), autoload_with=conn, schema=target.schema)
        for key, text in conn.execute(sa.select(table.c[key_column], table.c[sc.REASONS])).all():
            items = sc.reasons_from_json(text)
            if any("factor" in r for r in items):
                fixed = [{"feature": r.pop("factor"), **r} if "factor" in r else r for r in items]
                conn.execute(
                    table.update().where(table.c[key_column] == key).values({sc.REASONS: json.dumps(fixed)})
                )
                rewritten += 1
    what = (
        f"migrated table {where} to the fixed score names: renamed "
        + ", ".join(f"{o} -> {n}" for o, n in renames.items())
        + (f"; added {', '.join(c.name for c in added)} (empty for the rows already there)" if added else "")
        + f"; reasons of {rewritten} row(s) rewritten from 'factor' to 'feature'"
    )
    log = sa.Table(
        _MIGRATIONS,
        sa.MetaData(),
        sa.Column("table_name", sa.Text()),
        sa.Column("applied_at", sa.DateTime(timezone=True)),
        sa.Column("description", sa.Text()),
        schema=target.schema,
    )
    log.create(conn, checkfirst=True)
    conn.execute(log.insert().values(table_name=where, applied_at=datetime.now(UTC), description=what))
    return what


def _check_existing(conn: Any, target: Any, key_column: str, where: str) -> None:
    import sqlalchemy as sa

    insp = sa.inspect(conn)
    have = {c["name"] for c in insp.get_columns(target.name, schema=target.schema)}
    missing = [c.name for c in target.columns if c.name not in have]
    if missing:
        raise SalesmlError(
            f"table {where} exists without column(s) {missing}; drop it or write to another --table"
        )
    pk = insp.get_pk_constraint(target.name, schema=target.schema).get("constrained_columns") or []
    if pk != [key_column]:
        raise SalesmlError(
            f"table {where} has primary key {pk or 'none'}, not ({key_column}); an upsert needs {key_column} as "
            "its primary key: drop it or write to another --table"
        )


def _upsert(dialect: str, target: Any, stage: Any, key_column: str) -> Any:
    import sqlalchemy as sa

    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    cols = [c.name for c in target.columns]
    # ``WHERE true``: SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT without ambiguity.
    select = sa.select(*[stage.c[c] for c in cols]).where(sa.true())
    stmt = insert(target).from_select(cols, select)
    return stmt.on_conflict_do_update(
        index_elements=[key_column],
        set_={c: stmt.excluded[c] for c in cols if c != key_column},
    )


def write_score_frame(
    frame: pd.DataFrame,
    *,
    kind: Kind,
    url: str,
    table: str,
    scored_at: datetime | None = None,
    on_migrate: Callable[[str], None] | None = None,
) -> int:
    """Publish a ``salesml score churn|leads`` frame to the CRM table (see :func:`crm_rows`, :func:`write_scores`).

    Returns the number of rows upserted.
    """
    rows = crm_rows(frame, kind, scored_at=scored_at)
    return write_scores(rows, url, table, KEYS[kind], on_migrate=on_migrate)
