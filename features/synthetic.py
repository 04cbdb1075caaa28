"""A seeded synthetic sales organisation: the default demo data and the ground truth for tests.

Everything here is made up. The generator writes Parquet tables that the built-in ``synthetic`` spec reads
through the same contract as any real source, plus ``truth.json`` (the known drivers and their effects) and
``truth_customers.parquet`` / ``truth_leads.parquet`` (each entity's true rate, hazard or probability).

The organisation: regions > managers > reps; products in series; customers with attributes; daily orders with
trend, yearly and weekly seasonality, holidays and planned promotions; a churn hazard driven by known customer
attributes; leads whose conversion depends on known drivers, with activities before (and some after) the
decision.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.settings import Settings
from features.spec import BUILTIN_SPEC_DIR, GeneratorSpec

__all__ = ["CHURN_DRIVERS", "LEAD_DRIVERS", "ensure_generated", "generate", "write_parted"]

REGIONS = ["North", "South", "West"]
MANAGERS_PER_REGION = 2
REPS_PER_MANAGER = 4
SERIES = {"Core": 120.0, "Pro": 480.0, "Cloud": 60.0}  # series -> base list price
PRODUCTS_PER_SERIES = 4
SEGMENTS = ["smb", "mid", "enterprise"]
INDUSTRIES = ["retail", "manufacturing", "health", "finance", "public"]
LEAD_SOURCES = ["referral", "web", "event", "cold_call", "partner"]
COMPANY_SIZES = ["small", "medium", "large"]
LINES_PER_ORDER = 2.5

# Log-hazard effects on churn (per unit of the attribute); the base monthly hazard is BASE_CHURN_MONTHLY.
BASE_CHURN_MONTHLY = 0.02
CHURN_DRIVERS = {
    "support_tickets": 0.35,  # per ticket per quarter
    "has_contract": -1.2,
    "segment=smb": 0.8,
    "discount_pct": -0.04,  # per percentage point of standing discount
}
# Log-odds effects on lead conversion.
LEAD_INTERCEPT = -1.6
LEAD_DRIVERS = {
    "source=referral": 1.4,
    "source=partner": 0.7,
    "source=cold_call": -1.0,
    "meetings": 0.55,  # per meeting held before the decision
    "company_size=large": 0.5,
    "demo_requested": 0.9,
}


def _calendar(start: pd.Timestamp, end: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Daily calendar with holidays and planned promotion weeks; runs half a year past the data (known ahead)."""
    days = pd.date_range(start, end + pd.Timedelta(days=190), freq="D")
    cal = pd.DataFrame({"time": days})
    md = days.strftime("%m-%d")
    closed = np.isin(md, ["01-01", "12-25", "12-26"])
    # Peak trading days: the Friday after the fourth Thursday of November and the week before Christmas.
    peak = np.zeros(len(days), dtype=bool)
    for year in sorted(set(days.year)):
        nov = pd.date_range(f"{year}-11-01", f"{year}-11-30", freq="W-THU")
        black_friday = nov[3] + pd.Timedelta(days=1)
        peak |= (days >= black_friday) & (days <= black_friday + pd.Timedelta(days=3))
        peak |= (days >= pd.Timestamp(f"{year}-12-15")) & (days <= pd.Timestamp(f"{year}-12-22"))
    cal["is_holiday"] = closed | peak
    # Planned promotions: five one-week campaigns a year on fixed-by-seed Mondays.
    promo = np.zeros(len(days), dtype=bool)
    for year in sorted(set(days.year)):
        mondays = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="W-MON")
        for monday in rng.choice(mondays, size=5, replace=False):
            promo |= (days >= monday) & (days < monday + pd.Timedelta(days=7))
    cal["promo"] = promo
    doy = days.dayofyear.to_numpy()
    years = (days - start).days.to_numpy() / 365.25
    weekly = np.where(days.dayofweek.to_numpy() < 5, 1.2, 0.3)
    yearly = 1.0 + 0.25 * np.cos(2 * np.pi * (doy - 335) / 365.25)
    trend = 1.0 + 0.12 * years
    intensity = trend * yearly * weekly * np.where(peak, 1.8, 1.0) * np.where(promo, 1.5, 1.0)
    cal["_intensity"] = np.where(closed, 0.05, intensity)
    return cal


@dataclass(frozen=True)
class _Buyers:
    """The customers whose orders are drawn: ids, segment, standing discount, rep, order rate per unit of
    intensity, their exposure (intensity summed over their life in the data) and the cumulative intensity at
    their signup."""

    ids: np.ndarray
    seg: np.ndarray
    discount: np.ndarray
    rep: np.ndarray
    lam: np.ndarray
    exposure: np.ndarray
    cum_lo: np.ndarray

    def take(self, index: slice) -> _Buyers:
        return _Buyers(*(getattr(self, f.name)[index] for f in fields(self)))


def _order_lines(
    rng: np.random.Generator,
    who: _Buyers,
    cum: np.ndarray,
    promo: np.ndarray,
    products: pd.DataFrame,
    start: pd.Timestamp,
    first_order: int = 0,
) -> pd.DataFrame:
    """The order lines of ``who``: orders numbered from ``first_order + 1``, sorted by time, order and line."""
    n_days = len(cum) - 1
    n_orders = rng.poisson(who.lam * who.exposure)
    owner = np.repeat(np.arange(len(who.ids)), n_orders)
    u = who.cum_lo[owner] + rng.random(len(owner)) * who.exposure[owner]
    day = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, n_days - 1)
    order_promo = promo[day]
    n_lines = 1 + rng.poisson(LINES_PER_ORDER - 1, len(owner))
    line_order = np.repeat(np.arange(len(owner)), n_lines)
    seg_pref = {
        "smb": [0.55, 0.10, 0.35],
        "mid": [0.40, 0.30, 0.30],
        "enterprise": [0.25, 0.50, 0.25],
    }
    line_seg = who.seg[owner][line_order]
    series_names = list(SERIES)
    line_series = np.empty(len(line_order), dtype=object)
    for s_name, probs in seg_pref.items():
        idx = np.flatnonzero(line_seg == s_name)
        line_series[idx] = rng.choice(series_names, size=len(idx), p=probs)
    product_idx = rng.integers(0, len(products) // len(SERIES), len(line_order))
    prod_table = products.set_index(["series", products.groupby("series").cumcount()])
    keys = pd.MultiIndex.from_arrays([line_series, product_idx])
    prod_rows = prod_table.loc[keys]
    quantity = 1 + rng.poisson(1.5, len(line_order))
    disc = who.discount[owner][line_order] / 100.0 + np.where(order_promo[line_order], 0.10, 0.0)
    amount = np.round(quantity * prod_rows["list_price"].to_numpy() * (1 - disc), 2)
    order_ids = np.array([f"O{first_order + i + 1:08d}" for i in range(len(owner))])
    orders = pd.DataFrame(
        {
            "order_id": order_ids[line_order],
            "time": (start + pd.to_timedelta(day, unit="D"))[line_order],
            "customer_id": who.ids[owner][line_order],
            "rep": who.rep[owner][line_order],
            "product_id": prod_rows["product_id"].to_numpy(),
            "quantity": quantity,
            "amount": amount,
            "promo": order_promo[line_order],
        }
    )
    orders["line"] = orders.groupby("order_id").cumcount() + 1
    return orders.sort_values(["time", "order_id", "line"], kind="stable").reset_index(drop=True)


OrderSink = Callable[[int, pd.DataFrame], None]


def _chunked_orders(
    seed: int,
    who: _Buyers,
    cum: np.ndarray,
    promo: np.ndarray,
    products: pd.DataFrame,
    start: pd.Timestamp,
    sink: OrderSink,
    lines_per_part: int,
) -> int:
    """The order lines drawn a chunk of customers at a time (about ``lines_per_part`` lines each, a generator
    seeded ``[seed, chunk]`` per chunk), each chunk handed to ``sink(chunk, lines)``; returns the lines made."""
    expected = np.cumsum(who.lam * who.exposure * LINES_PER_ORDER)
    bounds = np.searchsorted(expected, np.arange(lines_per_part, expected[-1], lines_per_part), side="right")
    edges = [0, *sorted(set(bounds.tolist()) - {0, len(who.ids)}), len(who.ids)]
    made = orders = 0
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        lines = _order_lines(
            np.random.default_rng([seed, k]), who.take(slice(a, b)), cum, promo, products, start, orders
        )
        orders += int((lines["line"] == 1).sum())
        made += len(lines)
        sink(k, lines)
    return made


def generate(
    spec: GeneratorSpec,
    *,
    order_sink: OrderSink | None = None,
    lines_per_part: int = 2_000_000,
    reps_per_manager: int = REPS_PER_MANAGER,
    products_per_series: int = PRODUCTS_PER_SERIES,
) -> dict[str, pd.DataFrame | dict]:
    """Make every table of the synthetic organisation in memory. Deterministic for ``spec.seed``.

    ``order_sink``: instead of one ``orders`` table, the order lines are drawn a chunk of customers at a time and
    each chunk is handed to ``order_sink(chunk, lines)`` (memory bounded by ``lines_per_part``, for 10 M or 50 M
    lines); the same organisation, customers and leads, other random draws for the orders.
    ``reps_per_manager`` / ``products_per_series``: a larger organisation (more bottom series: 6 managers x reps
    x 3 series x products); the defaults make the built-in one.
    """
    rng = np.random.default_rng(spec.seed)
    start, end = pd.Timestamp(spec.start), pd.Timestamp(spec.end)
    n_days = (end - start).days + 1

    # --- organisation and catalogue ---------------------------------------------------------------------
    reps = []
    for r, region in enumerate(REGIONS):
        for m in range(MANAGERS_PER_REGION):
            manager = f"M{r * MANAGERS_PER_REGION + m + 1:02d}"
            for _ in range(reps_per_manager):
                reps.append({"rep": f"R{len(reps) + 1:03d}", "manager": manager, "region": region})
    reps = pd.DataFrame(reps)
    reps["skill"] = rng.normal(0.0, 0.35, len(reps)).round(3)
    products = []
    for series, base_price in SERIES.items():
        for p in range(products_per_series):
            products.append(
                {
                    "product_id": f"{series[:2].upper()}{p + 1}",
                    "series": series,
                    "list_price": base_price * (1 + p * 0.6),
                }
            )
    products = pd.DataFrame(products)

    cal = _calendar(start, end, rng)
    cal_hist = cal[cal["time"] <= end].reset_index(drop=True)
    cum = np.concatenate([[0.0], np.cumsum(cal_hist["_intensity"].to_numpy())])

    # --- customers --------------------------------------------------------------------------------------
    n_customers = max(200, spec.n_order_lines // 40)
    seg = rng.choice(SEGMENTS, size=n_customers, p=[0.6, 0.3, 0.1])
    base_of_existing = rng.random(n_customers) < 0.35
    signup_offset = np.where(base_of_existing, 0, rng.integers(0, max(1, n_days - 30), n_customers))
    tickets = rng.poisson(np.where(seg == "smb", 1.2, 0.8))
    has_contract = rng.random(n_customers) < np.where(
        seg == "enterprise", 0.7, np.where(seg == "mid", 0.45, 0.2)
    )
    discount = np.round(rng.choice([0, 0, 0, 5, 10, 15], size=n_customers) * 1.0, 1)
    log_h = (
        np.log(BASE_CHURN_MONTHLY / 30.4)
        + CHURN_DRIVERS["support_tickets"] * tickets
        + CHURN_DRIVERS["has_contract"] * has_contract
        + CHURN_DRIVERS["segment=smb"] * (seg == "smb")
        + CHURN_DRIVERS["discount_pct"] * discount
    )
    hazard = np.exp(log_h)  # per day
    life = rng.exponential(1.0 / hazard)
    churn_offset = signup_offset + life
    churned = churn_offset < n_days
    rate_scale = {"smb": 0.6, "mid": 1.0, "enterprise": 2.2}
    rel_rate = np.array([rate_scale[s] for s in seg]) * rng.lognormal(0.0, 0.5, n_customers)
    region_of_cust = rng.choice(REGIONS, size=n_customers, p=[0.4, 0.35, 0.25])
    rep_of_cust = np.empty(n_customers, dtype=object)
    for region in REGIONS:
        idx = np.flatnonzero(region_of_cust == region)
        rep_of_cust[idx] = rng.choice(reps.loc[reps.region == region, "rep"].to_numpy(), size=len(idx))
    cust_ids = np.array([f"C{i + 1:06d}" for i in range(n_customers)])
    customers = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "segment": seg,
            "industry": rng.choice(INDUSTRIES, size=n_customers),
            "account_rep": rep_of_cust,
            "signup_date": start + pd.to_timedelta(signup_offset, unit="D"),
            "support_tickets": tickets,
            "has_contract": has_contract,
            "discount_pct": discount,
        }
    )

    # --- orders: inhomogeneous Poisson process per customer, sampled by inverting the cumulative intensity ---
    lo = signup_offset.astype(int)
    hi = np.minimum(np.ceil(churn_offset), n_days).astype(int)
    exposure = cum[hi] - cum[lo]
    lam = rel_rate * (spec.n_order_lines / LINES_PER_ORDER) / float(np.sum(rel_rate * exposure))
    who = _Buyers(cust_ids, seg, discount, rep_of_cust, lam, exposure, cum[lo])
    promo = cal_hist["promo"].to_numpy()
    if order_sink is None:
        orders: pd.DataFrame | None = _order_lines(rng, who, cum, promo, products, start)
        n_order_lines = len(orders)
    else:
        orders = None
        n_order_lines = _chunked_orders(
            spec.seed, who, cum, promo, products, start, order_sink, lines_per_part
        )

    # --- leads and their activities ---------------------------------------------------------------------
    n_leads = max(300, spec.n_order_lines // 100)
    created = rng.integers(0, n_days, n_leads)
    decided = created + 7 + rng.exponential(30.0, n_leads).astype(int)
    source = rng.choice(LEAD_SOURCES, size=n_leads, p=[0.15, 0.35, 0.15, 0.25, 0.10])
    size = rng.choice(COMPANY_SIZES, size=n_leads, p=[0.5, 0.35, 0.15])
    demo = rng.random(n_leads) < 0.3
    meetings = rng.poisson(np.where(demo, 1.8, 0.8))
    emails = rng.poisson(4.0, n_leads)
    lead_owner = rng.integers(0, len(reps), n_leads)
    logit = (
        LEAD_INTERCEPT
        + sum(LEAD_DRIVERS[f"source={s}"] * (source == s) for s in ("referral", "partner", "cold_call"))
        + LEAD_DRIVERS["meetings"] * meetings
        + LEAD_DRIVERS["company_size=large"] * (size == "large")
        + LEAD_DRIVERS["demo_requested"] * demo
        + reps["skill"].to_numpy()[lead_owner]
    )
    p_convert = 1.0 / (1.0 + np.exp(-logit))
    won = rng.random(n_leads) < p_convert
    is_open = decided >= n_days
    outcome = np.where(is_open, "open", np.where(won, "converted", "lost"))
    lead_ids = np.array([f"L{i + 1:06d}" for i in range(n_leads)])
    estimate = np.round(
        rng.lognormal(np.log(np.where(size == "large", 20000, np.where(size == "medium", 8000, 3000))), 0.4),
        -1,
    )
    lost_reasons = np.array(["price", "timing", "competitor", "no_budget"])
    leads = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "created_at": start + pd.to_timedelta(created, unit="D"),
            "closed_at": (start + pd.to_timedelta(np.where(is_open, 0, decided), unit="D")).where(~is_open),
            "outcome": outcome,
            "owner": reps["rep"].to_numpy()[lead_owner],
            "source": source,
            "company_size": size,
            "industry": rng.choice(INDUSTRIES, size=n_leads),
            "demo_requested": demo,
            "estimated_value": estimate,
            "lost_reason": np.where(outcome == "lost", rng.choice(lost_reasons, n_leads), None),
        }
    )
    # Activities: emails and meetings between creation and decision (or the end of data for open leads),
    # plus onboarding calls after a win. Features must never count those.
    act_entity = np.concatenate(
        [np.repeat(np.arange(n_leads), emails), np.repeat(np.arange(n_leads), meetings)]
    )
    act_type = np.concatenate([np.full(emails.sum(), "email"), np.full(meetings.sum(), "meeting")])
    window_end = np.minimum(decided, n_days - 1)
    span = np.maximum(window_end - created, 1)
    act_day = created[act_entity] + (rng.random(len(act_entity)) * span[act_entity]).astype(int)
    onboard = np.flatnonzero(won & ~is_open)
    onboard_day = decided[onboard] + rng.integers(1, 20, len(onboard))
    keep = onboard_day < n_days
    act_entity = np.concatenate([act_entity, onboard[keep]])
    act_type = np.concatenate([act_type, np.full(keep.sum(), "onboarding_call")])
    act_day = np.concatenate([act_day, onboard_day[keep]])
    activities = (
        pd.DataFrame(
            {
                "lead_id": lead_ids[act_entity],
                "time": start + pd.to_timedelta(act_day, unit="D"),
                "type": act_type,
            }
        )
        .sort_values(["time", "lead_id"], kind="stable")
        .reset_index(drop=True)
    )

    truth_customers = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "order_rate_per_day": lam * rel_rate,
            "churn_hazard_per_day": hazard,
            # Lifetimes far past the data can overflow a Timestamp: only churned customers get a date.
            "churned_at": (
                start + pd.to_timedelta(np.where(churned, np.floor(churn_offset), 0), unit="D")
            ).where(churned),
        }
    )
    truth_leads = pd.DataFrame({"lead_id": lead_ids, "true_probability": p_convert})
    truth = {
        "note": "synthetic data made by features.synthetic; every name and number is invented",
        "seed": spec.seed,
        "n_order_lines": n_order_lines,
        "start": str(start.date()),
        "end": str(end.date()),
        "churn": {
            "base_monthly_hazard": BASE_CHURN_MONTHLY,
            "log_hazard_effects": CHURN_DRIVERS,
            "drivers": ["support_tickets", "has_contract", "segment", "discount_pct"],
        },
        "leads": {
            "intercept": LEAD_INTERCEPT,
            "log_odds_effects": LEAD_DRIVERS,
            "drivers": ["source", "meetings", "company_size", "demo_requested"],
            "rep_skill": dict(zip(reps["rep"], reps["skill"], strict=True)),
        },
        "forecast": {
            "weekly_profile": "weekdays 1.2, weekends 0.3",
            "yearly_peak_day_of_year": 335,
            "yearly_amplitude": 0.25,
            "trend_per_year": 0.12,
            "holiday_multiplier": 1.8,
            "promo_multiplier": 1.5,
            "promo_discount": 0.10,
        },
    }
    return {
        **({} if orders is None else {"orders": orders}),
        "customers": customers,
        "reps": reps.drop(columns="skill"),
        "products": products,
        "leads": leads,
        "activities": activities,
        "calendar": cal.drop(columns="_intensity"),
        "truth_customers": truth_customers,
        "truth_leads": truth_leads,
        "truth": truth,
    }


def generated_path(spec: GeneratorSpec, settings: Settings) -> Path:
    return settings.generated_dir / f"synthetic-seed{spec.seed}-n{spec.n_order_lines}"


def ensure_generated(spec: GeneratorSpec, settings: Settings) -> tuple[Path, dict[str, object]]:
    """Generate the data once per (seed, size) into the project's data folder; return it and its truth.

    Written to a temporary folder first and renamed into place, so an interrupted run leaves nothing half-done.
    """
    target = generated_path(spec, settings)
    if not (target / "truth.json").exists():
        _write(target, lambda _: generate(spec))
    truth = json.loads((target / "truth.json").read_text())
    return target, {"truth": truth, "truth_dir": str(target)}


def _write(target: Path, make: Callable[[Path], dict[str, pd.DataFrame | dict]]) -> None:
    """The tables ``make(folder)`` returns (and whatever it wrote there itself) as Parquet files and
    ``truth.json`` in ``target``: built in a temporary folder beside it and renamed into place, so an interrupted
    run leaves nothing half-done (and a folder another process finished first is kept)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
    try:
        tables = make(tmp)
        for name, value in tables.items():
            if isinstance(value, pd.DataFrame):
                value.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "truth.json").write_text(json.dumps(tables["truth"], indent=2, default=str))
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race; keep theirs
            if not (target / "truth.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parted(
    spec: GeneratorSpec, target: Path | str, *, lines_per_part: int = 2_000_000, **shape: int
) -> Path:
    """The synthetic organisation at any size on disk with its order lines as a folder of Parquet parts
    (``target/orders/part-00000.parquet``, ... about ``lines_per_part`` lines each, drawn and written one chunk
    of customers at a time) and every other table one file; ``target`` appears whole or not at all.

    ``shape``: ``reps_per_manager`` / ``products_per_series`` (:func:`generate`). ``target/spec.yaml`` reads it: the built-in ``synthetic`` spec without its generator, every table's path
    absolute under ``target`` and ``orders`` the folder. Returns that spec's path.
    """
    target = Path(target).absolute()

    def make(folder: Path) -> dict[str, pd.DataFrame | dict]:
        (folder / "orders").mkdir()

        def sink(k: int, lines: pd.DataFrame) -> None:
            lines.to_parquet(folder / "orders" / f"part-{k:05d}.parquet", index=False)

        doc = yaml.safe_load((BUILTIN_SPEC_DIR / "synthetic.yaml").read_text())
        doc.pop("generator")
        for name, table in doc["tables"].items():
            table["path"] = str(target / ("orders" if name == "orders" else table["path"]))
        (folder / "spec.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return generate(spec, order_sink=sink, lines_per_part=lines_per_part, **shape)

    _write(target, make)
    return target / "spec.yaml"
