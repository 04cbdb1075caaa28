"""What a choice made on one calibration window is worth on the other: the study behind ``pool_size``.

    .venv/bin/python benchmarks/forecast_selection.py /tmp/forecast-suite

Reads the ``raw.parquet`` and ``cutoffs.csv`` that ``benchmarks/forecast_suite.py`` writes for each data set and
uses the **calibration cutoffs only**: rows of an evaluation cutoff and actuals after the first evaluation cutoff
are dropped before anything is computed (checked below), so nothing here can have been chosen on the windows the
suite reports. For every data set with two or more calibration cutoffs, each rule chooses on one calibration window
(the candidates' score: mean over levels of WAPE / best baseline's WAPE) and is measured on each other one:

- ``top1``: the best candidate alone (the rule before pooling);
- ``topK``: the mean of the K best candidates (K = 2, 3, 4);
- ``topK guarded``: ``topK`` only when its mean scores better than the best reconciled baseline on the choosing
  window, else ``top1`` (what the backtest does, :func:`training.forecast.backtest._choose_pool`).

The measure is the mean over levels of the rule's WAPE over the best baseline's WAPE at that level on the other
window (1.0 = as good as the best baseline in hindsight). Caveat: the candidates themselves (LightGBM objective,
blend weight, ensemble members, per-level bases) were set on both calibration windows together, so each
measured window had a small say in its own candidates.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from training.forecast.backtest import _choose_pool
from training.forecast.select import level_wape, ratio_score

RULES = ("top1", "top2", "top3", "top4")


def _calibration_rows(folder: Path) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    cuts = pd.read_csv(folder / "cutoffs.csv", parse_dates=["cutoff"])
    cal = sorted(cuts.loc[cuts["role"] == "calibration", "cutoff"])
    first_eval = cuts.loc[cuts["role"] == "evaluation", "cutoff"].min()
    window = int(cuts["window"].iloc[0])
    raw = pd.read_parquet(folder / "raw.parquet")
    keep = raw["cutoff"].isin(cal) & (raw["step"] <= window) & (raw["ds"] <= first_eval) & raw["y"].notna()
    rows = raw[keep].reset_index(drop=True)
    assert rows["cutoff"].max() < first_eval and rows["ds"].max() <= first_eval  # no evaluation window
    return rows, cal


def study(folder: Path) -> list[dict]:
    """One row per (choosing window, rule) of one data set's suite output."""
    info = json.loads((folder / "result.json").read_text())
    rows, cal = _calibration_rows(folder)
    if len(cal) < 2:
        return []
    levels = info["levels"]
    baselines = sorted({b["model"] for b in info["baselines"]})
    candidates = [c for c in rows.columns if "/" in c]
    out = []
    for choose, measure in [(a, b) for a in cal for b in cal if a != b]:
        a, b = rows[rows["cutoff"] == choose].copy(), rows[rows["cutoff"] == measure].copy()
        score = ratio_score(level_wape(a, [*baselines, *candidates], levels), candidates, baselines)
        ranked = [str(c) for c in score.sort_values(kind="stable").index]
        for rule in RULES:
            b[rule] = b[ranked[: int(rule[3:])]].mean(axis=1)
        wb = level_wape(b, [*baselines, *RULES], levels)
        best_b = wb[baselines].min(axis=1).clip(lower=1e-12)
        for rule in RULES:
            size = int(rule[3:])
            # the backtest's own rule: the pool only where its mean beats the best reconciled baseline
            guarded = (
                rule if size == 1 or _choose_pool(a, score, ranked, baselines, size, levels)[0] else "top1"
            )
            out.append(
                {
                    "data set": folder.name,
                    "chose on": str(choose.date()),
                    "measured on": str(measure.date()),
                    "rule": rule,
                    "measured": float((wb[rule] / best_b).mean()),
                    "guarded": float((wb[guarded] / best_b).mean()),
                    "worst level": float((wb[rule] / best_b).max()),
                }
            )
    return out


def _markdown(frame: pd.DataFrame) -> str:
    """A small Markdown table (index columns first), without an extra dependency."""
    flat = frame.reset_index()
    flat.columns = [
        " ".join(str(p) for p in c if p) if isinstance(c, tuple) else str(c) for c in flat.columns
    ]
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in flat.to_numpy()]
    lines = ["| " + " | ".join(flat.columns) + " |", "|" + "---|" * len(flat.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suite", type=Path, help="the --out folder of benchmarks/forecast_suite.py")
    parser.add_argument(
        "--only", nargs="*", default=None, help="data sets to study (default: every one there)"
    )
    args = parser.parse_args()
    rows = []
    for folder in sorted(p for p in args.suite.iterdir() if (p / "raw.parquet").exists()):
        if args.only is None or folder.name in args.only:
            rows += study(folder)
    table = pd.DataFrame(rows)
    wide = table.pivot_table(
        index=["data set", "chose on", "measured on"], columns="rule", values=["measured", "guarded"]
    )
    print("Mean over levels of WAPE / best baseline on the other calibration window:\n")
    print(_markdown(wide))
    summary = table.groupby("rule")[["measured", "guarded", "worst level"]].agg(["mean", "median"])
    print("\nOver every data set and choosing window:\n")
    print(_markdown(summary))
    better = table.pivot_table(
        index=["data set", "chose on", "measured on"], columns="rule", values="guarded"
    )
    for rule in RULES[1:]:
        wins = int((better[rule] < better["top1"] - 1e-9).sum())
        losses = int((better[rule] > better["top1"] + 1e-9).sum())
        print(f"\n{rule} guarded against top1: better on {wins}, worse on {losses} of {len(better)} windows")


if __name__ == "__main__":
    main()
