"""Lead-scoring benchmarks on the public data sets (see benchmarks/README.md, section "Lead scoring").

    nice -n 5 .venv/bin/python benchmarks/leads.py [--trials 15] [--only bank|bank-time|bank-no-period|xedu|crm]
        [--out FILE.json]
        [--refit train|train+calibration] [--recency-halflife ROWS_OR_DAYS] [--n-jobs N] [--seeds 42 1 2]

* bank-marketing (bank-additional-full) without ``duration``: the later 20 % of rows held out (time order),
  model vs logistic regression vs the best single feature; a random (stratified) split beside it, labelled.
* x-education, stratified 20 % held out: ROC AUC without the audit-flagged columns (the shipped model) and with
  them kept (what the leak would add).
* crm deals, time-ordered by engage date: model vs the agent's point-in-time win rate.
* ``--only bank-walk-forward``: the same later 20 % of bank-marketing, scored in ``--blocks`` consecutive blocks
  (default 8, about 1,000 contacts each), each by the trainer re-run (search, blend, calibration, refit) on the
  rows before its block only, as a deployment that retrains on every new batch of outcomes would (Moro et al.
  2014's "rolling window"). Every test row is still scored by a model that never saw it or anything after it,
  but later blocks are scored by models that learned from earlier test rows' outcomes, so this is **not** the
  frozen-model figure the issue's target names; it is reported beside it, labelled.

``--seeds``: run every selected case once per ``random_state`` (the trainer's default is 42; it seeds the
Optuna search, LightGBM and stratified splits), the seed named in the case label.

Nothing is registered; figures are printed as a Markdown table and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.load import load_dataset
from training.leads import LeadTraining, train_leads

COLS = ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "base_rate", "n")


def _rows(label: str, training, seconds: float) -> list[dict]:
    out = []
    for model, m in training.metrics.items():
        out.append(
            {"case": label, "model": model, **{k: m.get(k) for k in COLS}, "seconds": round(seconds, 1)}
        )
    return out


def _run(label: str, dataset: str, trials: int, **kwargs) -> tuple[list[dict], object]:
    start = time.perf_counter()
    training = train_leads(load_dataset(dataset), n_trials=trials, timeout_s=600, **kwargs)
    rows = _rows(label, training, time.perf_counter() - start)
    for r in rows:
        r["features"] = len(training.data.features)
        r["flagged"] = ",".join(training.audit.flagged) or "-"
        r["split"] = json.dumps(
            {k: training.result.slices.get(k) for k in ("split", "train", "test")}, default=str
        )
    bands = training.result.bands_test
    print(f"\n{label}: blend {training.result.blend}")
    print(f"{label}: grades on the test slice\n{bands.to_string(index=False)}")
    return rows, training


def _walk_forward(label: str, static: LeadTraining, blocks: int) -> list[dict]:
    """Score the static run's test slice block by block, each block by the trainer re-run on the rows before it.

    Same features (the static run's lead set and audit), same configuration (trials, blend, refit, seed); per
    block the rows before it are split 7 : 1 into train and calibration slices in time order, as the static
    70 / 10 split is. The pooled predictions of all blocks are scored once.
    """
    from dataclasses import replace

    from training.classifier import train_classifier
    from training.metrics import classification_metrics

    data, config = static.data, static.result.config
    times = data.frame[data.time_col]
    test_times = np.sort(static.result.test_predictions[data.time_col].unique())
    edges = [test_times[i[0]] for i in np.array_split(np.arange(len(test_times)), blocks) if len(i)]
    pooled, start = [], time.perf_counter()
    for k, first in enumerate(edges):
        last = edges[k + 1] if k + 1 < len(edges) else None
        sub = data.frame if last is None else data.frame[times < last]
        n_block = int((sub[data.time_col] >= first).sum())
        n_fit = len(sub) - n_block
        # half a row inside each boundary, so float rounding cannot move a row across it (the trainer cuts at
        # the first time whose cumulative share reaches the fraction)
        n_train = round(n_fit * 7 / 8)
        fractions = ((n_train - 0.5) / len(sub), (n_fit - n_train) / len(sub), (n_block + 0.5) / len(sub))
        result = train_classifier(replace(data, frame=sub), replace(config, fractions=fractions))
        pred = result.test_predictions
        print(
            f"{label}: block {k + 1}/{len(edges)} {result.slices['test']} ({len(pred)} rows, "
            f"base rate {pred['label'].mean():.3f}): fitted on {n_fit} earlier rows, blend {result.blend.get('lightgbm_share')}, "
            f"block ROC AUC {classification_metrics(pred['label'], pred['p_model'])['roc_auc']:.4f}"
        )
        pooled.append(pred)
    every = pd.concat(pooled, ignore_index=True)
    want = static.result.test_predictions
    if len(every) != len(want) or set(every[data.id_col]) != set(want[data.id_col]):
        raise RuntimeError(f"walk-forward scored {len(every)} rows, the static test slice has {len(want)}")
    seconds = time.perf_counter() - start
    rows = []
    for col in [c for c in every.columns if c.startswith("p_")]:
        m = classification_metrics(every["label"], every[col])
        row = {"case": label, "model": col[2:], **{k: m.get(k) for k in COLS}, "seconds": round(seconds, 1)}
        rows.append({**row, "features": len(data.features), "blocks": blocks})
        print(f"{label}: pooled {json.dumps(row)}")
    return rows


def _spec_without(name: str, columns: list[str], keys: tuple[str, ...] = ()) -> Path:
    """A copy of a built-in spec with some columns unmapped and some table keys (e.g. ``period_columns``)
    removed (written to a temporary folder)."""
    import tempfile

    import yaml

    from features.spec import BUILTIN_SPEC_DIR

    spec = yaml.safe_load((BUILTIN_SPEC_DIR / f"{name}.yaml").read_text())
    for table in spec["tables"].values():
        for col in columns:
            table["columns"].pop(col, None)
            table.get("types", {}).pop(col, None)
        for key in keys:
            table.pop(key, None)
    path = Path(tempfile.mkdtemp(prefix="salesml-bench-")) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=15, help="Optuna trials per model")
    parser.add_argument(
        "--only",
        choices=["bank", "bank-time", "bank-no-period", "bank-variants", "bank-walk-forward", "xedu", "crm"],
        help="run one case (group) only (bank-time: bank-marketing's time split only)",
    )
    parser.add_argument(
        "--refit",
        choices=["train", "train+calibration"],
        default=None,
        help="rows the final model is fitted on (TrainConfig.refit); default: training/leads.py's default",
    )
    parser.add_argument(
        "--recency-halflife",
        type=float,
        default=None,
        help="recency weighting half-life (days, or rows for row-ordered data); default: none",
    )
    parser.add_argument("--n-jobs", type=int, default=None, help="LightGBM threads (default: the trainer's)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="random_state values, each selected case once per seed (default: the trainer's, 42)",
    )
    parser.add_argument(
        "--blocks", type=int, default=8, help="bank-walk-forward: blocks of the test slice, one refit each"
    )
    parser.add_argument(
        "--no-blend",
        action="store_true",
        help="LightGBM alone (no LightGBM + logistic blend chosen on calibration)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/salesml-benchmark-leads.json"), help="JSON output"
    )
    args = parser.parse_args()
    fit = {
        "refit": args.refit,
        "recency_halflife": args.recency_halflife,
        "n_jobs": args.n_jobs,
        "blend": not args.no_blend,
    }
    rows: list[dict] = []
    for seed in args.seeds or [None]:
        if seed is not None:
            fit["random_state"] = seed
        start = len(rows)
        bank_time = f"bank-marketing, later 20% held out (time order), refit {args.refit or 'default'}"
        if args.only in (None, "bank", "bank-time"):
            rows += _run(bank_time, "bank-marketing", args.trials, **fit)[0]
        if args.only == "bank-walk-forward":
            shipped, static = _run(bank_time, "bank-marketing", args.trials, **fit)
            rows += shipped
            wf = f"bank-marketing, later 20%, WALK-FORWARD: retrained before each of {args.blocks} blocks"
            rows += _walk_forward(wf, static, args.blocks)
        if args.only == "bank-no-period":
            # Before the period context (contacts per earlier day, win rate of earlier days): the spec without
            # period_columns, everything else the same.
            spec = _spec_without("bank-marketing", [], keys=("period_columns",))
            label = f"bank-marketing, later 20% held out, no period context, refit {args.refit or 'default'}"
            rows += _run(label, str(spec), args.trials, **fit)[0]
        if args.only in (None, "bank"):
            rows += _run(
                "bank-marketing, RANDOM stratified 20% (optimistic)",
                "bank-marketing",
                args.trials,
                split="stratified",
                **fit,
            )[0]
        if args.only == "bank-variants":
            # Which features carry over time? The same split with the macro context (5 monthly indicators) or
            # the calendar month left out of the spec.
            for label, drop in (
                (
                    "no macro context",
                    ["emp_var_rate", "cons_price_idx", "cons_conf_idx", "euribor3m", "nr_employed"],
                ),
                (
                    "no macro context, no month",
                    ["emp_var_rate", "cons_price_idx", "cons_conf_idx", "euribor3m", "nr_employed", "month"],
                ),
            ):
                spec = _spec_without("bank-marketing", drop)
                rows += _run(f"bank-marketing, later 20% held out, {label}", str(spec), args.trials, **fit)[0]
        if args.only in (None, "xedu"):
            shipped, training = _run(
                "x-education, stratified 20%, flagged columns excluded", "x-education", args.trials, **fit
            )
            rows += shipped
            rows += _run(
                "x-education, stratified 20%, flagged columns KEPT (leaky)",
                "x-education",
                args.trials,
                keep_despite_audit=training.audit.flagged,
                **fit,
            )[0]
        if args.only in (None, "crm"):
            rows += _run("crm deals, time order by engage date", "crm", args.trials, **fit)[0]
        if seed is not None:
            for r in rows[start:]:
                r["case"] += f", seed {seed}"
                r["seed"] = seed
    header = ["case", "model", *COLS, "features", "seconds"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        cells = [f"{r[h]:.4f}" if isinstance(r[h], float) and h != "seconds" else str(r[h]) for h in header]
        print("| " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "trials": args.trials,
        "refit": args.refit,
        "recency_halflife": args.recency_halflife,
        "n_jobs": args.n_jobs,
        "seeds": args.seeds,
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
