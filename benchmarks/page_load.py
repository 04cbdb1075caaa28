"""How fast the planner's page opens and searches, in a real browser, on a large hierarchy (issue 16).

Starts ``salesml serve`` on loopback against ``SALESML_HOME``'s champions (for the issue's figure: a walmart
sales forecast, 3,380 nodes; ``SALESML_HOME=/tmp/w salesml train sales --dataset walmart --promote`` makes one),
opens ``/ui/`` in Debian's Chromium through Playwright and measures, ``--runs`` times each:

* first view: from the navigation's start to the page marking itself ready (the tree's first level and the
  total's forecast, fan chart and accuracy drawn), from the browser's own clock (``performance.now()``);
* tree search: from typing a query to its matches being in the DOM, for queries of one to several characters;
* the JSON the first view fetches (``/ui/api/tree`` and ``/ui/api/node?id=total``): bytes and server time.

Run: ``SALESML_HOME=/tmp/w .venv/bin/python benchmarks/page_load.py [--runs 10]``. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

import httpx
from _serve import served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is not installed: make sysdeps")
    with served() as (url, models):
        tree = httpx.get(url + "/ui/api/tree", timeout=60)  # the first call builds the tree once per champion
        api = {}
        for path in ("/ui/api/tree", "/ui/api/node?id=total"):
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                answer = httpx.get(url + path, timeout=60)
                times.append((time.perf_counter() - t) * 1000)
            api[path] = {"bytes": len(answer.content), "p50_ms": round(statistics.median(times), 1)}
        n_nodes = len(tree.json()["nodes"])
        first, searches = [], {}
        queries = ["1", "store=1", "dept=9", "dept=99", "zzz"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for i in range(args.runs):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(url + "/ui/")
                page.wait_for_selector("body[data-ready=true] svg.fan")
                first.append(float(page.get_attribute("body", "data-ready-ms")))  # performance.now() at ready
                if i == 0:
                    for q in queries:
                        times = []
                        for _ in range(args.runs):
                            ms = page.evaluate(
                                """q => { const box = document.getElementById('tree-search');
                                   box.value = ''; box.dispatchEvent(new Event('input'));
                                   const t = performance.now(); box.value = q; box.dispatchEvent(new Event('input'));
                                   document.getElementById('search-results').getBoundingClientRect();
                                   return performance.now() - t; }""",
                                q,
                            )
                            times.append(ms)
                        hits = page.eval_on_selector_all("#search-results button", "els => els.length")
                        searches[q] = {
                            "max_ms": round(max(times), 2),
                            "p50_ms": round(statistics.median(times), 2),
                            "hits_shown": hits,
                        }
                context.close()
            browser.close()
    report = {
        "forecast": models.get("sales_forecast", {}).get("name"),
        "version": models.get("sales_forecast", {}).get("version"),
        "nodes": n_nodes,
        "first_view_ms": {
            "p50": round(statistics.median(first)),
            "max": round(max(first)),
            "runs": len(first),
        },
        "search": searches,
        "api": api,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
