"""Backtest files (the contract), the summary of a backtest, and the PNG plots logged with a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.backtest import BacktestResult

__all__ = ["level_metrics", "plot_error_by_level", "plot_fan_charts", "summary_table", "write_backtest"]


def write_backtest(result: BacktestResult, out: str | Path) -> dict[str, Path]:
    """Write ``forecasts.parquet``, ``metrics.csv`` and ``totals.parquet`` to ``out``: all three or none
    (:func:`training.outputs.staged`)."""
    from training.outputs import staged

    out = Path(out)
    paths = {
        "forecasts": out / "forecasts.parquet",
        "metrics": out / "metrics.csv",
        "totals": out / "totals.parquet",
    }
    frames = {"forecasts": result.forecasts, "metrics": result.metrics, "totals": result.totals}
    with staged({paths[k]: frames[k] for k in paths}):
        pass
    return paths


def level_metrics(result: BacktestResult, bottom_level: str) -> dict[str, float]:
    """MLflow metric names for the chosen model (``wape_total``, ``wape_bottom``, ``cov80_dept`` ...) and the
    best baseline (``baseline_wape_<level>``)."""
    m = result.metrics
    out: dict[str, float] = {}
    chosen = m[m["model"] == result.chosen].set_index("level")
    base = m[m["model"].isin(result.baselines)]
    for level, row in chosen.iterrows():
        names = [level] + (["bottom"] if level == bottom_level and level != "bottom" else [])
        for name in names:
            out[f"wape_{name}"] = float(row["wape"])
            out[f"mase_{name}"] = float(row["mase"])
            out[f"bias_{name}"] = float(row["bias"])
            for lv in (80, 95):
                for key in ("cov", "width", "qcov"):
                    col = f"{key}_{lv}"
                    if col in row and pd.notna(row[col]):
                        out[f"{key}{lv}_{name}"] = float(row[col])
            out[f"baseline_wape_{name}"] = float(base[base["level"] == level]["wape"].min())
    return out


def summary_table(result: BacktestResult, levels: list[str]) -> pd.DataFrame:
    """Per level: the chosen model's WAPE against the best baseline, and its coverage."""
    m = result.metrics
    rows = []
    for level in levels:
        part = m[m["level"] == level].set_index("model")
        if part.empty:
            continue
        base = part.loc[result.baselines, "wape"]
        rows.append(
            {
                "level": level,
                "chosen": result.chosen,
                "wape": part.loc[result.chosen, "wape"],
                "best_baseline": base.idxmin(),
                "baseline_wape": base.min(),
                "ratio": part.loc[result.chosen, "wape"] / max(base.min(), 1e-12),
                "cov_80": part.loc[result.chosen, "cov_80"],
                "cov_95": part.loc[result.chosen, "cov_95"],
                "qcov_80": part.loc[result.chosen, "qcov_80"],
                "qcov_95": part.loc[result.chosen, "qcov_95"],
            }
        )
    return pd.DataFrame(rows)


def plot_fan_charts(
    series: HierarchicalSeries, art: ForecastArtifacts, path: str | Path, n_nodes: int = 3
) -> Path:
    """Fan chart (history, mean, 80 / 95 % bands) of the total and the largest nodes one level down."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = series.levels
    ids = ["total"]
    if len(levels) > 1:
        nxt = series.nodes[series.nodes["level"] == levels[1]]["unique_id"]
        sizes = series.Y[series.Y["unique_id"].isin(nxt)].groupby("unique_id")["y"].sum()
        ids += sizes.sort_values(ascending=False).index[:n_nodes].tolist()
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 2.6 * len(ids)), squeeze=False)
    history = series.Y[series.Y["ds"] > series.end - pd.Timedelta(days=2 * 366)]
    for ax, uid in zip(axes[:, 0], ids, strict=True):
        h = history[history["unique_id"] == uid]
        f = art.forecasts[art.forecasts["unique_id"] == uid]
        ax.plot(h["ds"], h["y"], color="black", lw=1, label="actual")
        ax.fill_between(f["ds"], f["lo-95"], f["hi-95"], color="tab:blue", alpha=0.2, label="95 %")
        ax.fill_between(f["ds"], f["lo-80"], f["hi-80"], color="tab:blue", alpha=0.35, label="80 %")
        ax.plot(f["ds"], f["mean"], color="tab:blue", lw=1.5, label="forecast")
        ax.set_title(uid, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_error_by_level(result: BacktestResult, levels: list[str], path: str | Path) -> Path:
    """WAPE by hierarchy level for every model of the backtest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pivot = result.metrics.pivot(index="level", columns="model", values="wape").reindex(levels)
    ax = pivot.plot.bar(figsize=(10, 4), rot=0)
    ax.set_ylabel("WAPE (backtest)")
    ax.set_title(f"Backtest WAPE by level; chosen: {result.chosen}")
    ax.legend(fontsize=7)
    fig = ax.get_figure()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
