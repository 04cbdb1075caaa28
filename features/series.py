"""Sales facts -> hierarchical time series: one long frame ``unique_id, ds, y`` for every node of every hierarchy.

Nodes are named by their path, level by level: ``total``, ``store_type=A``, ``store_type=A/store=1``,
``store_type=A/store=1/dept=7``. With several hierarchies (``region > manager > rep`` and ``series > product``)
the bottom is their cross product (``region=.../rep=R|series=S/product=P``) and every level of every hierarchy
is an aggregate of it, so one summing matrix ``S`` (nodes x bottom) describes the whole structure.

The grid is the spec's ``forecast.frequency``. Every bottom series runs over the whole grid: a period without
sales is an explicit zero (``forecast.fill_gaps_with_zero``), never a dropped period. A first or last period
that the raw data covers only in part (daily orders, weekly grid) is dropped, so no period is a partial sum.

Exogenous columns are split by their declared kind: ``known_ahead`` (one value per period, usable for future
periods), ``past_only`` (one value per period, usable only lagged) and ``static`` (one value per node).
Period-level exogenous values are averaged over the rows of a period (stores, keys).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.distributed import current_client, gather
from features.errors import SalesmlError
from features.load import Dataset, check_levels, join_lookups, lookups_only, sales_facts
from features.spec import ExogenousKind, Role

__all__ = [
    "BOTTOM",
    "TOTAL",
    "HierarchicalSeries",
    "build_series",
    "period_labels",
    "periods_per_quarter",
    "resolve_frequency",
    "validate_long_frame",
]

TOTAL = "total"
BOTTOM = "bottom"
_SEP_LEVEL, _SEP_HIER = "/", "|"


@dataclass
class HierarchicalSeries:
    """Every node's series plus the structure that ties them together.

    Attributes:
        Y: long frame ``unique_id, ds, y`` for every node (aggregates and bottom), sorted by id and date.
        nodes: one row per node: ``unique_id, level, hierarchy, depth, parent, is_bottom`` (in ``S`` order).
        S: summing matrix as a frame ``unique_id`` + one column per bottom node (hierarchicalforecast format).
        tags: level name -> node ids of that level, coarse to fine (hierarchicalforecast format).
        bottom_level: the name of the bottom level in ``tags``.
        freq: the pandas offset alias of the grid.
        season_length: periods per year (or the spec's value).
        known_ahead: ``ds`` + known-ahead columns (may run past the last sales period), or empty.
        past_only: ``ds`` + past-only columns, or empty.
        static: ``unique_id`` + static columns (numeric; categories as codes).
        nonnegative: whether bottom sales are (essentially) never negative.
    """

    Y: pd.DataFrame
    nodes: pd.DataFrame
    S: pd.DataFrame
    tags: dict[str, np.ndarray]
    bottom_level: str
    freq: str
    season_length: int
    known_ahead: pd.DataFrame = field(default_factory=pd.DataFrame)
    past_only: pd.DataFrame = field(default_factory=pd.DataFrame)
    static: pd.DataFrame = field(default_factory=pd.DataFrame)
    nonnegative: bool = True
    hierarchies: list[list[str]] = field(default_factory=list)

    @property
    def end(self) -> pd.Timestamp:
        """The last period with data (the data cut-off)."""
        return pd.Timestamp(self.Y["ds"].max())

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.Y["ds"].min())

    @property
    def levels(self) -> list[str]:
        return list(self.tags)

    @property
    def bottom_ids(self) -> list[str]:
        return [c for c in self.S.columns if c != "unique_id"]

    def level_of(self) -> pd.Series:
        """unique_id -> level name."""
        return self.nodes.set_index("unique_id")["level"]

    def truncate(self, cutoff: pd.Timestamp) -> pd.DataFrame:
        """The long frame up to and including ``cutoff`` (what a forecaster at that date can see)."""
        return self.Y[self.Y["ds"] <= cutoff].reset_index(drop=True)


def resolve_frequency(freq: str) -> pd.DateOffset:
    """The pandas offset of a frequency alias; SalesmlError names the value when it does not parse."""
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except ValueError as err:
        raise SalesmlError(
            f"forecast.frequency {freq!r} is not a pandas offset alias (expected e.g. W-FRI, W-SUN, MS)"
        ) from err


def _default_season(freq: str) -> int:
    base = resolve_frequency(freq).name.split("-")[0]
    return {"W": 52, "MS": 12, "ME": 12, "M": 12, "D": 7, "QS": 4, "QE": 4}.get(base, 1)


def periods_per_quarter(freq: str) -> int:
    """Grid periods in one calendar quarter (13 weeks, 3 months, 91 days)."""
    base = resolve_frequency(freq).name.split("-")[0]
    return {"W": 13, "MS": 3, "ME": 3, "M": 3, "D": 91}.get(base, 1)


def period_labels(times: pd.Series, freq: str) -> pd.Series:
    """Map timestamps to the label of their grid period, matching ``pd.date_range(freq=freq)``.

    Week ``W-XXX`` periods are labelled by their last day, ``MS`` months by their first day, ``ME`` by their
    last day, days by themselves.
    """
    offset = resolve_frequency(freq)
    name = offset.name
    t = pd.to_datetime(times).dt.normalize()
    if name.startswith("W"):
        return t.dt.to_period(name).dt.end_time.dt.normalize()
    if name == "MS":
        return t.dt.to_period("M").dt.start_time
    if name in {"ME", "M"}:
        return t.dt.to_period("M").dt.end_time.dt.normalize()
    if name == "D":
        return t
    raise SalesmlError(f"forecast.frequency {freq!r}: salesml forecasts at day, week (W-XXX) or month grain")


def _period_bounds(label: pd.Timestamp, freq: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    name = resolve_frequency(freq).name
    if name.startswith("W"):
        return label - pd.Timedelta(days=6), label
    if name == "MS":
        return label, label + pd.offsets.MonthEnd(0)
    if name in {"ME", "M"}:
        return label - pd.offsets.MonthBegin(1), label
    return label, label


def validate_long_frame(
    df: pd.DataFrame, *, id_col: str = "unique_id", time_col: str = "ds", target_col: str = "y"
) -> None:
    """The long-frame contract every forecasting entry point checks: columns, types, no duplicate keys."""
    missing = [c for c in (id_col, time_col, target_col) if c not in df.columns]
    if missing:
        raise SalesmlError(
            f"series frame lacks column(s) {missing}; expected {id_col}, {time_col}, {target_col}"
        )
    if not pd.api.types.is_datetime64_any_dtype(df[time_col]):
        raise SalesmlError(f"series column {time_col!r} must be datetime, found {df[time_col].dtype}")
    if not pd.api.types.is_numeric_dtype(df[target_col]):
        raise SalesmlError(f"series column {target_col!r} must be numeric, found {df[target_col].dtype}")
    if df[target_col].isna().any():
        raise SalesmlError(
            f"series column {target_col!r} has {int(df[target_col].isna().sum())} missing value(s)"
        )
    dup = df.duplicated([id_col, time_col])
    if dup.any():
        raise SalesmlError(f"series frame has {int(dup.sum())} duplicate ({id_col}, {time_col}) rows")


def node_paths(frame: pd.DataFrame, levels: list[str], depth: int) -> pd.Series:
    """Each row's node id at ``depth`` of the hierarchy ``levels``: ``region=North/manager=M01``."""
    parts = [f"{lvl}=" + frame[lvl].astype(str) for lvl in levels[:depth]]
    out = parts[0]
    for p in parts[1:]:
        out = out + _SEP_LEVEL + p
    return out


ROWS = "_rows"  # order lines behind a row of facts summed on a cluster (features.parted.read_parts)


def _mean_by(values: pd.DataFrame, by: pd.Series, rows: pd.Series | None) -> pd.DataFrame:
    """The mean of each column per ``by`` value (NaN left out), each row counted ``rows`` times (once if None)."""
    if rows is None:
        return values.groupby(by.to_numpy()).mean().rename_axis(by.name)
    w = pd.DataFrame(np.where(values.notna(), rows.to_numpy()[:, None], 0.0), columns=values.columns)
    sums = (values.fillna(0.0).reset_index(drop=True) * w).groupby(by.to_numpy()).sum()
    return (sums / w.groupby(by.to_numpy()).sum().replace(0.0, np.nan)).rename_axis(by.name)


def summed_facts(part: pd.DataFrame, *, lookups: Dataset, columns: list[str]) -> list[pd.DataFrame]:
    """One part of the order lines as the sales facts :func:`build_series` reads: joined to the lookups, then
    summed per distinct ``columns`` (time, hierarchy levels, exogenous columns of the facts) with the count of
    lines behind each row (``_rows``, for the exogenous means)."""
    facts = join_lookups(part, lookups)
    keys = [c for c in columns if c in facts.columns]
    summed = facts.groupby(keys, dropna=False, sort=False, observed=True)["amount"].agg(["sum", "size"])
    return [summed.rename(columns={"sum": "amount", "size": ROWS}).reset_index()]


def _facts_on_cluster(dataset: Dataset, name: str, client: Any) -> pd.DataFrame:
    """The sales facts of a partitioned order table, read, checked and summed part by part on the workers."""
    from features.parted import read_parts

    spec = dataset.spec
    levels = [lvl for h in spec.hierarchies for lvl in h]
    exog = [c for c in spec.exogenous if c not in levels]
    columns = ["time", *levels, *exog]
    lookups = lookups_only(dataset)
    table = spec.tables[name]
    joins = {t.key for t in spec.tables.values() if t.role is Role.lookup and t.key}
    canonical = [*table.columns, *table.multiply]
    read = ["time", "amount", *[c for c in canonical if c in levels or c in exog or c in joins]]
    split = functools.partial(summed_facts, lookups=lookups, columns=columns)
    parts = read_parts(client, dataset, name, read, split=split, n_pieces=1)
    pieces = [p for p in gather(client, parts.pieces[0]) if len(p)]
    if not pieces:
        return pd.DataFrame(columns=columns + ["amount", ROWS])
    summed = pd.concat(pieces, ignore_index=True)
    keys = [c for c in columns if c in summed.columns]
    summed = summed.astype({c: object for c in parts.text if c in summed.columns})
    facts = summed.groupby(keys, dropna=False, sort=True, observed=True)[["amount", ROWS]].sum().reset_index()
    check_levels(facts, dataset, rows=facts[ROWS])
    return facts


def _period_exog(facts: pd.DataFrame, dataset: Dataset, freq: str, kind: ExogenousKind) -> pd.DataFrame:
    """Period-level values of exogenous columns of one kind (mean over rows of a period), ``ds`` + columns."""
    cols = [c for c, k in dataset.spec.exogenous.items() if k is kind]
    pieces: list[pd.DataFrame] = []
    in_facts = [c for c in cols if c in facts.columns]
    if in_facts:
        f = facts[["time", *in_facts]].astype({c: float for c in in_facts})
        pieces.append(_mean_by(f[in_facts], period_labels(f["time"], freq).rename("ds"), facts.get(ROWS)))
    for name, table in dataset.spec.tables.items():
        if table.role is not Role.exogenous:
            continue
        here = [c for c in cols if c in table.columns and c not in in_facts]
        if not here:
            continue
        t = dataset.tables[name][["time", *here]].copy()
        t["ds"] = period_labels(t["time"], freq)
        pieces.append(t.drop(columns="time").astype({c: float for c in here}).groupby("ds").mean())
    if not pieces:
        return pd.DataFrame(columns=["ds"])
    out = pd.concat(pieces, axis=1).sort_index()
    return out.reset_index()


def _static(
    facts: pd.DataFrame, dataset: Dataset, nodes: pd.DataFrame, keys: dict[str, pd.Series]
) -> pd.DataFrame:
    """One value per node for each static column: the node's value if constant, else the mean / 'mixed'."""
    cols = [c for c, k in dataset.spec.exogenous.items() if k is ExogenousKind.static and c in facts.columns]
    out = pd.DataFrame({"unique_id": nodes["unique_id"]})
    for col in cols:
        values: dict[str, object] = {}
        numeric = pd.api.types.is_numeric_dtype(facts[col])
        for level_ids in keys.values():
            frame = pd.DataFrame({"unique_id": level_ids.values, "v": facts[col].values})
            if numeric:
                by = pd.Series(level_ids.values, name="unique_id")
                values.update(_mean_by(frame[["v"]], by, facts.get(ROWS))["v"].to_dict())
            else:
                grouped = frame.groupby("unique_id")["v"]
                first = grouped.first()
                constant = grouped.nunique() == 1
                values.update(first.where(constant, "mixed").astype(str).to_dict())
        series = out["unique_id"].map(values)
        if not numeric:
            series = series.fillna("mixed").astype("category").cat.codes.astype(float)
        out[col] = series.astype(float)
    return out


def build_series(dataset: Dataset, *, as_of: pd.Timestamp | None = None) -> HierarchicalSeries:
    """Every node of every hierarchy of ``dataset`` as a long frame, with the summing structure.

    Args:
        dataset: a loaded data set with a transactions table and a ``forecast:`` section in its spec.
        as_of: the last day whose sales are known (``salesml train sales --as-of``): later sales are left out
            and a period that runs past it is partial, so it is dropped. Default: the end of the data.

    Returns:
        The series, nodes, summing matrix, tags and exogenous frames.

    Raises:
        SalesmlError: no forecast settings, a frequency that does not parse, no gap filling, or no data.
    """
    spec = dataset.spec
    if spec.forecast is None:
        raise SalesmlError(
            f"spec {dataset.spec_path} has no 'forecast:' section; add forecast: {{frequency: W-FRI}} (or MS)"
        )
    freq = spec.forecast.frequency
    resolve_frequency(freq)
    if not spec.forecast.fill_gaps_with_zero:
        raise SalesmlError(
            "forecast.fill_gaps_with_zero is false, but the forecaster needs a regular grid; "
            "set it to true (a period without sales is a zero)"
        )
    tx = spec.table_of(Role.transactions)
    # A partitioned order table left on disk for a cluster: load_dataset(defer_parted=True).
    if tx is not None and tx[0] in dataset.parted:
        client = current_client()
        if client is None:
            raise SalesmlError(
                f"table {tx[0]!r} of data set {dataset.name!r} was loaded for a Dask cluster; build the series "
                "inside features.distributed.using(client)"
            )
        facts = _facts_on_cluster(dataset, tx[0], client)
    else:
        facts = sales_facts(dataset)
    if facts.empty:
        raise SalesmlError(f"data set {dataset.name!r} has no sales facts to forecast")
    if as_of is not None:
        facts = facts[facts["time"] < as_of + pd.Timedelta(days=1)]
        if facts.empty:
            raise SalesmlError(
                f"data set {dataset.name!r} has no sales on or before --as-of {as_of:%Y-%m-%d}"
            )
    facts = facts.reset_index(drop=True)
    facts["ds"] = period_labels(facts["time"], freq)

    # Drop a first / last period the raw data covers only in part.
    first, last = facts["ds"].min(), facts["ds"].max()
    lo, _ = _period_bounds(first, freq)
    _, hi = _period_bounds(last, freq)
    tmin, tmax = facts["time"].min().normalize(), facts["time"].max().normalize()
    keep = pd.Series(True, index=facts.index)
    on_grid = bool((facts["time"].dt.normalize() == facts["ds"]).all())  # already one row per period label
    if tmin > lo and not on_grid:
        keep &= facts["ds"] != first
    if tmax < hi and not on_grid:
        keep &= facts["ds"] != last
    if as_of is not None and hi > as_of:  # the last period runs past what is known, grid data or not
        keep &= facts["ds"] != last
    facts = facts[keep].reset_index(drop=True)
    if facts.empty:
        raise SalesmlError(f"data set {dataset.name!r} covers less than one full {freq} period")

    hierarchies = [list(h) for h in spec.hierarchies]
    # Node id of every fact row at every level.
    keys: dict[str, pd.Series] = {TOTAL: pd.Series(TOTAL, index=facts.index)}
    for levels in hierarchies:
        for d, level in enumerate(levels, start=1):
            if level in keys:
                raise SalesmlError(f"hierarchy level {level!r} appears in more than one hierarchy")
            keys[level] = node_paths(facts, levels, d)
    if len(hierarchies) == 1:
        bottom_level = hierarchies[0][-1]
        bottom_key = keys[bottom_level]
    elif hierarchies:
        bottom_level = BOTTOM
        bottom_key = keys[hierarchies[0][-1]]
        for levels in hierarchies[1:]:
            bottom_key = bottom_key + _SEP_HIER + keys[levels[-1]]
        keys[BOTTOM] = bottom_key
    else:
        bottom_level = TOTAL
        bottom_key = keys[TOTAL]

    grid = pd.date_range(facts["ds"].min(), facts["ds"].max(), freq=freq)
    if len(grid) != facts["ds"].nunique() and not set(facts["ds"]).issubset(set(grid)):
        raise SalesmlError(f"period labels do not fall on the {freq} grid; check forecast.frequency")

    # Bottom matrix (n_bottom x n_periods), zeros where nothing was sold.
    bottom = (
        pd.DataFrame(
            {"unique_id": bottom_key.values, "ds": facts["ds"].values, "y": facts["amount"].astype(float)}
        )
        .groupby(["unique_id", "ds"], sort=True)["y"]
        .sum()
        .unstack("ds")
        .reindex(columns=grid)
        .fillna(0.0)
    )
    bottom_ids = bottom.index.astype(str).tolist()
    bottom_pos = {b: i for i, b in enumerate(bottom_ids)}
    fact_bottom = bottom_key.map(bottom_pos).to_numpy()

    # Nodes in S order: total, then each hierarchy's levels coarse to fine, the bottom last.
    node_frames: list[pd.DataFrame] = []
    rows_S: list[np.ndarray] = []
    tags: dict[str, np.ndarray] = {}
    order = [(TOTAL, -1, 0, None)]
    for h, levels in enumerate(hierarchies):
        for d, level in enumerate(levels, start=1):
            parent_level = TOTAL if d == 1 else levels[d - 2]
            if level == bottom_level:
                continue
            order.append((level, h, d, parent_level))
    if bottom_level != TOTAL:
        if len(hierarchies) > 1:
            parent_level = hierarchies[0][-1]
        else:
            parent_level = hierarchies[0][-2] if len(hierarchies[0]) > 1 else TOTAL
        order.append((bottom_level, 0 if len(hierarchies) == 1 else -1, len(hierarchies[0]), parent_level))

    for level, h, d, parent_level in order:
        ids = keys[level]
        pairs = pd.DataFrame({"node": ids.values, "b": fact_bottom}).drop_duplicates()
        uniq = np.sort(pairs["node"].unique())
        pos = {n: i for i, n in enumerate(uniq)}
        mat = np.zeros((len(uniq), len(bottom_ids)), dtype=np.float32)
        mat[pairs["node"].map(pos).to_numpy(), pairs["b"].to_numpy()] = 1.0
        if level == bottom_level:
            uniq = np.array(bottom_ids)
            mat = np.eye(len(bottom_ids), dtype=np.float32)
        rows_S.append(mat)
        tags[level] = uniq.astype(object)
        if parent_level is None:
            parents = [None] * len(uniq)
        else:
            link = pd.DataFrame({"node": ids.values, "parent": keys[parent_level].values}).drop_duplicates(
                "node"
            )
            parents = link.set_index("node")["parent"].reindex(uniq).tolist()
        node_frames.append(
            pd.DataFrame(
                {
                    "unique_id": uniq,
                    "level": level,
                    "hierarchy": h,
                    "depth": d,
                    "parent": parents,
                    "is_bottom": level == bottom_level,
                }
            )
        )
    nodes = pd.concat(node_frames, ignore_index=True)
    S_mat = np.vstack(rows_S)
    values = S_mat.astype(np.float64) @ bottom.to_numpy()
    n_nodes, n_t = values.shape
    Y = pd.DataFrame(
        {
            "unique_id": np.repeat(nodes["unique_id"].to_numpy(), n_t),
            "ds": np.tile(grid.to_numpy(), n_nodes),
            "y": values.ravel(),
        }
    )
    Y["unique_id"] = Y["unique_id"].astype(str)
    S = pd.DataFrame(S_mat, columns=bottom_ids)
    S.insert(0, "unique_id", nodes["unique_id"].astype(str).to_numpy())

    known = _period_exog(facts, dataset, freq, ExogenousKind.known_ahead)
    past = _period_exog(facts, dataset, freq, ExogenousKind.past_only)
    static = _static(facts, dataset, nodes, keys)
    neg_share = float((bottom.to_numpy() < 0).mean())
    season = spec.forecast.season_length or _default_season(freq)
    validate_long_frame(Y)
    return HierarchicalSeries(
        Y=Y.sort_values(["unique_id", "ds"]).reset_index(drop=True),
        nodes=nodes,
        S=S,
        tags=tags,
        bottom_level=bottom_level,
        freq=freq,
        season_length=int(season),
        known_ahead=known,
        past_only=past,
        static=static,
        nonnegative=neg_share < 0.01,
        hierarchies=hierarchies,
    )
