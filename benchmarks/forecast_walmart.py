"""Benchmark: train + full backtest of the sales forecast on walmart (or another data set), with timing and memory.

Runs the same code as ``salesml train sales --dataset walmart``: backtest on 4 windows of 13 weeks (common
calendar cutoffs, plus one earlier calibration cutoff), refit of the chosen model on all data, quarter totals.
MLflow logging is skipped unless ``--log`` is given. Prints the chosen model against the best baseline per level,
interval and quarter-total coverage, wall time and peak memory (max RSS of this process).

Usage:
    nice -n 5 .venv/bin/python benchmarks/forecast_walmart.py [--dataset walmart] [--out DIR] [--log]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="walmart", help="data set name or spec path")
    parser.add_argument("--out", type=Path, default=None, help="write forecasts.parquet / metrics.csv here")
    parser.add_argument("--log", action="store_true", help="also log an MLflow run and register the model")
    args = parser.parse_args()

    from features.load import load_dataset
    from features.series import build_series
    from training.forecast.backtest import run_backtest
    from training.forecast.config import ForecastConfig
    from training.forecast.quarters import forecast_quarters
    from training.forecast.report import summary_table, write_backtest

    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    if args.log:
        from training.forecast.train import train_sales

        res = train_sales(
            args.dataset, progress=lambda m: print(f"{time.perf_counter() - t0:7.1f}s {m}", flush=True)
        )
        result, series = res.backtest, res.series
    else:
        series = build_series(load_dataset(args.dataset))
        marks["series"] = time.perf_counter() - t0
        config = ForecastConfig()
        result = run_backtest(
            series, config, progress=lambda m: print(f"{time.perf_counter() - t0:7.1f}s {m}", flush=True)
        )
        marks["backtest"] = time.perf_counter() - t0
        forecast_quarters(series, result, config)
    total = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.out:
        write_backtest(result, args.out)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(
        f"\ndata set {args.dataset}: {len(series.nodes)} nodes ({len(series.bottom_ids)} bottom), "
        f"{series.Y['ds'].nunique()} periods to {series.end.date()}"
    )
    print(
        "evaluation cutoffs:",
        ", ".join(str(c.date()) for c in result.cutoffs.evaluation),
        f"(window {result.cutoffs.window}, calibration cutoffs "
        f"{', '.join(str(c.date()) for c in result.cutoffs.calibration) or 'none'})",
    )
    print(result.metrics.round(4).to_string(index=False))
    print("\nchosen vs best baseline:")
    print(summary_table(result, series.levels).round(4).to_string(index=False))
    print(f"\nstages: {', '.join(f'{k} {v:.0f}s' for k, v in marks.items())}")
    print(f"train + full backtest: {total:.0f} s; peak memory (max RSS): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
