"""Time and memory of building the churn training set from synthetic order lines (issue: <= 60 s for 1 M lines x
12 cutoffs, <= 10 x that for 10 M).

Usage::

    nice -n 5 .venv/bin/python benchmarks/churn_features.py --lines 1000000 --tile 1 10 --cutoffs 12

Each size is generated once (seeded; cached under ``$SALESML_HOME/data``) and loaded through the ``synthetic``
spec. ``--tile K`` repeats the loaded data K times with renamed customers and orders (K x the lines and the
customers over the same dates), written when the generator could not make 10 M lines (an int64 overflow in
``features/synthetic.py`` for very long customer lifetimes, gone since; ``benchmarks/scale.py`` generates 10 M). The time measured is ``features.churn.build_churn_set`` only (12 labelled monthly cutoffs + the scoring
cutoff), best of ``--repeat`` runs. Peak memory is measured in a separate run with ``tracemalloc`` (numpy and
pandas report their buffers to it): the peak of memory allocated by the build on top of the loaded data.
The process's peak RSS (which includes generating and loading the data) is printed too.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pandas as pd
import yaml

from features.churn import build_churn_set
from features.load import Dataset, load_dataset
from features.spec import BUILTIN_SPEC_DIR


def _spec_for(lines: int, folder: Path) -> Path:
    spec = yaml.safe_load((BUILTIN_SPEC_DIR / "synthetic.yaml").read_text())
    spec["generator"]["n_order_lines"] = lines
    path = folder / f"synthetic-{lines}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _tiled(dataset: Dataset, k: int) -> Dataset:
    """The data set repeated ``k`` times with renamed customers and orders (same dates)."""
    if k == 1:
        return dataset
    tables = dict(dataset.tables)
    for name, id_cols in (("orders", ("customer_id", "order_id")), ("customers", ("customer_id",))):
        copies = []
        for i in range(k):
            part = dataset.tables[name].copy()
            for col in id_cols:
                part[col] = part[col] + f"-{i}"
            copies.append(part)
        tables[name] = pd.concat(copies, ignore_index=True)
    return replace(dataset, tables=tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000], help="order lines to generate")
    parser.add_argument("--tile", type=int, nargs="+", default=[1], help="repeat the data K times (new ids)")
    parser.add_argument(
        "--cutoffs", type=int, default=12, help="labelled monthly cutoffs (plus the scoring one)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per size; the best is reported")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            t0 = time.perf_counter()
            base = load_dataset(_spec_for(lines, Path(tmp)))
            load_s = time.perf_counter() - t0
            for tile in args.tile:
                dataset = _tiled(base, tile)
                orders = dataset.tables["orders"]
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    churn_set = build_churn_set(dataset, n_cutoffs=args.cutoffs)
                    times.append(time.perf_counter() - t0)
                tracemalloc.start()
                build_churn_set(dataset, n_cutoffs=args.cutoffs)
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(
                    f"lines={len(orders):,} tile={tile} customers={orders['customer_id'].nunique():,} "
                    f"cutoffs={len(churn_set.label_cutoffs)}+1 rows={len(churn_set.frame):,} "
                    f"features={len(churn_set.features)} build_s={min(times):.2f} "
                    f"(runs {', '.join(f'{t:.2f}' for t in times)}) build_peak_alloc_gib={peak / 2**30:.2f} "
                    f"process_peak_rss_gib={rss_gib:.2f} load_s={load_s:.1f}",
                    flush=True,
                )
                del dataset, orders, churn_set


if __name__ == "__main__":
    main()
