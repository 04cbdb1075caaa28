"""What a training run reports: the metrics table, the diagnostic plots and the decision report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from training.classifier.train import TrainedClassifier
from training.metrics import reliability_table

__all__ = ["decision_report", "metrics_table", "plot_diagnostics"]


def metrics_table(result: TrainedClassifier) -> pd.DataFrame:
    return pd.DataFrame(result.metrics).T.rename_axis("model").reset_index()


def plot_diagnostics(result: TrainedClassifier, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    tp = result.test_predictions
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for name in [c.removeprefix("p_") for c in tp.columns if c.startswith("p_")]:
        rel = reliability_table(tp["label"], tp[f"p_{name}"])
        ax.plot(rel["predicted"], rel["observed"], marker="o", label=name)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Reliability (test slice)")
    ax.legend()
    paths.append(folder / "reliability.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name in [c.removeprefix("p_") for c in tp.columns if c.startswith("p_")]:
        order = np.argsort(-tp[f"p_{name}"].to_numpy(), kind="stable")
        gains = np.cumsum(tp["label"].to_numpy()[order]) / max(1, tp["label"].sum())
        ax.plot(np.arange(1, len(order) + 1) / len(order), gains, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(
        xlabel="share of rows, highest score first",
        ylabel="share of positives captured",
        title="Cumulative gains (lift)",
    )
    ax.legend()
    paths.append(folder / "lift.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    imp = result.importance.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(imp) + 1))
    ax.barh(imp["feature"], imp["mean_abs_contribution"])
    ax.set(xlabel="mean |contribution| (log-odds), test slice", title="Factor importance")
    paths.append(folder / "importance.png")
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def decision_report(result: TrainedClassifier) -> str:
    """A short human-readable account of what was chosen and why."""
    m = result.metrics
    lines = [
        f"# {result.data.label_col} classifier",
        "",
        f"Split: {json.dumps(result.slices, default=str)}",
        f"Search: {result.slices.get('trials')} trials in {result.search_seconds:.1f}s; best {json.dumps(result.best_params)}",
        f"Calibration: {result.calibration_report['chosen']} (out-of-fold Brier on the calibration slice: "
        + ", ".join(
            f"{k.removeprefix('brier_')} {v:.4f}"
            for k, v in result.calibration_report.items()
            if k.startswith("brier_")
        )
        + ")",
        f"Blend: LightGBM share {result.blend.get('lightgbm_share', 1.0)} of the log-odds, the rest logistic "
        f"regression ({result.blend.get('why', 'LightGBM alone')}; calibration-slice ROC AUC by share: "
        f"{result.blend.get('calibration_auc', {})})",
        f"Band thresholds (lower bounds, shares of the {result.band_basis}): {dict(zip(result.config.band_labels, result.model.band_thresholds, strict=False))}",
        "",
        "Test slice:",
        metrics_table(result).to_string(index=False, float_format=lambda v: f"{v:.4f}"),
        "",
        "Bands on the test slice:",
        result.bands_test.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
    ]
    best_base = max((k for k in m if k != "model"), key=lambda k: m[k]["roc_auc"], default=None)
    if best_base:
        lines.append(
            f"\nModel vs best baseline ({best_base}): ROC AUC {m['model']['roc_auc']:.4f} vs {m[best_base]['roc_auc']:.4f}, "
            f"Brier {m['model']['brier']:.4f} vs {m[best_base]['brier']:.4f}"
        )
    return "\n".join(lines)
