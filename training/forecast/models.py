"""Base forecasts at one cutoff: a global LightGBM model (mlforecast) and statsforecast baselines.

Every function takes the series visible at the cutoff (``ds <= cutoff``) and returns a frame
``unique_id, ds, <model>...`` for ``h`` periods after it; nothing after the cutoff is read except the
known-ahead exogenous columns, which are known in advance by definition.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from features.distributed import current_client, entity_buckets, gather, map_partitions, n_workers
from features.series import HierarchicalSeries
from training.forecast.config import LGBM, SEASONAL_NAIVE, ForecastConfig

__all__ = [
    "base_forecasts",
    "combine",
    "intermittent_share",
    "lgbm_column",
    "lgbm_forecast",
    "stats_forecast",
]


def lgbm_column(objective: str | None) -> str:
    """The column of a LightGBM forecast: ``LGBM``, or ``LGBM@<objective>`` while objectives compete."""
    return LGBM if objective is None else f"{LGBM}@{objective}"


def intermittent_share(train: pd.DataFrame, bottom_ids: list[str]) -> float:
    """Share of zero periods over the bottom series of ``train`` (``unique_id, ds, y``)."""
    y = train.loc[train["unique_id"].isin(set(bottom_ids)), "y"]
    return float((y == 0).mean()) if len(y) else 0.0


def _sees_season(n_train: int, season: int, freq: str) -> bool:
    """Whether LightGBM gets the seasonal lag (as a feature, or as the difference it learns): with half a year
    of rows (weekly) or six months beyond one season."""
    return n_train >= season + (26 if freq.startswith("W") else 6)


def _lgbm_setup(n_train: int, season: int, freq: str, objective: str = "l1") -> tuple[list[int], dict, list]:
    """Lags, lag transforms and target transforms that the history length allows.

    A ``tweedie`` / ``poisson`` model learns the raw, non-negative target (its log link needs it): no
    differences and no centring, and the seasonal lag where the history has room for it.
    """
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import Differences, LocalStandardScaler

    weekly = freq.startswith("W")
    if objective in ("tweedie", "poisson"):
        candidates = [1, 2, 3, 4, 6, 8, 13] if weekly else [1, 2, 3, 6]
        lags = [lag for lag in candidates if lag <= max(n_train - 4, 1)] or [1]
        if _sees_season(n_train, season, freq):
            lags.append(season)
        transforms = {1: [RollingMean(4), RollingMean(13)]} if weekly and n_train > 20 else {}
        if not weekly and n_train > 8:
            transforms = {1: [RollingMean(3), RollingMean(6)]}
        return lags, transforms, []
    seasonal = _sees_season(n_train, season, freq)
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
    series: HierarchicalSeries,
    train: pd.DataFrame,
    cutoff: pd.Timestamp,
    h: int,
    *,
    season_ago: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], list[str]]:
    """Training frame with static + known-ahead columns, and the future known-ahead frame; with
    ``season_ago`` (``ForecastConfig.season_ago_drivers``) also the known-ahead columns a season back."""
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
            if season_ago and _sees_season(train["ds"].nunique(), series.season_length, series.freq):
                # The model learns y against its value a season ago (the difference or the seasonal lag), so
                # it also needs the driver a season ago: a holiday this year against none last year.
                ago = ka[cols].copy()
                ago.index = ago.index.shift(series.season_length, freq=series.freq)
                ago = ago.add_suffix("_season_ago").rename_axis("ds").reset_index()
                df = df.merge(ago, on="ds", how="left")
                X_df = X_df.merge(ago, on="ds", how="left")
    return df, X_df, static_cols, known_cols


def lgbm_forecast(
    series: HierarchicalSeries,
    train: pd.DataFrame,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    *,
    objective: str | None = None,
    name: str = LGBM,
) -> pd.DataFrame:
    """Global LightGBM over every node (recursive, mlforecast), ``unique_id, ds, <name>``.

    ``objective`` overrides ``config.lgbm_params['objective']`` (``l1``, ``tweedie``, ``poisson`` ...). Inside
    :func:`features.distributed.using` a Dask client, the features and the recursive forecast are built a
    partition of series per task on the workers and the one model is fitted here (:func:`_lgbm_on_cluster`).
    """
    import lightgbm as lgb
    from mlforecast import MLForecast

    params = dict(config.lgbm_params)
    if objective is not None:
        params["objective"] = objective
    params["n_jobs"] = min(int(params.get("n_jobs", 2)), 2)
    n_train = train["ds"].nunique()
    lags, transforms, target = _lgbm_setup(
        n_train, series.season_length, series.freq, str(params.get("objective", "l1"))
    )
    df, X_df, static_cols, _ = _exog_frames(series, train, cutoff, h, season_ago=config.season_ago_drivers)
    if params["objective"] in ("tweedie", "poisson"):
        # a log link needs y >= 0: the few negative periods of "non-negative" data (returns) count as zero
        df = df.assign(y=df["y"].clip(lower=0.0))
    setup = {
        "models": {name: lgb.LGBMRegressor(**params)},
        "freq": series.freq,
        "lags": lags,
        "lag_transforms": transforms,
        "date_features": _date_features(series.freq),
        "target_transforms": target,
    }
    client = current_client()
    if client is not None:
        out = _lgbm_on_cluster(client, setup, df, X_df, static_cols, h)
    else:
        fcst = MLForecast(**setup)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fcst.fit(df, static_features=static_cols)
            out = fcst.predict(h, X_df=X_df)
    if series.nonnegative:
        out[name] = out[name].clip(lower=0.0)
    return out[["unique_id", "ds", name]]


def _lgbm_features(df: pd.DataFrame, setup: dict, static_cols: list[str]) -> tuple:
    """One partition of series on a worker: its MLForecast (the series' state, kept there for the forecast),
    the rows' keys and the features and target it trains on."""
    from mlforecast import MLForecast

    fcst = MLForecast(**setup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prep = fcst.preprocess(df, static_features=static_cols)
    X, y = fcst._extract_X_y(prep, "y", None)
    return fcst, prep[["unique_id", "ds"]].reset_index(drop=True), X.reset_index(drop=True), y


def _state(built: tuple) -> Any:
    return built[0]


def _rows(built: tuple) -> tuple:
    return built[1:]


def _lgbm_predict(fcst: Any, models: dict, h: int, X_df: pd.DataFrame | None) -> pd.DataFrame:
    fcst.models_ = models
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fcst.predict(h, X_df=X_df)


def _lgbm_on_cluster(
    client: Any, setup: dict, df: pd.DataFrame, X_df: pd.DataFrame | None, static_cols: list[str], h: int
) -> pd.DataFrame:
    """The global LightGBM with its features built and its recursive forecast made a partition of series per
    task on the workers, and the one model fitted here on every partition's rows, put back in the one-process
    order (by series, then time), so it sees the rows one process gives it."""
    from sklearn.base import clone

    part = entity_buckets(df["unique_id"], 4 * n_workers(client))
    ids = [np.unique(df["unique_id"].to_numpy()[part == p]) for p in np.unique(part)]
    built = [
        client.submit(_lgbm_features, df[df["unique_id"].isin(i)], setup, static_cols, pure=False)
        for i in ids
    ]
    states = [client.submit(_state, b) for b in built]  # each partition's series state stays on its worker
    rows = gather(client, [client.submit(_rows, b) for b in built])
    del built  # the features now here are let go there
    keys = pd.concat([r[0] for r in rows], ignore_index=True)
    order = keys.sort_values(["unique_id", "ds"], kind="stable").index.to_numpy()
    X = pd.concat([r[1] for r in rows], ignore_index=True).iloc[order].reset_index(drop=True)
    y = np.concatenate([r[2] for r in rows])[order]
    del rows
    with warnings.catch_warnings():  # what MLForecast.fit_models does: a fitted clone of each model
        warnings.simplefilter("ignore")
        fitted = {name: clone(model).fit(X, y) for name, model in setup["models"].items()}
    models = client.scatter(fitted, broadcast=True)
    futures = [
        client.submit(
            _lgbm_predict, f, models, h, None if X_df is None else X_df[X_df["unique_id"].isin(i)], pure=False
        )
        for f, i in zip(states, ids, strict=True)
    ]
    return pd.concat(gather(client, futures), ignore_index=True).sort_values(
        ["unique_id", "ds"], ignore_index=True
    )


def _stats_model(name: str, season: int):  # noqa: ANN202 - a statsforecast model
    from statsforecast.models import ADIDA, TSB, AutoETS, AutoTheta, CrostonSBA, SeasonalNaive, Theta

    if name == SEASONAL_NAIVE:
        return SeasonalNaive(season_length=season, alias=name)
    if name == "TSB":  # the smoothing constants of the TSB paper's examples; not tuned here
        return TSB(alpha_d=0.2, alpha_p=0.2, alias=name)
    if name in ("CrostonSBA", "ADIDA"):
        return {"CrostonSBA": CrostonSBA, "ADIDA": ADIDA}[name](alias=name)
    return {"AutoTheta": AutoTheta, "AutoETS": AutoETS, "Theta": Theta}[name](
        season_length=season, alias=name
    )


def stats_forecast(
    series: HierarchicalSeries, train: pd.DataFrame, h: int, config: ForecastConfig, names: list[str]
) -> pd.DataFrame:
    """The statistical baselines ``names`` at every node, ``unique_id, ds, <name>...``.

    Seasonal naive needs one season of history and the seasonal models two; shorter histories use season 1.
    Inside :func:`features.distributed.using` a Dask client, the series are hashed to partitions (four per
    worker) and forecast there, one statsforecast per partition: the same numbers, since each series is fitted
    on its own.
    """
    n_train = train["ds"].nunique()
    season = series.season_length
    models = []
    for name in names:
        need = 1 if name == SEASONAL_NAIVE else 2
        models.append(_stats_model(name, season if n_train >= need * season else 1))
    df = train[["unique_id", "ds", "y"]]
    client = current_client()
    if (
        client is not None
    ):  # each series is fitted on its own: partitions of series on the workers, same numbers
        part = entity_buckets(df["unique_id"], 4 * n_workers(client))
        inputs = [(df[part == p],) for p in np.unique(part)]
        outs = map_partitions(
            client, _stats_partition, inputs, models=models, freq=series.freq, h=h, n_jobs=1
        )
        return pd.concat(outs, ignore_index=True).sort_values(["unique_id", "ds"], ignore_index=True)
    # Processes pay off on large panels (benchmarks/README.md, version traps: walmart's Theta on 2 processes).
    jobs = config.stats_n_jobs if train["unique_id"].nunique() >= 1000 else 1
    return _stats_partition(df, models=models, freq=series.freq, h=h, n_jobs=jobs)


def _stats_partition(df: pd.DataFrame, *, models: list, freq: str, h: int, n_jobs: int) -> pd.DataFrame:
    """statsforecast's forecast of the series in ``df``; a series too short for a model (tiny histories) falls
    back to the naive forecast."""
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    sf = StatsForecast(models=models, freq=freq, n_jobs=n_jobs, fallback_model=Naive())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = sf.forecast(h=h, df=df)
    return out.reset_index(drop=("unique_id" in out.columns))


def base_forecasts(
    series: HierarchicalSeries,
    cutoff: pd.Timestamp,
    h: int,
    config: ForecastConfig,
    *,
    baselines: list[str],
    objectives: tuple[str, ...] = ("l1",),
) -> pd.DataFrame:
    """The base models at every node from the data up to ``cutoff``: ``unique_id, ds, <model>...``.

    One LightGBM per objective: a single objective gives the column ``LGBM``, several give
    ``LGBM@<objective>`` each (:func:`lgbm_column`). The blends are built from these columns later
    (:mod:`training.forecast.select`), once their weights and members are chosen on calibration cutoffs.
    """
    train = series.truncate(cutoff)
    out = stats_forecast(series, train, h, config, baselines)
    for obj in objectives:
        name = LGBM if len(objectives) == 1 else lgbm_column(obj)
        lgbm = lgbm_forecast(series, train, cutoff, h, config, objective=obj, name=name)
        out = out.merge(lgbm, on=["unique_id", "ds"], how="outer")
    return out.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def combine(frame: pd.DataFrame, weight: float) -> pd.Series:
    """The ``LGBM+SN`` blend: ``weight * LGBM + (1 - weight) * SeasonalNaive``."""
    return weight * frame[LGBM] + (1.0 - weight) * frame[SEASONAL_NAIVE]
