"""The bounded LightGBM hyperparameter search (Optuna, scored by ROC AUC on the calibration slice)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from training.classifier.config import ClassifierData, TrainConfig
from training.classifier.pipelines import lgbm_pipeline

__all__ = ["search_params"]


def search_params(
    data: ClassifierData, config: TrainConfig, X_tr, y_tr, X_cal, y_cal, w_tr: np.ndarray | None = None
) -> tuple[dict[str, Any], float, int]:
    import optuna
    from sklearn.metrics import roc_auc_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        params = {
            "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 64, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        }
        pipe = lgbm_pipeline(data, params, config).fit(X_tr, y_tr, model__sample_weight=w_tr)
        return roc_auc_score(y_cal, pipe.predict_proba(X_cal)[:, 1])

    sampler = optuna.samplers.TPESampler(seed=config.random_state)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # A sensible default first, so even a one-trial budget is a reasonable model.
    study.enqueue_trial(
        {
            "n_estimators": 200,
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_child_samples": 50,
            "reg_lambda": 1.0,
            "colsample_bytree": 0.8,
            "subsample": 0.8,
        }
    )
    start = time.perf_counter()
    study.optimize(objective, n_trials=config.n_trials, timeout=config.timeout_s)
    return dict(study.best_params), time.perf_counter() - start, len(study.trials)
