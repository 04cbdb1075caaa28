"""The fitted scoring model: probability, band and the top signed reasons for a frame of feature rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.errors import SalesmlError
from training.classifier.calibration import Calibrator, sigmoid
from training.classifier.lean import LeanInput, LeanLinear, prediction_threads
from training.classifier.pipelines import LinearPart

__all__ = ["EncodedRows", "ScoringModel"]


class ScoringModel:
    """A fitted, calibrated classifier with bands and per-row reasons; what the pyfunc wraps.

    With a ``linear`` part the uncalibrated score is ``sigmoid(lgbm_share * LightGBM log-odds + (1 - lgbm_share)
    * logistic log-odds)`` and the reasons blend both models' contributions the same way (see
    ``TrainConfig.blend_shares``).
    """

    linear: LinearPart | None = None  # class defaults: models pickled before the blend load as LightGBM alone
    lgbm_share: float = 1.0

    def __init__(
        self,
        pipeline: Pipeline,
        calibrator: Calibrator,
        numeric: list[str],
        categorical: list[str],
        band_labels: tuple[str, ...],
        band_thresholds: list[float],
        n_reasons: int = 3,
        linear: LinearPart | None = None,
        lgbm_share: float = 1.0,
    ):
        self.pipeline = pipeline
        self.calibrator = calibrator
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.band_labels = tuple(band_labels)
        self.band_thresholds = list(band_thresholds)
        self.n_reasons = n_reasons
        if not 0.0 <= lgbm_share <= 1.0 or (linear is None and lgbm_share != 1.0):
            raise SalesmlError(f"lgbm_share must be in [0, 1] (1 without a linear part), got {lgbm_share}")
        self.linear = linear
        self.lgbm_share = float(lgbm_share)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Select and type the feature columns; a missing column is an error that names it."""
        self._check_columns(frame)
        if not isinstance(frame, pd.DataFrame):  # a mapping of column arrays
            frame = pd.DataFrame({c: frame[c] for c in self.features})
        X = frame[self.features].copy()
        for col in self.numeric:
            X[col] = pd.to_numeric(X[col], errors="coerce").astype(float)
        for col in self.categorical:
            # Text as Python objects with missing values as np.nan, not pd.NA: scikit-learn's imputers test
            # missingness with ``x != x`` and fail on pd.NA ("boolean value of NA is ambiguous").
            X[col] = X[col].astype("string").astype(object).where(X[col].notna(), np.nan)
        return X

    def _check_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.features if c not in frame]  # a frame's columns or a mapping's keys
        if missing:
            raise SalesmlError(f"feature column(s) {missing} missing; the model expects {self.features}")

    # -- the lean path: one LightGBM input matrix per call ------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lean_cache", None)  # rebuilt from the pipeline on first use
        state.pop("_lean_linear_cache", None)
        return state

    def _lean(self) -> LeanInput | None:
        """How to build the booster's input matrix directly, or None when the pipeline is not the usual one."""
        model = self.pipeline.named_steps.get("model")
        booster = getattr(model, "_Booster", None)
        cached = self.__dict__.get("_lean_cache")
        if cached is not None and cached[0] is booster:
            return cached[1]
        lean = LeanInput.build(self, booster) if booster is not None else None
        self.__dict__["_lean_cache"] = (booster, lean)
        return lean

    def encode(self, frame: pd.DataFrame | Mapping[str, Any]) -> EncodedRows:
        """Type the feature columns once: what :meth:`score` needs (a missing column is an error naming it);
        ``frame``: a frame, or a mapping of column name -> array (the same values, without a frame's cost).

        With the usual pipeline (passthrough numbers, :class:`ToCategory` text, LightGBM) this builds LightGBM's
        input matrix directly (float64; numeric columns as :meth:`prepare` coerces them, then each text column
        as the code of its category in the booster, NaN for missing or unseen values), exactly what the
        pipeline would hand the booster; otherwise it keeps the prepared frame for the pipeline.
        """
        lean = self._lean()
        if lean is None:
            X = self.prepare(frame)
            return EncodedRows(
                None,
                X,
                X[self.numeric].to_numpy(dtype=np.float64),
                X[self.categorical].to_numpy(dtype=object),
            )
        self._check_columns(frame)
        n = len(frame) if isinstance(frame, pd.DataFrame) else len(frame[self.features[0]])
        M = np.empty((n, len(self.features)), dtype=np.float64)
        for j, col in enumerate(self.numeric):
            s = frame[col]
            if s.dtype.kind in "fiub":
                M[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(s, pd.Series) else s
            else:  # the same coercion as prepare(): text that is no number becomes missing
                M[:, j] = np.asarray(pd.to_numeric(s, errors="coerce"), dtype=np.float64)
        texts = np.empty((n, len(self.categorical)), dtype=object)
        base = len(self.numeric)
        for j, col in enumerate(self.categorical):
            if n <= SMALL_ROWS and _is_text(raw := np.asarray(frame[col], dtype=object)):
                # a few rows of plain text (what a request sends): looked up, without pandas' per-call cost
                codes = lean.code_of[j]
                M[:, base + j] = [codes.get(v, np.nan) if type(v) is str else np.nan for v in raw]
                texts[:, j] = [v if type(v) is str else np.nan for v in raw]
                continue
            s = frame[col] if isinstance(frame, pd.DataFrame) else pd.Series(frame[col], dtype=object)
            s = s.astype("string").astype(object)  # as prepare() + ToCategory: value -> text
            codes = pd.Categorical(s, categories=lean.categories[j]).codes
            mapped = lean.remap[j][codes]  # ToCategory's code -> the booster's code (-1: missing / unseen)
            M[:, base + j] = np.where(mapped < 0, np.nan, mapped)
            texts[:, j] = s.where(s.notna(), np.nan).to_numpy(dtype=object)
        return EncodedRows(M, None, M[:, :base], texts)

    def _tree(self, enc: EncodedRows, *, contrib: bool) -> np.ndarray:
        """LightGBM's log-odds, or (``contrib``) its per-feature contributions plus the bias column, which add
        up to them."""
        if enc.matrix is None:
            M = self.pipeline.named_steps["prepare"].transform(enc.prepared)
            booster, kw = self.pipeline.named_steps["model"].booster_, {}
        else:
            M, booster = enc.matrix, self._lean().booster  # type: ignore[union-attr]
            kw = {"num_threads": prediction_threads(len(enc))}
        return (
            booster.predict(M, pred_contrib=True, **kw)
            if contrib
            else booster.predict(M, raw_score=True, **kw)
        )

    def _linear(self, enc: EncodedRows) -> tuple[np.ndarray, np.ndarray]:
        """The linear part's log-odds and contributions: its preparation on the encoded arrays
        (:class:`LeanLinear`), or the pipeline's on the prepared frame (rebuilt from lean rows)."""
        linear = self.linear
        lean = self._lean_linear()
        if lean is not None:
            return linear.from_prepared(lean.transform(enc.numbers, enc.texts))  # type: ignore[union-attr]
        frame = enc.prepared if enc.prepared is not None else self._frame(enc)
        return linear.margin_and_contributions(frame)  # type: ignore[union-attr]

    def _lean_linear(self) -> LeanLinear | None:
        cached = self.__dict__.get("_lean_linear_cache")
        if cached is not None and cached[0] is self.linear:
            return cached[1]
        lean = None
        if self.linear is not None:
            prepare = self.linear.pipeline.named_steps["prepare"]
            lean = LeanLinear.build(prepare, self.numeric, self.categorical)
        self.__dict__["_lean_linear_cache"] = (self.linear, lean)
        return lean

    def _raw(self, enc: EncodedRows) -> np.ndarray:
        """Uncalibrated probabilities (no contributions: the cheap path for :meth:`predict_proba`)."""
        if self.linear is not None:
            w = self.lgbm_share
            return sigmoid(w * self._tree(enc, contrib=False) + (1.0 - w) * self._linear(enc)[0])
        if enc.matrix is None:
            return self.pipeline.predict_proba(enc.prepared)[:, 1]
        return self._lean().booster.predict(enc.matrix, num_threads=prediction_threads(len(enc)))  # type: ignore[union-attr]

    def _raw_and_contrib(self, enc: EncodedRows) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated probabilities and per-feature contributions (no bias column) from one encoding: LightGBM's,
        or with a linear part the blend of both models' (so they still add up to the score's log-odds)."""
        tree = self._tree(enc, contrib=True)
        if self.linear is None:
            return self._raw(enc), tree[:, :-1]
        w = self.lgbm_share
        m_lin, c_lin = self._linear(enc)
        margin = w * tree.sum(axis=1) + (1.0 - w) * m_lin  # LightGBM's log-odds: contributions + bias
        return sigmoid(margin), w * tree[:, :-1] + (1.0 - w) * c_lin

    def _frame(self, enc: EncodedRows) -> pd.DataFrame:
        """The prepared frame (as :meth:`prepare` gives it) rebuilt from encoded rows, for the linear part."""
        data = {c: enc.numbers[:, j] for j, c in enumerate(self.numeric)}
        data.update({c: enc.texts[:, j] for j, c in enumerate(self.categorical)})
        return pd.DataFrame(data, columns=self.features)

    # -- public API ---------------------------------------------------------------------------------------

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.calibrator.transform(self._raw(self.encode(frame)))

    def band(self, p: np.ndarray) -> np.ndarray:
        """Bands from the highest-probability one down; thresholds are lower bounds of each band but the last."""
        return self.band_of(p, self.band_thresholds, self.band_labels)

    @staticmethod
    def band_of(p: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]) -> np.ndarray:
        idx = np.zeros(len(p), dtype=int)
        for t in thresholds:
            idx += (np.asarray(p) < t).astype(int)
        return np.asarray(labels, dtype=object)[idx]

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Signed per-feature contributions (log-odds of the uncalibrated model), one column per feature."""
        contrib = self._raw_and_contrib(self.encode(frame))[1]
        return pd.DataFrame(contrib, columns=self.features, index=frame.index)

    def score(self, enc: EncodedRows) -> dict[str, np.ndarray]:
        """:meth:`predict`'s columns as arrays, for rows already encoded with :meth:`encode`."""
        raw, contrib = self._raw_and_contrib(enc)
        p = self.calibrator.transform(raw)
        out = {"probability": p, "band": self.band(p)}
        n, n_num = len(p), len(self.numeric)
        order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, : self.n_reasons]
        names = np.asarray(self.features, dtype=object)
        rows = np.arange(n)
        for k in range(min(self.n_reasons, contrib.shape[1])):
            cols = order[:, k]
            out[f"reason_{k + 1}"] = names[cols]
            out[f"reason_{k + 1}_contribution"] = contrib[rows, cols]
            values = np.empty(n, dtype=object)
            is_num = cols < n_num
            values[is_num] = _fmt_numbers(enc.numbers[rows[is_num], cols[is_num]])
            values[~is_num] = [_fmt(v) for v in enc.texts[rows[~is_num], cols[~is_num] - n_num]]
            out[f"reason_{k + 1}_value"] = values
        return out

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """probability, band and the top reasons (``reason_k``, ``reason_k_contribution``, ``reason_k_value``)."""
        return pd.DataFrame(self.score(self.encode(frame)), index=frame.index)


@dataclass(frozen=True)
class EncodedRows:
    """Feature rows typed once by :meth:`ScoringModel.encode`; :meth:`take` selects rows without re-encoding."""

    matrix: np.ndarray | None  # LightGBM's input (lean path), or None
    prepared: pd.DataFrame | None  # ScoringModel.prepare() output (pipeline path), or None
    numbers: np.ndarray  # the numeric features, float64, one row per row
    texts: np.ndarray  # the categorical features as text (np.nan = missing), one row per row

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, positions: np.ndarray | list[int]) -> EncodedRows:
        pos = np.asarray(positions, dtype=np.int64)
        return EncodedRows(
            None if self.matrix is None else self.matrix[pos],
            None if self.prepared is None else self.prepared.iloc[pos],
            self.numbers[pos],
            self.texts[pos],
        )


# Up to this many rows, text columns are encoded by look-up (see ScoringModel.encode); beyond, by pandas.
SMALL_ROWS = 64


def _is_text(values: np.ndarray) -> bool:
    """Only str and missing (None, float NaN): values whose text is themselves, as pandas' "string" gives it."""
    return all(type(v) is str or v is None or (type(v) is float and v != v) for v in values)


def _fmt_numbers(values: np.ndarray) -> list[str]:
    """:func:`_fmt` for floats: ``missing`` for NaN, else 4 significant digits."""
    return ["missing" if v != v else f"{v:.4g}" for v in values.tolist()]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
