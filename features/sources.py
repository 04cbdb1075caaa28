"""Reading one table's source as it is: a CSV or Parquet file, a folder or glob of Parquet files (hive
partitions allowed), or a SQL table or query. :mod:`features.load` then renames, checks and types it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from features.spec import SpecError, TableSpec

__all__ = ["is_parted", "parquet_parts", "parquet_rows", "read_parquet_part", "read_source"]

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
    if is_parted(table, root):
        return _read_parquet_parts(table, root, name)
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


def is_parted(table: TableSpec, root: Path) -> bool:
    """Whether ``table``'s source is a folder or glob of Parquet parts (not one file, not SQL)."""
    if table.path is None:
        return False
    path = Path(table.path)
    return any(ch in table.path for ch in "*?[") or (path if path.is_absolute() else root / path).is_dir()


def parquet_parts(table: TableSpec, root: Path, name: str = "") -> tuple[Path, list[Path]]:
    """The folder a partitioned source's hive keys are relative to, and its ``.parquet`` parts in path order.

    A folder is searched recursively; a glob such as ``orders/*.parquet`` matches below the folder before its
    first wildcard.

    Raises:
        SpecError: no part found.
    """
    what = f"table {name!r}: " if name else ""
    assert table.path is not None
    path = Path(table.path)
    if not path.is_absolute():
        path = root / path
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
    return base, files


def parquet_rows(file: Path, name: str = "") -> int:
    """A Parquet file's row count, from its footer. Raises SpecError naming the file when it is not Parquet."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(file).metadata.num_rows)
    except _UNREADABLE as err:
        what = f"table {name!r}: " if name else ""
        raise SpecError(f"{what}cannot read {file} as Parquet: {type(err).__name__}: {err}") from err


def read_parquet_part(
    file: Path, base: Path, table: TableSpec, name: str = "", *, mapped_only: bool = False
) -> pd.DataFrame:
    """One part of a partitioned source, with its hive keys (``key=value`` folders between ``base`` and the file)
    as text columns and the spec's ``na_values`` applied. ``mapped_only``: read only the columns the spec maps
    (what a worker needs), not every column of the file.

    Raises:
        SpecError: the file is not readable Parquet.
    """
    what = f"table {name!r}: " if name else ""
    rel = file.parent.relative_to(base) if file.is_relative_to(base) else Path()
    hive = {k: v for k, eq, v in (part.partition("=") for part in rel.parts) if eq}
    try:
        columns = None
        if mapped_only:
            import pyarrow.parquet as pq

            present = set(pq.read_schema(file).names)
            columns = [c for c in dict.fromkeys(table.columns.values()) if c in present]
        frame = pd.read_parquet(file, columns=columns)
    except _UNREADABLE as err:
        raise SpecError(f"{what}cannot read {file} as Parquet: {type(err).__name__}: {err}") from err
    for key, value in hive.items():
        if key not in frame.columns:
            frame[key] = value
    if table.read.na_values:
        frame = frame.replace(table.read.na_values, np.nan)
    return frame


def _read_parquet_parts(table: TableSpec, root: Path, name: str) -> pd.DataFrame:
    """A table stored as many Parquet files (:func:`parquet_parts`), read in the order of their paths; the parts
    must share their columns."""
    base, files = parquet_parts(table, root, name)
    what = f"table {name!r}: " if name else ""
    frames: list[pd.DataFrame] = []
    for file in files:
        frame = read_parquet_part(file, base, table, name)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise SpecError(
                f"{what}the parts of {base} differ in their columns: {files[0].name} has "
                f"{list(frames[0].columns)}, {file} has {list(frame.columns)}"
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
