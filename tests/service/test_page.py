"""The planner's page in a real browser (Playwright driving Debian's Chromium) against a real ``salesml serve``.

The service runs with the champions trained on the small synthetic organisation and a token. Every number the
page draws is compared with the HTTP API's answer for the same question: the fan chart's points with
``/forecast``, a target's split with ``/plan``, the churn ranking with ``/churn/score``. Screenshots of every view
are saved under ``.test-artifacts/page/`` (or ``$SALESML_TEST_ARTIFACTS/page``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.service.conftest import TOKEN, Server, start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium is not installed (make test installs Debian's chromium package)"
    ),
]
ARTIFACTS = Path(os.environ.get("SALESML_TEST_ARTIFACTS", REPO / ".test-artifacts")) / "page"
VIEWS = ("forecast", "targets", "churn", "leads", "models")


@pytest.fixture(scope="module")
def page_server(trained_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("page-home")
    shutil.copytree(trained_home, home, dirs_exist_ok=True)
    srv = start_server(home, tmp_path_factory.mktemp("page-logs") / "serve.log")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Console:
    def __init__(self) -> None:
        self.errors: list[str] = []


@pytest.fixture
def signed_in(browser, page_server: Server) -> Iterator[tuple[object, Console]]:
    """A page signed in through the form, collecting console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    console = Console()
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
    page.goto(page_server.url + "/ui/")
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")
    yield page, console
    context.close()


def _api(server: Server, path: str, body: dict) -> dict:
    answer = server.post(path, body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_without_the_token_the_page_refuses_and_after_the_form_it_works(browser, page_server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.url + "/ui/")
    assert page.url.endswith("/ui/login")  # sent to the form
    assert httpx.get(page_server.url + "/ui/api/tree").status_code == 401
    assert httpx.get(page_server.url + "/ui/api/churn", cookies={"salesml_session": TOKEN}).status_code == 401
    page.fill("#token", "not-the-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "not this service's token" in page.inner_text("#login-error")
    assert context.cookies() == []
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#node-detail h1") == "Total"
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert TOKEN not in cookie["value"]  # an HMAC of the token, not the token
    # The API keeps its Bearer rule: the page's cookie opens no API route.
    api = httpx.post(
        page_server.url + "/forecast", json={"level": "region"}, cookies={cookie["name"]: cookie["value"]}
    )
    assert api.status_code == 401
    context.close()


def test_the_tree_drills_to_a_bottom_node_whose_fan_chart_draws_the_forecast(signed_in, page_server) -> None:
    page, console = signed_in
    tree = httpx.get(page_server.url + "/ui/api/tree", headers=page_server.headers()).json()
    nodes = {n["id"]: n for n in tree["nodes"]}
    bottom = next(n for n in tree["nodes"] if n["bottom"])
    path = [bottom["id"]]
    while nodes[path[0]]["parent"]:
        path.insert(0, nodes[path[0]]["parent"])
    assert path[0] == "total" and len(path) >= 4
    for uid in path[1:]:  # total is open; click each node on the way down (a click opens its branch)
        page.click(f'#tree button.name[data-node="{uid}"]')
        page.wait_for_function(
            "id => document.querySelector('#node-detail .sub') && "
            "document.querySelector('#node-detail .sub').textContent.endsWith(id)",
            arg=uid,
        )
    (answer,) = _api(page_server, "/forecast", {"nodes": [bottom["id"]]})["results"]
    points = page.eval_on_selector_all(
        "svg.fan circle.pt",
        "els => els.map(e => ({ds: e.dataset.ds, mean: +e.dataset.mean, lo_80: +e.getAttribute('data-lo-80'), "
        "hi_80: +e.getAttribute('data-hi-80'), lo_95: +e.getAttribute('data-lo-95'), "
        "hi_95: +e.getAttribute('data-hi-95'), cy: +e.getAttribute('cy')}))",
    )
    assert [p["ds"] for p in points] == [p["ds"] for p in answer["periods"]]
    for drawn, served in zip(points, answer["periods"], strict=True):
        for key in ("mean", "lo_80", "hi_80", "lo_95", "hi_95"):
            assert drawn[key] == pytest.approx(served[key], rel=1e-12, abs=1e-9), key
    # The circles sit where the axis puts those values: drawn, not only labelled.
    axis = page.eval_on_selector(
        "svg.fan", "s => ['y0','y1','top','bottom'].map(k => +s.getAttribute('data-' + k))"
    )
    y0, y1, top, bottom_px = axis
    for drawn in points:
        expected = top + (1 - (drawn["mean"] - y0) / (y1 - y0)) * (bottom_px - top)
        assert drawn["cy"] == pytest.approx(expected, abs=0.001)
    cards = page.eval_on_selector_all(".cards .card[data-quarter] .v", "els => els.map(e => e.textContent)")
    for q in answer["quarters"]:
        assert f"{q['mean']:,.0f}" in cards
    assert answer["model_version"] in page.inner_text("#provenance")
    assert console.errors == []


def test_the_tree_search_finds_a_node_and_opens_it(signed_in) -> None:
    page, console = signed_in
    page.fill("#tree-search", "R001")
    page.wait_for_selector("#search-results button")
    first = page.get_attribute("#search-results button", "data-node")
    assert "R001" in first
    page.click("#search-results button")
    page.wait_for_function(
        "id => document.querySelector('#node-detail .sub').textContent.endsWith(id)", arg=first
    )
    assert page.get_attribute(f'#tree button.name[data-node="{first}"]', "aria-current") == "true"
    assert console.errors == []


@pytest.mark.parametrize("quarter", ["next", "current"])
def test_a_target_entered_on_the_page_splits_as_plan_does(signed_in, page_server, quarter: str) -> None:
    page, console = signed_in
    page.click("nav a[data-view=targets]")
    page.fill("#plan-node", "region=North")
    page.select_option("#plan-quarter", quarter)
    page.fill("#plan-target", "1234567.5")
    page.click("#plan-form button[type=submit]")
    page.wait_for_selector("#plan-result table")
    rows = page.eval_on_selector_all(
        "#plan-result tbody tr",
        "els => els.map(e => ({node: e.dataset.node, probability: +e.dataset.probability, "
        "target: +e.dataset.target, median: +e.dataset.median}))",
    )
    plan = _api(page_server, "/plan", {"node": "region=North", "target": 1234567.5, "quarter": quarter})
    assert [r["node"] for r in rows] == [r["node"] for r in plan["rows"]]
    for drawn, served in zip(rows, plan["rows"], strict=True):
        for key in ("probability", "target", "median"):
            assert drawn[key] == pytest.approx(served[key], rel=1e-12), key
    if quarter == "current":
        cards = page.inner_text("#plan-result .cards")
        forecast = _api(page_server, "/forecast", {"nodes": ["region=North"]})["results"][0]
        current = next(q for q in forecast["quarters"] if q["quarter"] == "current")
        assert f"{current['actual_to_date']:,.0f}" in cards and f"{current['mean']:,.0f}" in cards
    with page.expect_download() as download:
        page.click("#plan-csv")
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("node,level,role,share,target,median,probability")
    assert len(text.splitlines()) == 1 + len(plan["rows"])
    # A bad target is named on the page, and nothing is sent.
    page.fill("#plan-target", "-5")
    page.click("#plan-form button[type=submit]")
    page.wait_for_selector("#plan-error:not([hidden])")
    assert "Target" in page.inner_text("#plan-error")
    assert console.errors == []


def test_the_churn_table_ranks_as_churn_score_does(signed_in, page_server) -> None:
    page, console = signed_in
    page.click("nav a[data-view=churn]")
    page.wait_for_selector("#churn-result table")
    rows = page.eval_on_selector_all(
        "#churn-result tbody tr", "els => els.map(e => [e.dataset.customer, +e.dataset.probability])"
    )
    assert len(rows) == 50
    ids = [r[0] for r in rows]
    scored = _api(page_server, "/churn/score", {"customers": [{"customer_id": c} for c in ids]})["results"]
    assert [s["customer_id"] for s in scored] == ids
    for (_, prob), s in zip(rows, scored, strict=True):
        assert prob == pytest.approx(s["probability"], rel=1e-12)
    at_risk = [s["expected_value"] for s in scored]
    assert at_risk == sorted(at_risk, reverse=True)  # ranked by revenue at risk
    # Filtered by tier and by a region (the synthetic customers carry the hierarchy).
    with page.expect_response(lambda r: "tier=high" in r.url):
        page.select_option("#churn-tier", "high")
    with page.expect_response(lambda r: "node=region" in r.url) as answer:
        page.select_option("#churn-node", "region=North")
    page.wait_for_function("!document.querySelector('#churn-result').hasAttribute('aria-busy')")
    body = answer.value.json()
    high = page.eval_on_selector_all("#churn-result tbody tr", "els => els.map(e => e.dataset.customer)")
    assert high == [r["customer_id"] for r in body["rows"]]
    assert 0 < body["matching"] < body["customers"]
    bands = _api(page_server, "/churn/score", {"customers": [{"customer_id": c} for c in high]})["results"]
    assert all(b["band"] == "high" for b in bands)
    assert console.errors == []


def test_every_view_renders_without_console_errors_is_keyboard_usable_and_accessible(signed_in) -> None:
    from axe_playwright_python.sync_playwright import Axe

    page, console = signed_in
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for view in VIEWS:
        page.focus("body")
        page.click(f"nav a[data-view={view}]")
        ready = {
            "forecast": "svg.fan",
            "targets": "#plan-form",
            "churn": "#churn-result table",
            "leads": "#leads-result table",
            "models": "#models-result table",
        }[view]
        page.wait_for_selector(ready)
        if view == "targets":
            page.fill("#plan-target", "1000000")
            page.click("#plan-form button[type=submit]")
            page.wait_for_selector("#plan-result table")
        page.screenshot(path=str(ARTIFACTS / f"{view}.png"), full_page=True)
        # Every control of the view has an accessible name; every chart a text alternative.
        unnamed = page.evaluate(
            """view => [...document.querySelectorAll(`#view-${view} input, #view-${view} select, #view-${view} button, #view-${view} svg`)]
              .filter(e => e.offsetParent !== null || e.tagName === 'svg')
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.textContent || '').trim())
              .map(e => e.outerHTML.slice(0, 80))""",
            view,
        )
        assert unnamed == [], unnamed
        # axe-core (shipped inside axe-playwright-python, run offline in the page): no WCAG rule broken.
        violations = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in Axe().run(page).response["violations"]
        ]
        assert violations == [], violations
    # The views are reached with the keyboard alone: Tab to the navigation, Enter to open a view.
    page.goto(page.url.split("#")[0] + "#forecast")
    page.reload()
    page.wait_for_selector("body[data-ready=true] svg.fan")
    page.keyboard.press("Tab")  # the skip link
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.dataset.view || document.activeElement.id"))
        if reached[-1] == "churn":
            break
    assert "churn" in reached
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-churn:not([hidden]) table")
    # The tree: arrow keys move between nodes, Enter opens one.
    page.click("nav a[data-view=forecast]")
    page.focus('#tree button.name[data-node="total"]')
    page.keyboard.press("ArrowDown")
    focused = page.evaluate("document.activeElement.dataset.node")
    assert focused and focused != "total"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "id => document.querySelector('#node-detail .sub').textContent.endsWith(id)", arg=focused
    )
    assert console.errors == []
