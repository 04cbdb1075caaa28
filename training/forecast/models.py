"""Base forecasts at one cutoff: a global LightGBM model (mlforecast) and statsforecast baselines.

Every function takes the series visible at the cutoff (``ds <= cutoff``) and returns a frame
``unique_id, ds, <model>...`` for ``h`` periods after it; nothing after the cutoff is read except the
known-ahead exogenous columns, which are known in advance by definition.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features.series import HierarchicalSeries
from training.forecast.config import COMBINED, LGBM, SEASONAL_NAIVE, ForecastConfig, auto_model_name

__all__ = ["base_forecasts", "combine", "lgbm_forecast", "stats_forecast"]


def _lgbm_setup(n_train: int, season: int, freq: str) -> tuple[list[int], dict, list]:
    """Lags, lag transforms and target transforms that the history length allows."""
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import Differences, LocalStandardScaler

    weekly = freq.startswith("W")
    seasonal = n_train >= season + (26 if weekly else 6)
    usable = n_train - (season if seasonal else 0) - 2
    # Weekly lags stop at 8 and the rolling means start at lag 1: mlforecast drops every row whose features
    # are not all available, and after 52-week differencing 2-3 years of history leave 26-90 rows per series;
    # lags 13 / 26 and a 13-week mean of lag 13 cost 25 of them (measured on walmart, benchmarks/README.md).
    candidates = [1, 2, 3, 4, 6, 8] if weekly else [1, 2, 3, 6, 12]
    lags = [lag for lag in candidates if lag <= max(usable - 2, 1)] or [1]
    transforms: dict = {}
    if weekly and usable > 16:
        transforms = {1: [RollingMean(4), RollingMean(13)]}
    elif usable > 6:
        transforms = {1: [RollingMean(3)]}
    target = [Differences([season])] if seasonal else []
    target.append(LocalStandardScaler())
    return lags, transforms, target


def _date_features(freq: str) -> list:
    if freq.startswith("W"):

        def week_of_year(dates: pd.DatetimeIndex) -> np.ndarray:
            return dates.isocalendar().week.to_numpy().astype(float)

        def day_of_year(dates: pd.DatetimeIndex) -> np.ndarray:
            return np.asarray(dates.dayofyear, dtype=float)

        return [week_of_year, day_of_year, "month"]
    return ["month", "quarter"]


def _exog_frames(
    series: HierarchicalSeries, train: pd.DataFrame, cutoff: pd.Timestamp, h: int
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], list[str]]:
    """Training frame with static + known-ahead columns, and the future known-ahead frame."""
    future_ds = pd.date_range(cutoff, periods=h + 1, freq=series.freq)[1:]
    static_cols = [c for c in series.static.columns if c != "unique_id"]
    nodes = series.nodes[["unique_id", "depth"]].rename(columns={"depth": "node_depth"})
    static = nodes.merge(series.static, on="unique_id", how="left")
    static_cols = ["node_depth", *static_cols]
    df = train.merge(static, on="unique_id", how="left")
    known_cols: list[str] = []
    X_df = None
    if not series.known_ahead.empty:
        ka = series.known_ahead.set_index("ds")
        # Use a known-ahead column only where it is published for the whole horizon.
        cols = [c for c in ka.columns if future_ds.isin(ka.index[ka[c].notna()]).all()]
        if cols:
            known_cols = cols
            df = df.merge(ka[cols].reset_index(), on="ds", how="left")
            fut = pd.DataFrame(
                {
                    "unique_id": np.repeat(train["unique_id"].unique(), len(future_ds)),
                    "ds": np.tile(future_ds.to_numpy(), train["unique_id"].nunique()),
                }
            )
            X_df = fut.merge(ka[cols].reset_index(), on="ds", how="left")
    return df, X_df, static_cols, known_cols


def lgbm_forecast(
    series: HierarchicalSeries, train: pd.DataFrame, cutoff: pd.Timestamp, h: int, config: ForecastConfig
) -> pd.DataFrame:
    """Global LightGBM over every node (recursive, mlforecast), ``unique_id, ds, LGBM``."""
    import lightgbm as lgb
    from mlforecast import MLForecast

    n_train = train["ds"].nunique()
    lags, transforms, target = _lgbm_setup(n_train, series.season_length, series.freq)
    df, X_df, static_cols, _ = _exog_frames(series, train, cutoff, h)
    params = dict(config.lgbm_params)
    params["n_jobs"] = min(int(params.get("n_jobs", 2)), 2)
    fcst = MLForecast(
        models={LGBM: lgb.LGBMRegressor(**params)},
        freq=series.freq,
        lags=lags,
        lag_transforms=transforms,
        date_features=_date_features(series.freq),
        target_transforms=target,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fcst.fit(df, static_features=static_cols)
        out = fcst.predict(h, X_df=X_df)
    return out[["unique_id", "ds", LGBM]]


def stats_forecast(
    series: HierarchicalSeries, train: pd.DataFrame, h: int, config: ForecastConfig, *, auto: bool = True
) -> pd.DataFrame:
    """Seasonal naive and the automatic baseline at every node, ``unique_id, ds, SeasonalNaive, <auto>``."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, Naive, SeasonalNaive, Theta

    n_train = train["ds"].nunique()
    season = series.season_length
    sn_season = season if n_train >= season else 1
    auto_season = season if n_train >= 2 * season else 1
    models = [SeasonalNaive(season_length=sn_season, alias=SEASONAL_NAIVE)]
    if auto:
        name = auto_model_name(config, season)
        auto_cls = {"AutoTheta": AutoTheta, "AutoETS": AutoETS, "Theta": Theta}[name]
        models.append(auto_cls(season_length=auto_season, alias=name))
    # Series too short for a model (tiny histories) fall back to the naive forecast.
    sf = StatsForecast(models=models, freq=series.freq, n_jobs=1, fallback_model=Naive())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = sf.forecast(h=h, df=train[["unique_id", "ds", "y"]])
    return out.reset_index(drop=("unique_id" in out.columns))


def base_forecasts(
    series: HierarchicalSeries,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    *,
    baselines: bool = True,
    weight: float | None = 0.5,
) -> pd.DataFrame:
    """All base models at every node from the data up to ``cutoff``: ``unique_id, ds, <model>...``.

    ``LGBM+SN`` is ``weight * LightGBM + (1 - weight) * seasonal naive`` (see :func:`combine`); with
    ``weight=None`` it is left out (the backtest adds it once the weight is chosen on calibration cutoffs).
    With ``baselines=False`` the automatic statistical baseline is skipped (seasonal naive is cheap and kept).
    """
    train = series.truncate(cutoff)
    lgbm = lgbm_forecast(series, train, cutoff, h, config)
    stats = stats_forecast(series, train, h, config, auto=baselines)
    out = stats.merge(lgbm, on=["unique_id", "ds"], how="outer")
    if config.combine and weight is not None:
        out[COMBINED] = combine(out, weight)
    return out.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def combine(frame: pd.DataFrame, weight: float) -> pd.Series:
    """The ``LGBM+SN`` blend: ``weight * LGBM + (1 - weight) * SeasonalNaive``."""
    return weight * frame[LGBM] + (1.0 - weight) * frame[SEASONAL_NAIVE]
