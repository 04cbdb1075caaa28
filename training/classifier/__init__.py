"""The one classifier trainer, shared by churn risk and lead / deal scoring.

``train_classifier(data, config)``:

1. splits the examples into train / calibration / test slices, in time order (``split="time"``: later slices
   hold later times; rows whose label window reaches into the next slice are purged) or, for snapshot data
   without time, stratified with a fixed seed (``split="stratified"``);
2. searches LightGBM hyperparameters with Optuna on the calibration slice (bounded by trials and seconds;
   linear trees are left out because LightGBM cannot give per-row contributions for them);
3. chooses the probability calibration (none / sigmoid / isotonic) by Brier score in a two-fold split of the
   calibration slice, then fits the chosen one on the whole slice;
4. fits the baselines on the same slices: logistic regression and each rule (one column used as a score:
   a numeric one oriented on the train slice, a categorical one as its level's train-slice target rate;
   isotonic-calibrated on the calibration slice);
   with ``TrainConfig(refit="train+calibration")`` the model and the logistic baseline are then refitted on
   train + calibration rows (calibrators and bands stay fitted out of sample, see :class:`TrainConfig`);
5. chooses band thresholds (risk tiers or grades A-D) at fixed shares of the calibration slice's probabilities,
   or of the final model's on the rows it will score (``train_classifier(band_population=...)``);
6. reports every metric on the untouched test slice.

The fitted :class:`ScoringModel` scores a frame of feature rows: probability, band and the top signed factors
(LightGBM ``pred_contrib``, in log-odds, with the feature's value). :func:`log_and_register` makes the run one
MLflow run, logs the model as a pyfunc with a signature and an input example, registers it, tags the version
with its evaluation key and metrics, and (optionally) applies the shared promotion gate.

The modules, in the order a training run uses them:

- :mod:`~training.classifier.config`: :class:`ClassifierData` (the examples) and :class:`TrainConfig`;
- :mod:`~training.classifier.split`: the train / calibration / test slices, recency weights, the search's gap;
- :mod:`~training.classifier.pipelines`: the LightGBM and logistic pipelines, :class:`LinearPart`;
- :mod:`~training.classifier.search`: the Optuna search;
- :mod:`~training.classifier.calibration`: :class:`Calibrator`;
- :mod:`~training.classifier.selection`: calibration method, blend share and band thresholds, rule baselines;
- :mod:`~training.classifier.scoring`: :class:`ScoringModel` (what is logged and served) and
  :mod:`~training.classifier.lean`, its LightGBM fast path;
- :mod:`~training.classifier.train`: :func:`train_classifier` and its :class:`TrainedClassifier`;
- :mod:`~training.classifier.report`: metrics table, plots, decision report;
- :mod:`~training.classifier.mlflow_io`: :func:`log_and_register`, :func:`load_scoring_model`.

Models pickled before this was a package (one module, ``training/classifier.py``) name their classes
``training.classifier.ScoringModel``, ``training.classifier.Calibrator``, ``training.classifier.LinearPart`` and
``training.classifier.ToCategory``: those four stay importable from here so that such models still load
(``tests/unit/test_classifier.py::test_models_pickled_under_the_old_module_paths_load``). Do not drop them from
this module while such models may be in a registry. Models pickled since name the modules below
(``training.classifier.scoring.ScoringModel``, ``training.classifier.pipelines.ToCategory``, ...): moving one of
those classes needs the same care.
"""

from training.classifier.calibration import Calibrator
from training.classifier.config import ClassifierData, TrainConfig
from training.classifier.mlflow_io import load_scoring_model, log_and_register
from training.classifier.pipelines import LinearPart, ToCategory
from training.classifier.report import decision_report, metrics_table, plot_diagnostics
from training.classifier.scoring import EncodedRows, ScoringModel
from training.classifier.train import TrainedClassifier, train_classifier

__all__ = [
    "Calibrator",
    "ClassifierData",
    "EncodedRows",
    "LinearPart",
    "ScoringModel",
    "ToCategory",
    "TrainConfig",
    "TrainedClassifier",
    "decision_report",
    "load_scoring_model",
    "log_and_register",
    "metrics_table",
    "plot_diagnostics",
    "train_classifier",
]
