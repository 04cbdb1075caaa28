"""``salesml train sales``: backtest, refit, log one MLflow run, register ``sales_forecast.<data set>``, optionally
promote."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.churn_checks import parse_as_of  # one rule for every --as-of
from features.distributed import current_client
from features.load import Dataset, load_dataset
from features.series import HierarchicalSeries, build_series
from training import registry
from training.cards import log_card
from training.forecast.artifacts import ForecastArtifacts
from training.forecast.backtest import BacktestResult, run_backtest
from training.forecast.config import ForecastConfig
from training.forecast.pyfunc import ARTIFACT_KEY, SalesForecastModel
from training.forecast.quarters import forecast_quarters
from training.forecast.report import level_metrics, plot_error_by_level, plot_fan_charts, write_backtest
from training.forecast.tails import fit_tail_df

__all__ = [
    "EXPERIMENT",
    "GATE",
    "PRODUCT",
    "SalesTraining",
    "TrainResult",
    "backtest_dataset",
    "log_sales_training",
    "train_forecast",
    "train_sales",
]

PRODUCT = "sales_forecast"  # registered per data set as sales_forecast.<data set>
EXPERIMENT = "sales_forecast"
GATE = registry.GATES[PRODUCT]  # the one gate definition lives in training/registry.py


@dataclass
class TrainResult:
    run_id: str
    version: str
    eval_key: str
    metrics: dict[str, float]
    backtest: BacktestResult
    artifacts: ForecastArtifacts
    series: HierarchicalSeries
    decision: registry.GateDecision | None
    seconds: float


def backtest_dataset(
    dataset: str, config: ForecastConfig | None = None, progress: Callable[[str], None] | None = None
) -> tuple[HierarchicalSeries, BacktestResult]:
    """Load a data set, build its series and backtest every model (inside :func:`features.distributed.using` a
    client, a partitioned order table is read and summed by its workers)."""
    ds = load_dataset(dataset, defer_parted=current_client() is not None)
    series = build_series(ds)
    return series, run_backtest(series, config, progress=progress)


@dataclass
class SalesTraining:
    """A backtested and refitted forecast, not logged yet (:func:`log_sales_training` logs it)."""

    dataset: Dataset
    config: ForecastConfig
    series: HierarchicalSeries
    backtest: BacktestResult
    artifacts: ForecastArtifacts
    metrics: dict[str, float]
    eval_key: str
    started: float


def train_forecast(
    dataset: Dataset,
    *,
    config: ForecastConfig | None = None,
    as_of: str | pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
) -> SalesTraining:
    """Backtest every model, choose on the calibration cutoffs and refit the choice on all data (up to
    ``as_of``, a ``YYYY-MM-DD`` day, when given: later sales are not seen, as if the model had been trained
    then; ``salesml monitor`` judges it on what came after)."""
    started = time.perf_counter()
    config = config or ForecastConfig()
    series = build_series(dataset, as_of=parse_as_of(as_of))
    result = run_backtest(series, config, progress=progress)
    if progress:
        progress(f"refitting {result.chosen} on all data up to {series.end.date()}")
    fingerprint = dataset.spec.fingerprint()
    art = forecast_quarters(
        series,
        result,
        config,
        meta={
            "dataset": dataset.name,
            "spec_fingerprint": fingerprint,
            "tail_df": fit_tail_df(result.forecasts),  # for salesml monitor's tail probabilities
        },
    )
    key = registry.eval_key(
        fingerprint,
        str(series.end.date()),
        *[str(c.date()) for c in result.cutoffs.evaluation],
        result.cutoffs.window,
    )
    metrics = level_metrics(result, series.bottom_level)
    return SalesTraining(dataset, config, series, result, art, metrics, key, started)


def train_sales(
    dataset: str,
    *,
    promote: bool = False,
    config: ForecastConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """:func:`train_forecast` and :func:`log_sales_training` in one: ``salesml train sales``."""
    training = train_forecast(load_dataset(dataset), config=config, progress=progress)
    return log_sales_training(training, promote=promote)


def log_sales_training(training: SalesTraining, *, promote: bool = False) -> TrainResult:
    """One MLflow run: log everything, register ``sales_forecast.<data set>``, tag the version, log its card and
    (with ``promote``) apply the gate."""
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    ds, config, series, result, art = (
        training.dataset,
        training.config,
        training.series,
        training.backtest,
        training.artifacts,
    )
    metrics, key, started = training.metrics, training.eval_key, training.started
    fingerprint = ds.spec.fingerprint()
    name = registry.model_name(PRODUCT, ds.name)
    registry.configure(EXPERIMENT)
    with mlflow.start_run(run_name=f"sales-{ds.name}") as run, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        mlflow.set_tags({"dataset": ds.name, "spec_fingerprint": fingerprint, "eval_key": key})
        mlflow.log_params(
            {
                **config.params(),
                "dataset": ds.name,
                "spec_fingerprint": fingerprint,
                "freq": series.freq,
                "season_length": series.season_length,
                "n_nodes": len(series.nodes),
                "n_bottom": len(series.bottom_ids),
                "data_cutoff": str(series.end.date()),
                "backtest_cutoffs": ",".join(str(c.date()) for c in result.cutoffs.evaluation),
                "calibration_cutoffs": ",".join(str(c.date()) for c in result.cutoffs.calibration),
                "window": result.cutoffs.window,
                "step": result.cutoffs.step,
                "chosen_model": result.chosen,
                "chosen_on": result.recipe.chosen_on,
                "choice_cutoffs": ",".join(result.recipe.choice_cutoffs),
                "lgbm_objective": result.recipe.objective,
                "ensemble_members": ",".join(result.recipe.members),
                "level_models": json.dumps(
                    {lvl: result.recipe.level_model(lvl) for lvl in series.levels}, sort_keys=False
                ),
                "baselines": ",".join(result.baselines),
                "intermittent_share": round(result.intermittent_share, 4),
                "combine_weight_used": result.combine_weight,
                "nonnegative": series.nonnegative,
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(ds.spec_path), artifact_path="spec")
        bt_dir = tmp_path / "backtest"
        write_backtest(result, bt_dir)
        mlflow.log_artifacts(str(bt_dir), artifact_path="backtest")
        plots = tmp_path / "plots"
        plots.mkdir()
        plot_fan_charts(series, art, plots / "fan_chart.png")
        plot_error_by_level(result, series.levels, plots / "error_by_level.png")
        mlflow.log_artifacts(str(plots), artifact_path="plots")
        art_dir = art.save(tmp_path / "forecast")
        example = pd.DataFrame({"unique_id": ["total"], "level": ["total"]})
        output = SalesForecastModel()
        output.artifacts_ = art
        # Both input columns are optional filters: none of them means every node.
        inputs = Schema(
            [ColSpec("string", "unique_id", required=False), ColSpec("string", "level", required=False)]
        )
        signature = ModelSignature(
            inputs=inputs, outputs=infer_signature(example, output.predict(None, example)).outputs
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SalesForecastModel(),
            artifacts={ARTIFACT_KEY: str(art_dir)},
            signature=signature,
            input_example=example,
            registered_model_name=name,
            pip_requirements=["mlflow==3.17.2", "pandas==2.3.3", "pyarrow", "numpy"],
        )
        version = str(info.registered_model_version)
        mlflow.log_metric("train_seconds", time.perf_counter() - started)
    registry.tag_version(
        name,
        version,
        key,
        {k: v for k, v in metrics.items() if k in GATE or k.startswith("ratio_")},
        dataset=ds.name,
        model=result.chosen,
        data_cutoff=str(series.end.date()),
        run_id=run.info.run_id,
    )
    log_card(name, version)
    decision = registry.promote_if_better(name, version, directions=GATE) if promote else None
    return TrainResult(
        run_id=run.info.run_id,
        version=version,
        eval_key=key,
        metrics=metrics,
        backtest=result,
        artifacts=art,
        series=series,
        decision=decision,
        seconds=time.perf_counter() - started,
    )
