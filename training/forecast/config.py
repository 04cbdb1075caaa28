"""Forecast settings and the backtest's calendar cutoffs (the same cutoffs for every series)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from features.errors import SalesmlError
from features.series import HierarchicalSeries, periods_per_quarter

__all__ = [
    "COMBINED",
    "LGBM",
    "SEASONAL_NAIVE",
    "Cutoffs",
    "ForecastConfig",
    "auto_model_name",
    "backtest_cutoffs",
]

LGBM = "LGBM"
SEASONAL_NAIVE = "SeasonalNaive"
COMBINED = "LGBM+SN"


@dataclass(frozen=True)
class ForecastConfig:
    """Everything that decides a forecast; logged as MLflow params.

    Attributes:
        n_windows: evaluation windows of the backtest (one quarter each).
        n_calibration: extra earlier cutoffs whose errors only calibrate intervals (never evaluated).
        levels: interval coverages in percent.
        reconcilers: reconciliation methods tried on the LightGBM base forecasts (chosen by backtest).
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
    """

    n_windows: int = 4
    n_calibration: int = 1
    levels: tuple[int, ...] = (80, 95)
    reconcilers: tuple[str, ...] = ("BottomUp", "MinTrace_ols", "MinTrace_wls_struct")
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

    @classmethod
    def fast(cls) -> ForecastConfig:
        """A smoke-run variant of the default: 2 windows, bottom-up only, no blend, 150 trees at rate 0.1.

        What ``salesml train sales --fast``, notebook 01 with ``fast = True`` and the test session run; its
        params differ from the default's, so the promotion gate never compares a fast run with a full one.
        """
        base = cls()
        trees = {**base.lgbm_params, "n_estimators": 150, "learning_rate": 0.1}
        return cls(n_windows=2, reconcilers=("BottomUp",), combine=False, lgbm_params=trees)

    def candidates(self) -> tuple[str, ...]:
        """Base models whose reconciled versions compete to be chosen."""
        return (LGBM, COMBINED) if self.combine else (LGBM,)

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


def backtest_cutoffs(series: HierarchicalSeries, config: ForecastConfig) -> Cutoffs:
    """Common calendar cutoffs: the last window ends at the last period; windows are one quarter long.

    Cutoffs step back by a quarter when the history allows ``n_windows`` of them after a training span of
    ``season + 2 quarters``; short histories (a year or less) fall back to shorter training spans and then to
    overlapping windows (a smaller step), always keeping ``n_windows`` windows of one quarter.
    """
    grid = pd.date_range(series.start, series.end, freq=series.freq)
    n = len(grid)
    w = periods_per_quarter(series.freq)
    season = series.season_length
    for min_train in (season + 2 * w, 2 * w, w):
        for step in range(w, 0, -1):
            first = n - w - step * (config.n_windows - 1)  # number of periods up to the first cutoff
            if first >= min_train:
                evaluation = [grid[first - 1 + step * k] for k in range(config.n_windows)]
                calibration = []
                for k in range(1, config.n_calibration + 1):
                    size = first - step * k
                    if size >= min_train:
                        calibration.append(grid[size - 1])
                return Cutoffs(sorted(evaluation), sorted(calibration), w, step, 2 * w + 1, min_train)
    raise SalesmlError(
        f"{n} {series.freq} periods of history are too few for {config.n_windows} backtest windows of {w} "
        f"periods (need at least {w * (config.n_windows + 1)})"
    )
