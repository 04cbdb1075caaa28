"""The MLflow pyfunc wrapper: the saved forecast artifacts, served without refitting.

``predict`` takes a frame with optional columns ``unique_id`` (node ids) and ``level`` and returns the
per-period forecasts of the matching nodes (all nodes for an empty frame). The BentoML service can call
:mod:`training.forecast.serve_api` on the loaded model for quarter totals and target plans.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from training.forecast.artifacts import ForecastArtifacts

__all__ = ["ARTIFACT_KEY", "SalesForecastModel"]

ARTIFACT_KEY = "forecast"


class SalesForecastModel(mlflow.pyfunc.PythonModel):
    """Holds :class:`ForecastArtifacts` as ``artifacts_`` once loaded."""

    def __init__(self) -> None:
        self.artifacts_: ForecastArtifacts | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.artifacts_ = ForecastArtifacts.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ARG002
        from training.forecast.serve_api import forecast_nodes

        nodes = level = None
        if isinstance(model_input, pd.DataFrame) and len(model_input):
            if "unique_id" in model_input.columns:
                ids = model_input["unique_id"].dropna().astype(str).tolist()
                nodes = ids or None
            if "level" in model_input.columns:
                levels = model_input["level"].dropna().astype(str).unique().tolist()
                level = levels[0] if levels else None
        out = forecast_nodes(self.artifacts_, nodes=nodes, level=level)
        out["ds"] = out["ds"].astype("datetime64[ns]")
        return out
