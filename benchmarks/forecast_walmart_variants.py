"""Exploration: LightGBM variants against seasonal naive at the bottom (store/dept) level of walmart.

A quick harness for trying feature / objective / lag variants on a subset of stores before a full backtest:
it fits LightGBM (the same mlforecast setup as ``training.forecast.models.lgbm_forecast``, with the changes the
variant asks for) and seasonal naive at the calibration cutoff 2011-07-29 and the 4 evaluation cutoffs, 13 weeks
each, and prints pooled dept-level WAPE ratios to seasonal naive: LightGBM alone, the 0.5 / 0.5 blend, and the
blend whose weight is chosen on the calibration cutoff only. No reconciliation, no intervals, no Theta.

Variant keys (JSON): ``params`` (LightGBM overrides), ``long`` (the lags before 2026-11-25: 1-8, 13, 26 and a
13-week mean of lag 13), ``lags``, ``tf`` (rolling-mean windows of lag 1), ``target`` (subset of
``log/diff/scale``), ``hol`` (days to named US holidays as date features), ``hol_lag`` (also the same 364 days
earlier), ``keepna`` (keep rows whose features are partly missing), ``no_known`` (drop known-ahead columns),
``all_nodes`` (every node instead of the subset's stores and depts).

Usage:
    nice -n 10 .venv/bin/python benchmarks/forecast_walmart_variants.py --stores 20 --name NAME --variant JSON
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

CUTOFFS = ["2011-07-29", "2011-10-28", "2012-01-27", "2012-04-27", "2012-07-27"]  # calibration first


def _holidays(years: range) -> dict[str, pd.DatetimeIndex]:
    from dateutil.easter import easter

    out: dict[str, list] = {}
    for y in years:
        nov = pd.date_range(f"{y}-11-01", f"{y}-11-30")
        out.setdefault("thanksgiving", []).append(nov[nov.dayofweek == 3][3])
        out.setdefault("christmas", []).append(pd.Timestamp(f"{y}-12-25"))
        feb = pd.date_range(f"{y}-02-01", f"{y}-02-07")
        out.setdefault("superbowl", []).append(feb[feb.dayofweek == 6][0])
        sep = pd.date_range(f"{y}-09-01", f"{y}-09-07")
        out.setdefault("laborday", []).append(sep[sep.dayofweek == 0][0])
        out.setdefault("easter", []).append(pd.Timestamp(easter(y)))
    return {k: pd.DatetimeIndex(v) for k, v in out.items()}


HOLIDAYS = _holidays(range(2005, 2030))


def _days_to(name: str, shift_days: int = 0, clip: int = 35):
    def f(dates: pd.DatetimeIndex) -> np.ndarray:
        d = (dates - pd.Timedelta(days=shift_days)).values.astype("datetime64[D]").astype(np.int64)
        h = HOLIDAYS[name].values.astype("datetime64[D]").astype(np.int64)
        diff = h[None, :] - d[:, None]
        v = diff[np.arange(len(d)), np.abs(diff).argmin(axis=1)].astype(float)
        return np.clip(v, -clip, clip)

    f.__name__ = f"d_{name}" + (f"_m{shift_days}" if shift_days else "")
    return f


def lgbm_variant(series, train, cutoff, h, config, opts) -> pd.DataFrame:
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import Differences, GlobalSklearnTransformer, LocalStandardScaler

    from training.forecast.models import _date_features, _exog_frames, _lgbm_setup

    n_train = train["ds"].nunique()
    lags, transforms, target = _lgbm_setup(n_train, series.season_length, series.freq)
    df, X_df, static_cols, known = _exog_frames(series, train, cutoff, h)
    if opts.get("no_known"):
        df, X_df = df.drop(columns=known), None
    if opts.get("long"):
        usable = n_train - series.season_length - 2
        lags = [lag for lag in [1, 2, 3, 4, 6, 8, 13, 26] if lag <= max(usable - 2, 1)]
        transforms = {1: [RollingMean(4), RollingMean(13)], 13: [RollingMean(13)]} if transforms else {}
    if "tf" in opts and transforms:
        transforms = {1: [RollingMean(w) for w in opts["tf"]]} if opts["tf"] else {}
    if "lags" in opts:
        lags = [lag for lag in opts["lags"] if lag < max(n_train - 62, 3)]
    if "target" in opts:
        from sklearn.preprocessing import FunctionTransformer

        target = []
        if "log" in opts["target"]:
            target.append(GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1)))
        if "diff" in opts["target"] and n_train >= 52 + 26:
            target.append(Differences([52]))
        if "scale" in opts["target"]:
            target.append(LocalStandardScaler())
    dfeats = _date_features(series.freq)
    for name in opts.get("hol", []):
        dfeats.append(_days_to(name))
        if opts.get("hol_lag"):
            dfeats.append(_days_to(name, 364))
    fcst = MLForecast(
        models={"LGBM": lgb.LGBMRegressor(**config.lgbm_params)},
        freq=series.freq,
        lags=lags,
        lag_transforms=transforms,
        date_features=dfeats,
        target_transforms=target,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if opts.get("keepna"):
            prep = fcst.preprocess(df, static_features=static_cols, dropna=False)
            prep = prep[prep["y"].notna()]
            fcst.fit_models(prep.drop(columns=["unique_id", "ds", "y"]), prep["y"].to_numpy())
        else:
            fcst.fit(df, static_features=static_cols)
        out = fcst.predict(h, X_df=X_df)
    return out[["unique_id", "ds", "LGBM"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stores", type=int, default=20, help="random stores (seed 0); 45 = all")
    p.add_argument("--variant", default="{}", help="JSON options, see above")
    p.add_argument("--name", default="variant")
    a = p.parse_args()
    opts = json.loads(a.variant)
    warnings.simplefilter("ignore")

    from features.load import load_dataset
    from features.series import build_series
    from training.forecast.config import ForecastConfig
    from training.forecast.models import stats_forecast

    s = build_series(load_dataset("walmart"))
    stores = s.nodes[s.nodes.level == "store"].unique_id.to_numpy()
    rng = np.random.default_rng(0)
    pick = set(rng.choice(stores, a.stores, replace=False)) if a.stores < len(stores) else set(stores)
    n = s.nodes
    keep = n[(n.level == "store") & n.unique_id.isin(pick) | (n.level == "dept") & n.parent.isin(pick)]
    if opts.get("all_nodes"):
        keep = n
    ids = set(keep.unique_id)
    sub = replace(
        s,
        Y=s.Y[s.Y.unique_id.isin(ids)].reset_index(drop=True),
        nodes=keep.reset_index(drop=True),
        static=s.static[s.static.unique_id.isin(ids)].reset_index(drop=True),
    )
    dept = set(keep[keep.level == "dept"].unique_id)
    base = ForecastConfig().lgbm_params
    cfg = ForecastConfig(lgbm_params={**base, "n_jobs": 1, **opts.get("params", {})})
    cutoffs = [pd.Timestamp(c) for c in CUTOFFS]
    t0 = time.time()
    parts = []
    for c in cutoffs:
        train = sub.truncate(c)
        lg = lgbm_variant(sub, train, c, 13, cfg, opts)
        sn = stats_forecast(sub, train, 13, cfg, auto=False)
        f = sn.merge(lg, on=["unique_id", "ds"]).merge(sub.Y, on=["unique_id", "ds"])
        f["cutoff"] = c
        parts.append(f)
    f = pd.concat(parts)
    f = f[f.unique_id.isin(dept)].copy()
    f[["LGBM", "SeasonalNaive"]] = f[["LGBM", "SeasonalNaive"]].clip(lower=0)

    def wape(d: pd.DataFrame, col: str) -> float:
        return float((d.y - d[col]).abs().sum() / d.y.abs().sum())

    cal, ev = f[f.cutoff == cutoffs[0]], f[f.cutoff != cutoffs[0]].copy()
    grid = np.round(np.arange(0, 1.01, 0.1), 1)
    calw = {w: wape(cal.assign(b=w * cal.LGBM + (1 - w) * cal.SeasonalNaive), "b") for w in grid}
    wbest = min(calw, key=calw.get)
    for w in (0.5, wbest):
        ev[f"B{w}"] = w * ev.LGBM + (1 - w) * ev.SeasonalNaive
    sn = wape(ev, "SeasonalNaive")
    row = {
        "name": a.name,
        "stores": a.stores,
        "secs": round(time.time() - t0),
        "sn_wape": round(sn, 4),
        "lgbm_ratio": round(wape(ev, "LGBM") / sn, 4),
        "blend05_ratio": round(wape(ev, "B0.5") / sn, 4),
        "w_cal": float(wbest),
        "blend_wcal_ratio": round(wape(ev, f"B{wbest}") / sn, 4),
        "cal_lgbm_ratio": round(wape(cal, "LGBM") / wape(cal, "SeasonalNaive"), 4),
        "lgbm_ratio_per_cutoff": [
            round(wape(g, "LGBM") / wape(g, "SeasonalNaive"), 3) for _, g in ev.groupby("cutoff")
        ],
        "variant": opts,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
