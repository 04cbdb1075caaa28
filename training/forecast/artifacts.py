"""What serving needs, without refitting: per-node forecasts, quarter totals with their distribution, nodes.

Saved as a folder of Parquet files plus ``meta.json``; the MLflow pyfunc model carries that folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "FORECAST_COLUMNS",
    "HISTORY_COLUMNS",
    "LAST_QUARTER_COLUMNS",
    "QUARTER_COLUMNS",
    "ForecastArtifacts",
]

FORECAST_COLUMNS = ["unique_id", "level", "ds", "mean", "lo-80", "hi-80", "lo-95", "hi-95"]
HISTORY_COLUMNS = ["unique_id", "ds", "y"]
LAST_QUARTER_COLUMNS = ["unique_id", "level", "period", "cutoff", "periods", "actual", "forecast"]
QUARTER_COLUMNS = [
    "unique_id",
    "level",
    "quarter",
    "period",
    "start",
    "end",
    "actual_to_date",
    "forecast_rest",
    "mean",
    "median",
    "lo-80",
    "hi-80",
    "lo-95",
    "hi-95",
]


@dataclass
class ForecastArtifacts:
    """Everything a served forecast needs.

    Attributes:
        forecasts: ``unique_id, level, ds, mean, lo-80, hi-80, lo-95, hi-95`` for every node and future period.
        quarters: per node and quarter (``current``, ``next``): ``period`` (e.g. 2012Q4), ``start, end``,
            ``actual_to_date, forecast_rest, mean, median, lo/hi-80/95`` and the quantiles ``q01 .. q99`` of
            the calibrated quarter-total distribution.
        nodes: ``unique_id, level, hierarchy, depth, parent, is_bottom``.
        meta: ``dataset, spec_fingerprint, cutoff`` (last period with data), ``freq, model, levels``,
            ``accuracy`` (per level, the served forecast and every baseline on the evaluation windows) ...
        history: ``unique_id, ds, y``: every node's actuals over the last two years (the page's fan charts).
        last_quarter: per node, the last complete quarter's actual beside what the backtest forecast for it
            from the latest evaluation cutoff before it (``LAST_QUARTER_COLUMNS``; empty when no window covers
            it). Both empty for versions trained before they were kept.
    """

    forecasts: pd.DataFrame
    quarters: pd.DataFrame
    nodes: pd.DataFrame
    meta: dict = field(default_factory=dict)
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HISTORY_COLUMNS))
    last_quarter: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LAST_QUARTER_COLUMNS))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.forecasts.to_parquet(path / "forecasts.parquet", index=False)
        self.quarters.to_parquet(path / "quarters.parquet", index=False)
        self.nodes.to_parquet(path / "nodes.parquet", index=False)
        self.history.to_parquet(path / "history.parquet", index=False)
        self.last_quarter.to_parquet(path / "last_quarter.parquet", index=False)
        (path / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForecastArtifacts:
        path = Path(path)
        optional = {
            name: pd.read_parquet(path / f"{name}.parquet")
            for name in ("history", "last_quarter")
            if (path / f"{name}.parquet").exists()  # absent from versions trained before they were kept
        }
        return cls(
            forecasts=pd.read_parquet(path / "forecasts.parquet"),
            quarters=pd.read_parquet(path / "quarters.parquet"),
            nodes=pd.read_parquet(path / "nodes.parquet"),
            meta=json.loads((path / "meta.json").read_text()),
            **optional,
        )

    @property
    def cutoff(self) -> pd.Timestamp:
        return pd.Timestamp(self.meta["cutoff"])

    def quantile_columns(self) -> list[str]:
        return [c for c in self.quarters.columns if c.startswith("q") and c[1:].isdigit()]
