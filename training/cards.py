"""Model cards: one Markdown page per registered version, built from what the run and the registry recorded.

Written as the run artifact ``model_card_v<N>.md`` by each trainer once the version is registered and tagged,
before the gate (:func:`log_card`), and printable with ``salesml models card NAME VERSION``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

__all__ = ["INTENDED_USE", "build_card", "log_card"]

INTENDED_USE = {
    "sales_forecast": (
        "Next-quarter sales planning: per-period and quarter-total forecasts with 80 % / 95 % ranges for every "
        "node of the spec's hierarchies, and target break-downs with the probability of reaching them.",
        "Ranges are calibrated on the backtest windows; a structural break (new stores, repricing, a pandemic) is "
        "not in them. Nodes with little history get wide, bottom-up driven ranges. Not for daily operations.",
    ),
    "churn_risk": (
        "Ranking customers by the risk of no purchase within the horizon, with reasons, so account managers "
        "can act on the riskiest and largest accounts first.",
        "Probabilities are calibrated on a later time slice of the same data; they drift when buying patterns "
        "change and must be re-checked after retraining. Reasons are model attributions, not causes. Not for "
        "decisions about individuals' credit, employment or pricing.",
    ),
    "lead_score": (
        "Prioritising open leads and deals (probability of conversion, grade A-D, top factors, expected value).",
        "Columns known only after the outcome are excluded by the spec and the leakage audit; a column the audit "
        "could not see (no timestamps) may still leak. Conversion rates move with campaigns and the economy.",
    ),
}


def _run_tables(client: Any, run_id: str) -> dict[str, Any]:
    """Small CSV artifacts of the run (metrics, bands, audit), read as frames when present."""
    import pandas as pd

    out = {}
    try:
        listing = client.list_artifacts(run_id, "tables")
    except Exception:
        return out
    for item in listing:
        name = item.path.rsplit("/", 1)[-1]
        if name.endswith(".csv") and any(k in name for k in ("metrics", "audit", "bands_test")):
            try:
                local = client.download_artifacts(run_id, item.path)
                out[name] = pd.read_csv(local)
            except Exception:
                continue
    return out


def _md_table(frame: Any, max_rows: int = 25) -> str:
    frame = frame.head(max_rows)
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _forecast_choice(params: dict[str, str], tags: dict[str, str]) -> list[str]:
    """The forecast's choice: what is served, on which cutoffs it was chosen, and its ratio per level."""
    on = params.get("chosen_on", "?")
    lines = [
        "## Forecast choice",
        f"- served as `chosen`: {params['chosen_model']}, chosen on the {on} cutoffs "
        f"({params.get('choice_cutoffs', '?')}); the evaluation cutoffs ({params.get('backtest_cutoffs', '?')}) "
        + ("only measured it" if on == "calibration" else "also chose it: its figures carry that choice"),
        f"- LightGBM objective: {params.get('lgbm_objective', '?')}; baselines: {params.get('baselines', '?')}; "
        f"share of zero periods at the bottom: {params.get('intermittent_share', '?')}",
    ]
    try:
        per_level = json.loads(params.get("level_models", "{}"))
    except ValueError:
        per_level = {}
    for level, model in per_level.items():
        ratio = tags.get(f"metric.ratio_{level}")
        shown = f"{float(ratio):.3f}" if ratio else "?"
        lines.append(f"- {level}: {model}; WAPE / best baseline on the evaluation windows {shown}")
    return lines


def build_card(name: str, version: str) -> str:
    """The Markdown card of ``name`` version ``version`` (registry tags, run params / metrics, audit trail)."""
    from mlflow import MlflowClient

    from training.registry import history

    client = MlflowClient()
    mv = client.get_model_version(name, str(version))
    tags = dict(mv.tags or {})
    run = client.get_run(mv.run_id) if mv.run_id else None
    params = dict(run.data.params) if run else {}
    metrics = dict(run.data.metrics) if run else {}
    use, limits = INTENDED_USE.get(name.partition(".")[0], ("(not stated)", "(not stated)"))
    lines = [
        f"# Model card: {name} v{version}",
        "",
        f"- Registered: {datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC):%Y-%m-%d %H:%M} UTC",
        f"- Run: `{mv.run_id}`",
        f"- Data set: `{tags.get('dataset', params.get('dataset', '?'))}`, spec fingerprint `{tags.get('spec_fingerprint', params.get('spec_fingerprint', '?'))}`",
        f"- Evaluation key: `{tags.get('eval_key', '?')}` (the gate compares versions only on the same one)",
        f"- Data cut-off: {tags.get('data_cutoff') or params.get('data_cutoff') or '(not recorded)'}",
        "",
        "## Intended use",
        use,
        "",
        "## Limits",
        limits,
        "",
        "## Training data and window",
    ]
    window = {
        k: v
        for k, v in params.items()
        if k.startswith(("slice.", "backtest", "cutoff", "train", "horizon", "freq"))
    }
    lines += [f"- {k}: {v}" for k, v in sorted(window.items())] or ["- (not recorded)"]
    feats = [params.get("features_numeric", ""), params.get("features_categorical", "")]
    if any(feats):
        lines += ["", "## Features", f"- numeric: {feats[0] or '-'}", f"- categorical: {feats[1] or '-'}"]
    lines += ["", "## Headline metrics (registered)"]
    lines += [
        f"- {k.removeprefix('metric.')}: {float(v):.4f}"
        for k, v in sorted(tags.items())
        if k.startswith("metric.")
    ]
    tables = _run_tables(client, mv.run_id) if run else {}
    if "metrics.csv" in tables:
        lines += ["", "## Metrics against baselines (evaluation data)", _md_table(tables["metrics.csv"])]
    elif metrics:
        lines += ["", "## Run metrics", *[f"- {k}: {v:.4f}" for k, v in sorted(metrics.items())][:60]]
    if "chosen_model" in params:
        lines += ["", *_forecast_choice(params, tags)]
    if "calibration" in params:
        lines += [
            "",
            "## Calibration",
            f"- method: {params['calibration']}",
            f"- ECE (10 bins, test): {metrics.get('ece', float('nan')):.4f}",
        ]
        if "blend_lightgbm_share" in params:
            lines.append(
                f"- score: LightGBM share {params['blend_lightgbm_share']} of the log-odds, the rest logistic"
                " regression (chosen on the calibration slice)"
            )
    if "bands_test.csv" in tables:
        lines += ["", "## Bands on the test slice", _md_table(tables["bands_test.csv"])]
    audit = next((v for k, v in tables.items() if "audit" in k), None)
    lines += ["", "## Leakage audit"]
    if audit is not None:
        lines.append(_md_table(audit))
    else:
        lines.append(params.get("audit.excluded", "(no audit for this model type)"))
    lines += ["", "## Promotion history of this version"]
    mine = [r for r in history(name) if str(r.get("version")) == str(version)]
    if mine:
        for r in mine:
            lines.append(
                f"- {r['at']}: {r['action']} by {r.get('by', '?')} (previous champion v{r.get('previous') or '-'}): "
                f"{r.get('reason', '')} deltas {json.dumps(r.get('deltas', {}))}"
            )
    else:
        lines.append("- never gated")
    return "\n".join(lines) + "\n"


def log_card(name: str, version: str) -> str:
    """Build the card and store it as the run artifact ``model_card_v<version>.md``; returns the Markdown."""
    from mlflow import MlflowClient

    client = MlflowClient()
    card = build_card(name, version)
    mv = client.get_model_version(name, str(version))
    if mv.run_id:
        client.log_text(mv.run_id, card, f"model_card_v{version}.md")
    return card
