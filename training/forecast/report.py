"""Backtest files (the contract), the summary of a backtest, and the PNG plots logged with a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.backtest import BacktestResult
from training.forecast.config import BACKTEST_FILES, CHOSEN, LGBM

__all__ = [
    "BACKTEST_FILES",
    "cutoff_table",
    "forecast_contract",
    "level_metrics",
    "plot_error_by_level",
    "plot_fan_charts",
    "summary_table",
    "write_backtest",
]


def forecast_contract(result: BacktestResult) -> pd.DataFrame:
    """``forecasts.parquet``: ``cutoff, unique_id, level, ds, y``, the model columns (``chosen`` among them)
    and their ``{model}-lo/hi-{level}`` columns, nothing else (the interval scale is in ``scales.parquet``)."""
    return result.forecasts.drop(columns=["step", "scale"])


def cutoff_table(result: BacktestResult) -> pd.DataFrame:
    """One row per cutoff: its ``role`` (``calibration`` chose, ``evaluation`` measured) and window."""
    cuts = result.cutoffs
    rows = [{"cutoff": c, "role": "calibration"} for c in cuts.calibration]
    rows += [{"cutoff": c, "role": "evaluation"} for c in cuts.evaluation]
    out = pd.DataFrame(rows)
    out["chose"] = out["cutoff"].dt.strftime("%Y-%m-%d").isin(result.recipe.choice_cutoffs)
    out["measured"] = out["role"] == "evaluation"
    out["window"] = cuts.window
    return out


def write_backtest(result: BacktestResult, out: str | Path) -> dict[str, Path]:
    """Write the backtest files (:data:`BACKTEST_FILES`) to ``out``: all or none
    (:func:`training.outputs.staged`)."""
    from training.outputs import staged

    out = Path(out)
    paths = {name.split(".")[0]: out / name for name in BACKTEST_FILES}
    scales = result.forecasts[["cutoff", "unique_id", "scale"]].drop_duplicates(["cutoff", "unique_id"])
    frames = {
        "forecasts": forecast_contract(result),
        "metrics": result.metrics,
        "totals": result.totals,
        "scales": scales.reset_index(drop=True),
        "selection": result.selection,
        "cutoffs": cutoff_table(result),
    }
    with staged({paths[k]: frames[k] for k in paths}):
        pass
    return paths


def level_metrics(result: BacktestResult, bottom_level: str) -> dict[str, float]:
    """MLflow metric names for the served forecast (``wape_total``, ``wape_bottom``, ``cov80_dept`` ...) and
    the best baseline (``baseline_wape_<level>``)."""
    m = result.metrics
    out: dict[str, float] = {}
    chosen = m[m["model"] == CHOSEN].set_index("level")
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
            out[f"ratio_{name}"] = out[f"wape_{name}"] / max(out[f"baseline_wape_{name}"], 1e-12)
    return out


def summary_table(result: BacktestResult, levels: list[str]) -> pd.DataFrame:
    """Per level: what the served forecast is made of, its WAPE and bias on the evaluation windows against
    the best baseline there, its coverage, and on which cutoffs it was chosen."""
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
                "chosen": result.recipe.level_model(level),
                "chosen_on": result.recipe.chosen_on,
                "wape": part.loc[CHOSEN, "wape"],
                "bias": part.loc[CHOSEN, "bias"],
                "best_baseline": base.idxmin(),
                "baseline_wape": base.min(),
                "ratio": part.loc[CHOSEN, "wape"] / max(base.min(), 1e-12),
                "cov_80": part.loc[CHOSEN, "cov_80"],
                "cov_95": part.loc[CHOSEN, "cov_95"],
                "qcov_80": part.loc[CHOSEN, "qcov_80"],
                "qcov_95": part.loc[CHOSEN, "qcov_95"],
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

    shown = [*result.baselines, LGBM, CHOSEN]
    metrics = result.metrics[result.metrics["model"].isin(shown)]
    pivot = metrics.pivot(index="level", columns="model", values="wape").reindex(levels)[shown]
    ax = pivot.plot.bar(figsize=(10, 4), rot=0)
    ax.set_ylabel("WAPE (backtest)")
    ax.set_title(f"Backtest WAPE by level; chosen = {result.chosen} ({result.recipe.chosen_on} cutoffs)")
    ax.legend(fontsize=7)
    fig = ax.get_figure()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
