"""Behaviour before and after a change: the same trainings at two revisions, every MLflow metric side by side.

    nice -n 19 .venv/bin/python benchmarks/behaviour.py --before 2ff28cb --after HEAD --out /tmp/behaviour

Measures whether a restructuring changed what the trainers compute. Each revision is checked out into a
temporary detached git worktree (removed at the end, also on error) and trained there through its own command
line (``training.cli.main``), run by this checkout's ``.venv`` Python with ``PYTHONPATH`` on the worktree, so
both revisions use the same installed packages; every run prints the files of the modules it imported
(``training.cli``, ``training.classifier``, ...) and a run whose code is not its worktree's is an error. Each
revision gets a fresh ``SALESML_HOME`` (the MLflow SQLite store under it); the data sets are read from
``SALESML_DATA_DIR`` (default: ``../shared/datasets`` beside this checkout).

Trainings, one at a time, the same options and seeds at both revisions: churn on cdnow and telco, leads on
bank-marketing (``--seed 42``), the sales forecast on walmart (the full backtest, not ``--fast``). The Optuna
searches run a fixed number of trials (``--trials``) under a timeout (``--timeout``) long enough never to be
reached, so the search is not cut by wall time; LightGBM threads are each trainer's default (2 at both
revisions; the command line has no option), ``PYTHONHASHSEED=0``.

Every metric of each training's MLflow run is read back (each step if a metric has several) and compared:
``|after - before| <= --tol`` (default 1e-6), NaN equal to NaN. Wall-time metrics (``--timing``, default
``train_seconds``) are listed but not compared. Writes ``behaviour.csv``, ``behaviour.json`` and the trainings'
logs (``logs/``) into ``--out``; exits 1 when a metric differs or exists on one side only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TRAININGS: list[tuple[str, str, list[str]]] = [  # (data set, product, arguments after `salesml train`)
    ("cdnow", "churn", ["churn", "--dataset", "cdnow"]),
    ("telco", "churn", ["churn", "--dataset", "telco"]),
    ("bank-marketing", "leads", ["leads", "--dataset", "bank-marketing", "--seed", "42"]),
    ("walmart", "sales", ["sales", "--dataset", "walmart"]),
]
MARK = "behaviour.py imported:"
# Runs in the child: the revision's own CLI; the files of the modules it used are printed even when it exits.
CHILD = f"""
import sys
import training.cli
sys.argv = ["salesml", *sys.argv[1:]]
try:
    training.cli.main()
finally:
    for name in ("features", "training", "training.cli", "training.classifier", "training.forecast"):
        if name in sys.modules:
            print("{MARK}", name, sys.modules[name].__file__, file=sys.stderr, flush=True)
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def _run_ids(db: Path) -> set[str]:
    from mlflow import MlflowClient

    if not db.exists():
        return set()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id for r in client.search_runs(ids, max_results=10_000)} if ids else set()


def _metrics(db: Path, run_id: str) -> dict[str, float]:
    """Every metric the run logged; a metric with several steps gives one entry per step, ``name[step]``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    out: dict[str, float] = {}
    for key in client.get_run(run_id).data.metrics:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        for m in history:
            out[key if len(history) == 1 else f"{key}[{m.step}]"] = float(m.value)
    return out


def train_revision(label: str, commit: str, work: Path, data_dir: Path, args: argparse.Namespace) -> dict:
    """Train every selected data set at ``commit`` in its own worktree; returns metrics, timings, module files."""
    tree, home = work / f"tree-{label}", work / f"home-{label}"
    _git("worktree", "add", "--detach", str(tree), commit)
    home.mkdir()
    db = home / "models" / "mlflow.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the store is SALESML_HOME's
    env.update(
        PYTHONPATH=str(tree), SALESML_HOME=str(home), SALESML_DATA_DIR=str(data_dir), PYTHONHASHSEED="0"
    )
    result: dict = {"commit": commit, "metrics": {}, "seconds": {}, "modules": {}}
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    for dataset, product, train_args in TRAININGS:
        if dataset not in args.datasets:
            continue
        extra = ["--trials", str(args.trials), "--timeout", str(args.timeout)] if product != "sales" else []
        cmd = [sys.executable, "-c", CHILD, "train", *train_args, *extra]
        log_path = args.out / "logs" / f"{label}-{dataset}.log"
        print(f"[{label} {commit[:9]}] salesml train {' '.join(train_args + extra)}", flush=True)
        before, started = _run_ids(db), time.perf_counter()
        with log_path.open("w") as log:
            code = subprocess.run(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
        lines = log_path.read_text().splitlines()
        modules = dict(line.removeprefix(MARK).split()[:2] for line in lines if line.startswith(MARK))
        if code != 0:
            raise RuntimeError(
                f"{label} {dataset}: exit {code}; last lines of {log_path}:\n" + "\n".join(lines[-15:])
            )
        foreign = {n: f for n, f in modules.items() if not Path(f).resolve().is_relative_to(tree.resolve())}
        if not modules or foreign:
            raise RuntimeError(
                f"{label} {dataset}: code not from {tree}: {foreign or 'no module files printed'}"
            )
        new = sorted(_run_ids(db) - before)
        if len(new) != 1:
            raise RuntimeError(f"{label} {dataset}: expected one new MLflow run in {db}, found {new}")
        result["metrics"][dataset] = _metrics(db, new[0])
        result["seconds"][dataset] = round(seconds, 1)
        result["modules"][dataset] = {n: str(Path(f).relative_to(tree.resolve())) for n, f in modules.items()}
        print(
            f"  {seconds:.0f} s, {len(result['metrics'][dataset])} metrics, code: {modules['training.cli']}"
        )
    return result


def compare(before: dict, after: dict, timing: set[str], tol: float) -> pd.DataFrame:
    """One row per (data set, metric) on either side: values, |diff| and its status."""
    rows = []
    products = {dataset: product for dataset, product, _ in TRAININGS}
    for dataset in before["metrics"]:
        b, a = before["metrics"][dataset], after["metrics"][dataset]
        for metric in sorted(set(b) | set(a)):
            vb, va = b.get(metric), a.get(metric)
            if vb is None or va is None:
                diff, status = math.nan, "only before" if va is None else "only after"
            else:
                same_nan = math.isnan(vb) and math.isnan(va)
                diff = 0.0 if same_nan else abs(va - vb)
                diff = math.inf if math.isnan(diff) else diff
                status = "ok" if diff <= tol else "DIFFERS"
            if metric.split("[")[0] in timing:
                status = "timing, not compared"
            rows.append((dataset, products[dataset], metric, vb, va, diff, status))
    return pd.DataFrame(
        rows, columns=["dataset", "product", "metric", "before", "after", "abs_diff", "status"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="2ff28cb", help="revision before the change (default 2ff28cb)")
    parser.add_argument(
        "--after", default="HEAD", help="revision after the change (default HEAD of this checkout)"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/behaviour"), help="folder for table and logs")
    parser.add_argument("--trials", type=int, default=5, help="Optuna trials for churn and leads (default 5)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="search timeout, s; never reached")
    parser.add_argument("--tol", type=float, default=1e-6, help="largest |after - before| counted as equal")
    parser.add_argument(
        "--timing", nargs="*", default=["train_seconds"], help="wall-time metrics, not compared"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=[d for d, _, _ in TRAININGS], help="subset of the four data sets"
    )
    args = parser.parse_args()
    unknown = set(args.datasets) - {d for d, _, _ in TRAININGS}
    if unknown:
        parser.error(
            f"--datasets: unknown {sorted(unknown)}; expected some of {[d for d, _, _ in TRAININGS]}"
        )
    data_dir = Path(os.environ.get("SALESML_DATA_DIR") or REPO.parent / "shared" / "datasets").resolve()
    if not data_dir.is_dir():
        parser.error(f"data sets folder {data_dir} not found; set SALESML_DATA_DIR")
    commits = {}
    for label in ("before", "after"):
        try:
            commits[label] = _git("rev-parse", "--verify", f"{getattr(args, label)}^{{commit}}").strip()
        except subprocess.CalledProcessError:
            parser.error(f"--{label} {getattr(args, label)!r} is not a commit of {REPO}")
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the worktrees are removed on `kill` too
    work = Path(tempfile.mkdtemp(prefix="salesml-behaviour-"))
    started = time.perf_counter()
    try:
        results = {label: train_revision(label, c, work, data_dir, args) for label, c in commits.items()}
    finally:
        for tree in work.glob("tree-*"):
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        _git("worktree", "prune")
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - started
    table = compare(results["before"], results["after"], set(args.timing), args.tol)
    table.to_csv(args.out / "behaviour.csv", index=False)
    compared = table[table["status"] != "timing, not compared"]
    bad = compared[compared["status"] != "ok"]
    max_diff = float(compared["abs_diff"].max()) if len(compared) else 0.0  # NaN rows (one side only) skipped
    per_dataset = compared.groupby("dataset", sort=False)["abs_diff"].max().to_dict()
    summary = {
        "before": commits["before"], "after": commits["after"], "tol": args.tol, "trials": args.trials,
        "timeout_s": args.timeout, "data_dir": str(data_dir), "wall_seconds": round(wall, 1),
        "max_abs_diff": max_diff, "max_abs_diff_per_dataset": per_dataset, "all_within_tol": bad.empty,
        "not_within_tol": bad[["dataset", "metric", "status"]].to_dict("records"),
        "seconds": {k: r["seconds"] for k, r in results.items()},
        "modules": {k: r["modules"] for k, r in results.items()},
        "rows": json.loads(table.to_json(orient="records")),
    }  # fmt: skip
    (args.out / "behaviour.json").write_text(json.dumps(summary, indent=2) + "\n")
    with pd.option_context(
        "display.max_rows", None, "display.width", 200, "display.float_format", "{:.9g}".format
    ):
        print(table.to_string(index=False))
    print(f"before {commits['before'][:9]}, after {commits['after'][:9]}; wall time {wall:.0f} s")
    print("max |diff| per data set: " + ", ".join(f"{d} {v:.3g}" for d, v in per_dataset.items()))
    for row in table[table["status"] == "timing, not compared"].itertuples():
        print(f"  not compared (wall time): {row.dataset} {row.metric} {row.before:.1f} / {row.after:.1f}")
    for row in bad.itertuples():
        print(f"  not within {args.tol:g}: {row.dataset} {row.metric} ({row.status})")
    print(f"max |diff| = {max_diff:.3g} ; all within {args.tol:g}: {'yes' if bad.empty else 'no'}")
    sys.exit(0 if bad.empty else 1)


if __name__ == "__main__":
    main()
