"""MLflow I/O: one run per training, the model logged as a pyfunc and registered; loading it back."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from training.classifier.report import decision_report, metrics_table, plot_diagnostics
from training.classifier.scoring import ScoringModel
from training.classifier.train import TrainedClassifier

__all__ = ["load_scoring_model", "log_and_register"]


def _pyfunc_class():
    import mlflow.pyfunc

    class _ScoringPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:  # noqa: ANN001
            import joblib

            self.scoring = joblib.load(context.artifacts["scoring_model"])

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
            return self.scoring.predict(model_input).reset_index(drop=True)

    return _ScoringPyfunc


def log_and_register(
    result: TrainedClassifier,
    registered_name: str,
    dataset: Any,
    *,
    promote: bool = False,
    data_cutoff: str | None = None,
    extra_artifacts: Mapping[str, pd.DataFrame | str | Path] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    extra_params: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> tuple[str, Any]:
    """One MLflow run: params, spec + fingerprint, metrics of the model and every baseline, tables and plots as
    artifacts, the model as a pyfunc (signature + input example), registered under ``registered_name``.

    Returns the registered version and the gate decision (None when ``promote`` is False).
    """
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    from training.monitor.reference import REFERENCE_ARTIFACT, reference_profile
    from training.registry import configure, eval_key, promote_if_better, tag_version

    configure(
        registered_name.partition(".")[0]
    )  # one experiment per product; runs are tagged with the data set
    spec = dataset.spec
    fingerprint = spec.fingerprint()
    key = eval_key(
        fingerprint,
        registered_name,
        result.config.split,
        result.config.random_state,
        json.dumps(result.slices, sort_keys=True, default=str),
    )
    with (
        mlflow.start_run(run_name=run_name or f"{registered_name}-{spec.name}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        mlflow.set_tags(
            {
                "salesml.model": registered_name,
                "salesml.dataset": spec.name,
                "salesml.spec_fingerprint": fingerprint,
            }
        )
        params = {
            "dataset": spec.name,
            "spec_fingerprint": fingerprint,
            "features_numeric": ",".join(result.data.numeric),
            "features_categorical": ",".join(result.data.categorical),
            "calibration": result.calibration_report["chosen"],
            "blend_lightgbm_share": result.blend.get("lightgbm_share", 1.0),
            "band_thresholds": json.dumps(result.model.band_thresholds),
            "band_basis": result.band_basis,
            **{f"config.{k}": v for k, v in asdict(result.config).items()},
            **{f"best.{k}": v for k, v in result.best_params.items()},
            **{f"slice.{k}": v for k, v in result.slices.items()},
            **(extra_params or {}),
        }
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        flat = {
            f"{model}_{metric}": value for model, ms in result.metrics.items() for metric, value in ms.items()
        }
        flat.update(result.headline)  # roc_auc, brier, ... of the model itself: the gated names
        flat.update(extra_metrics or {})
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if v == v})
        mlflow.log_text(dataset.spec_path.read_text(), "spec.yaml")
        tables = {
            "metrics.csv": metrics_table(result),
            "bands_validation.csv": result.bands_validation,
            "bands_test.csv": result.bands_test,
            "importance.csv": result.importance,
            "test_predictions.parquet": result.test_predictions,
        }
        for name, value in (extra_artifacts or {}).items():
            if isinstance(value, pd.DataFrame):
                tables[name] = value
            else:
                mlflow.log_artifact(str(value))
        for name, table in tables.items():
            path = folder / name
            table.to_parquet(path, index=False) if name.endswith(".parquet") else table.to_csv(
                path, index=False
            )
            mlflow.log_artifact(str(path), artifact_path="tables")
        for path in plot_diagnostics(result, folder):
            mlflow.log_artifact(str(path), artifact_path="plots")
        mlflow.log_text(decision_report(result), "decision_report.md")
        mlflow.log_dict(
            reference_profile(
                result.data.frame, result.model.features, result.test_predictions["p_model"].to_numpy()
            ),
            REFERENCE_ARTIFACT,
        )

        joblib.dump(result.model, folder / "scoring_model.joblib")
        example = result.data.frame[result.model.features].head(5)
        example = result.model.prepare(example)
        signature = infer_signature(example, result.model.predict(example).reset_index(drop=True))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_class()(),
            artifacts={"scoring_model": str(folder / "scoring_model.joblib")},
            signature=signature,
            input_example=example,
            registered_model_name=registered_name,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    tag_version(
        registered_name,
        version,
        key,
        {k: result.headline[k] for k in ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile")},
        dataset=spec.name,
        dataset_spec=str(dataset.spec_path),
        spec_fingerprint=fingerprint,
        run_id=run_id,
        data_cutoff=data_cutoff or "",
    )
    decision = promote_if_better(registered_name, version) if promote else None
    return version, decision


def load_scoring_model(model_uri: str) -> ScoringModel:
    """The :class:`ScoringModel` inside a logged classifier (``models:/churn_risk@champion``, a run URI, ...).

    Call its ``predict`` with raw feature frames: it types the columns itself, so integer columns need no cast
    (MLflow's pyfunc schema enforcement would refuse int64 where the signature says double).
    """
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().scoring
