"""Drift per feature: today's distribution against the training one, on bins fixed at training.

Each feature is profiled once at training (:func:`profile_frame`: deciles for numbers, the 20 most frequent
values for categories, one bin for missing values); later samples are counted on the same bins. Two numbers
per feature: the population stability index (PSI, the usual effect size) and the p-value of a chi-square test of
homogeneity on the 2 x k table of training and current counts, which holds its false-alarm rate at every pair of
sample sizes. A feature is **flagged** when the Holm-adjusted p-value (over the features checked) is below
``alpha`` *and* the PSI is at least ``min_psi``: the test keeps noise in small samples from being flagged (a fixed
PSI threshold alone flags it), the PSI floor keeps shifts that a very large sample makes detectable but that are
too small to matter from being flagged (a test alone flags them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2

from features.errors import SalesmlError

__all__ = ["FeatureProfile", "bin_counts", "drift_table", "holm", "profile_frame", "psi"]

OTHER = "(other)"
_MAX_CATEGORIES = 20


@dataclass(frozen=True)
class FeatureProfile:
    """A feature's training distribution on fixed bins.

    Attributes:
        name: the feature.
        kind: ``numeric`` (bins between ``edges``) or ``categorical`` (one bin per category, then ``(other)``).
        edges: numeric: the inner bin edges; bins are ``(-inf, e1], (e1, e2], ..., (ek, inf)``.
        categories: categorical: the training categories kept, then ``(other)``.
        counts: training rows per bin, the last bin being the missing values.
        n: training rows.
    """

    name: str
    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    n: int

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready plain lists, floats and ints (:meth:`from_dict` reads it back)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": [float(e) for e in self.edges],
            "categories": list(self.categories),
            "counts": [int(c) for c in self.counts],
            "n": int(self.n),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureProfile:
        """The profile written by :meth:`to_dict`.

        Raises:
            SalesmlError: a key missing, an unknown kind, or counts that do not fit the bins.
        """
        try:
            profile = cls(
                name=str(data["name"]),
                kind=data["kind"],
                edges=tuple(float(e) for e in data["edges"]),
                categories=tuple(str(c) for c in data["categories"]),
                counts=tuple(int(c) for c in data["counts"]),
                n=int(data["n"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SalesmlError(
                f"a feature profile needs name, kind, edges, categories, counts and n; reading "
                f"{str(dict(data).get('name', '?'))!r} failed on {exc!r}"
            ) from None
        bins = len(profile.edges) + 1 if profile.kind == "numeric" else len(profile.categories)
        if profile.kind not in ("numeric", "categorical") or len(profile.counts) != bins + 1:
            raise SalesmlError(
                f"feature profile {profile.name!r}: expected kind numeric or categorical and {bins + 1} counts "
                f"(one per bin, then missing values); found kind {profile.kind!r} and {len(profile.counts)} "
                "counts; profile the training rows again with profile_frame"
            )
        if profile.kind == "categorical" and OTHER not in profile.categories:
            raise SalesmlError(
                f"feature profile {profile.name!r} has no {OTHER!r} bin for categories unseen in training; "
                "profile the training rows again with profile_frame"
            )
        return profile


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def profile_frame(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, *, bins: int = 10
) -> dict[str, FeatureProfile]:
    """Profiles of ``columns`` (default: all) of the training ``frame``."""
    out = {}
    for col in columns if columns is not None else list(frame.columns):
        values = frame[col]
        if _is_numeric(values):
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            finite = x[np.isfinite(x)]
            edges = (
                tuple(np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])))
                if len(finite)
                else ()
            )
            profile = FeatureProfile(str(col), "numeric", tuple(float(e) for e in edges), (), (), len(x))
        else:
            top = values.dropna().astype(str).value_counts().head(_MAX_CATEGORIES).index.tolist()
            profile = FeatureProfile(str(col), "categorical", (), (*sorted(top), OTHER), (), len(values))
        counts = bin_counts(profile, values)
        out[str(col)] = FeatureProfile(
            profile.name,
            profile.kind,
            profile.edges,
            profile.categories,
            tuple(int(c) for c in counts),
            profile.n,
        )
    return out


def bin_counts(profile: FeatureProfile, values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Counts of ``values`` on the profile's bins (the last one: missing values)."""
    series = pd.Series(values)
    if profile.kind == "numeric":
        x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        missing = ~np.isfinite(x)
        idx = np.searchsorted(np.asarray(profile.edges, dtype=float), x[~missing], side="left")
        counts = np.bincount(idx, minlength=len(profile.edges) + 1)
        return np.append(counts, int(missing.sum()))
    missing = series.isna().to_numpy()
    text = series[~missing].astype(str)
    known = {c: i for i, c in enumerate(profile.categories)}
    other = known[OTHER]
    idx = text.map(known).fillna(other).astype(int).to_numpy()
    counts = np.bincount(idx, minlength=len(profile.categories))
    return np.append(counts, int(missing.sum()))


def psi(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of two count vectors on the same bins (proportions floored at ``eps``)."""
    p = np.maximum(np.asarray(reference, float) / max(np.sum(reference), 1), eps)
    q = np.maximum(np.asarray(current, float) / max(np.sum(current), 1), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def _homogeneity(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square statistic and p-value of the 2 x k table (bins empty in both dropped)."""
    table = np.vstack([reference, current]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return stat, float(chi2.sf(stat, table.shape[1] - 1))


def holm(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error), in the input order, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * (n - np.arange(n)))
    out = np.empty(n)
    out[order] = np.minimum(stepped, 1.0)
    return out


def drift_table(
    reference: Mapping[str, FeatureProfile],
    current: pd.DataFrame,
    *,
    alpha: float = 0.01,
    min_psi: float = 0.1,
) -> pd.DataFrame:
    """Per profiled feature: ``feature, kind, n_reference, n_current, psi, statistic, p_value, p_adjusted,
    flagged``, flagged first, then by PSI.

    Raises:
        SalesmlError: a profiled feature missing from ``current``.
    """
    missing = [name for name in reference if name not in current.columns]
    if missing:
        raise SalesmlError(
            f"the current rows lack {len(missing)} feature(s) the training profile has: {missing[:10]}; "
            "expected the same features the model was trained on"
        )
    rows = []
    for name, profile in reference.items():
        ref = np.asarray(profile.counts)
        cur = bin_counts(profile, current[name])
        stat, p = _homogeneity(ref, cur)
        rows.append(
            {
                "feature": name,
                "kind": profile.kind,
                "n_reference": int(ref.sum()),
                "n_current": int(cur.sum()),
                "psi": psi(ref, cur),
                "statistic": stat,
                "p_value": p,
            }
        )
    table = pd.DataFrame(
        rows, columns=["feature", "kind", "n_reference", "n_current", "psi", "statistic", "p_value"]
    )
    table["p_adjusted"] = holm(table["p_value"].to_numpy())
    table["flagged"] = (table["p_adjusted"] < alpha) & (table["psi"] >= min_psi)
    return table.sort_values(["flagged", "psi"], ascending=[False, False], kind="stable").reset_index(
        drop=True
    )
