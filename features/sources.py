"""Reading one table's source as it is: a CSV or Parquet file, a folder or glob of Parquet files (hive
partitions allowed), or a SQL table or query. :mod:`features.load` then renames, checks and types it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from features.spec import SpecError, TableSpec

__all__ = ["read_source"]

_UNREADABLE = (OSError, ValueError, LookupError, re.error, pd.errors.ParserError, pd.errors.EmptyDataError)


def read_source(table: TableSpec, root: Path, name: str = "") -> pd.DataFrame:
    """Read only the mapped source columns. Raises SpecError for I/O problems, naming the table and source."""
    what = f"table {name!r}: " if name else ""
    if table.sql is not None:
        import sqlalchemy as sa

        try:
            url = sa.engine.make_url(table.sql.resolved_url())
        except sa.exc.ArgumentError as err:
            raise SpecError(
                f"{what}sql.url is not a database URL (dialect://user@host/database): {err}"
            ) from err
        file_db = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if file_db and not Path(str(url.database)).is_file():  # SQLite would create it: sources are only read
            raise SpecError(f"{what}SQLite database file {url.database} does not exist (sql.url {url!r})")
        try:
            engine = sa.create_engine(url)
        except sa.exc.SQLAlchemyError as err:  # e.g. an unknown dialect or a driver that is not installed
            raise SpecError(f"{what}cannot use sql.url {url!r}: {err}") from err
        try:
            with engine.connect() as conn:
                if table.sql.table is not None:
                    insp = sa.inspect(conn)
                    schema, _, name = table.sql.table.rpartition(".")
                    if not insp.has_table(name, schema=schema or None):
                        raise SpecError(f"SQL table {table.sql.table!r} does not exist at {engine.url!r}")
                    frame = pd.read_sql_table(name, conn, schema=schema or None)
                else:
                    frame = pd.read_sql_query(sa.text(table.sql.query), conn)
        except sa.exc.SQLAlchemyError as err:
            raise SpecError(f"{what}cannot read {table.source_label()} at {engine.url!r}: {err}") from err
        finally:
            engine.dispose()
        return frame
    assert table.path is not None
    path = Path(table.path)
    if not path.is_absolute():
        path = root / path
    if any(ch in table.path for ch in "*?[") or path.is_dir():
        return _read_parquet_parts(path, table, what)
    if not path.exists():
        raise SpecError(f"{what}source file {path} does not exist (data root {root}; set SALESML_DATA_DIR)")
    if not path.is_file():
        raise SpecError(f"{what}source {path} is not a file (path: {table.path!r} in the spec)")
    opts = table.read
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            dtype = dict.fromkeys(opts.dtype_str, str)
            frame = pd.read_csv(
                path,
                sep=opts.sep,
                encoding=opts.encoding,
                decimal=opts.decimal,
                na_values=opts.na_values or None,
                keep_default_na=opts.keep_default_na,
                dtype=dtype or None,
                engine="python" if len(opts.sep) > 1 else "c",
                skipinitialspace=opts.strip_whitespace,
            )
    except _UNREADABLE as err:
        kind = (
            "Parquet"
            if path.suffix == ".parquet"
            else f"CSV (read: sep {opts.sep!r}, encoding {opts.encoding!r})"
        )
        raise SpecError(f"{what}cannot read {path} as {kind}: {type(err).__name__}: {err}") from err
    if opts.drop_unnamed_columns:
        empty = [c for c in frame.columns if str(c).startswith("Unnamed:") and frame[c].isna().all()]
        frame = frame.drop(columns=empty)
    if opts.strip_whitespace:
        for col in frame.select_dtypes(include="object").columns:
            stripped = frame[col].str.strip()
            frame[col] = stripped.mask(stripped == "")
    if path.suffix == ".parquet" and opts.na_values:
        frame = frame.replace(opts.na_values, np.nan)
    return frame


def _read_parquet_parts(path: Path, table: TableSpec, what: str) -> pd.DataFrame:
    """A table stored as many Parquet files: a folder (read recursively; ``key=value`` folders are hive
    partitions and give the column ``key`` to their files' rows, as text) or a glob such as ``orders/*.parquet``.
    The parts are read in the order of their paths and must share their columns."""
    if path.is_dir():
        base, files = path, sorted(p for p in path.rglob("*.parquet") if p.is_file())
    else:  # the folder before the first part with a wildcard holds the pattern
        first = next(i for i, part in enumerate(path.parts) if any(ch in part for ch in "*?["))
        base = Path(*path.parts[:first])
        files = sorted(p for p in base.glob(str(Path(*path.parts[first:]))) if p.is_file())
    if not files:
        raise SpecError(
            f"{what}no Parquet file in {path} (path: {table.path!r} in the spec; a folder or a glob as a source "
            "holds the table's .parquet parts)"
        )
    frames = []
    for file in files:
        try:
            frame = pd.read_parquet(file)
        except _UNREADABLE as err:
            raise SpecError(f"{what}cannot read {file} as Parquet: {type(err).__name__}: {err}") from err
        rel = file.parent.relative_to(base) if file.is_relative_to(base) else Path()
        for part in rel.parts:
            key, eq, value = part.partition("=")
            if eq and key not in frame.columns:
                frame[key] = value
        if frames and list(frame.columns) != list(frames[0].columns):
            raise SpecError(
                f"{what}the parts of {path} differ in their columns: {files[0].name} has "
                f"{list(frames[0].columns)}, {file} has {list(frame.columns)}"
            )
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if table.read.na_values:
        frame = frame.replace(table.read.na_values, np.nan)
    return frame
