"""Sales facts -> hierarchical series: every node, coherent sums, explicit zeros, exogenous split, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.errors import SalesmlError
from features.load import load_dataset
from features.series import build_series, period_labels, validate_long_frame
from features.spec import SpecError
from tests.conftest import REPO, requires_shared


@pytest.fixture(scope="module")
def synthetic_series(small_synthetic_spec: Path):
    return build_series(load_dataset(small_synthetic_spec))


def test_every_node_of_every_hierarchy(synthetic_series) -> None:
    s = synthetic_series
    assert list(s.tags)[0] == "total"
    for level in ("region", "manager", "rep", "series", "product_id", "bottom"):
        assert level in s.tags and len(s.tags[level]) > 0
    assert s.bottom_level == "bottom"
    assert set(s.Y["unique_id"]) == set(s.nodes["unique_id"])
    validate_long_frame(s.Y)
    # one row per node and period: gaps are explicit
    counts = s.Y.groupby("unique_id")["ds"].count()
    grid = pd.date_range(s.start, s.end, freq=s.freq)
    assert (counts == len(grid)).all()
    assert (s.Y["y"] == 0).any(), "periods without sales must be zeros, not missing rows"


def test_aggregates_sum_their_bottom(synthetic_series) -> None:
    s = synthetic_series
    wide = s.Y.pivot(index="unique_id", columns="ds", values="y")
    S = s.S.set_index("unique_id")
    bottom = wide.loc[S.columns].to_numpy()
    np.testing.assert_allclose(S.to_numpy() @ bottom, wide.loc[S.index].to_numpy(), rtol=1e-9, atol=1e-6)
    # parent of every non-total node sums its children in the same hierarchy
    kids = s.nodes[(s.nodes["parent"] == "region=" + s.tags["region"][0].split("=", 1)[1])]
    assert len(kids) > 0


def test_raw_total_is_preserved_and_partial_period_dropped(small_synthetic_spec: Path) -> None:
    ds = load_dataset(small_synthetic_spec)
    s = build_series(ds)
    orders = ds.tables["orders"]
    labels = period_labels(orders["time"], s.freq)
    inside = orders[(labels >= s.start) & (labels <= s.end)]
    total = s.Y[s.Y["unique_id"] == "total"]["y"].sum()
    assert total == pytest.approx(inside["amount"].sum(), rel=1e-9)
    # synthetic orders end on a Friday: the week ending that Sunday is partial and dropped
    assert s.end <= orders["time"].max()


def test_exogenous_split(synthetic_series) -> None:
    s = synthetic_series
    assert {"is_holiday", "promo_planned"} <= set(s.known_ahead.columns)
    assert s.past_only.columns.tolist() == ["ds"]
    assert "unique_id" in s.static.columns


def test_multi_hierarchy_monthly_crm() -> None:
    pytest.importorskip("pyarrow")
    if not (REPO.parent / "shared" / "datasets").is_dir():
        pytest.skip("public data sets absent")
    s = build_series(load_dataset("crm"))
    assert s.freq == "MS"
    assert s.nodes.groupby("level").size()["regional_office"] == 3
    tot = s.Y[s.Y["unique_id"] == "total"].set_index("ds")["y"]
    by_series = s.Y[s.Y["unique_id"].isin(s.tags["series"])].groupby("ds")["y"].sum()
    np.testing.assert_allclose(tot.to_numpy(), by_series.reindex(tot.index).to_numpy())


def _spec_copy(tmp_path: Path, name: str, edit) -> Path:
    spec = yaml.safe_load((REPO / "features" / "specs" / f"{name}.yaml").read_text())
    edit(spec)
    path = tmp_path / f"{name}-edited.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_frequency_that_does_not_parse(tmp_path: Path, small_synthetic_spec: Path) -> None:
    spec = yaml.safe_load(small_synthetic_spec.read_text())
    spec["forecast"]["frequency"] = "fortnightly"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="frequency"):
        load_dataset(path)


@requires_shared()
def test_hierarchy_level_missing_from_sales(tmp_path: Path) -> None:
    # 'sector' is a column of the accounts lookup; joined through 'account' it works, so use a leads column
    path = _spec_copy(tmp_path, "crm", lambda s: s["hierarchies"].append(["outcome"]))
    with pytest.raises(SalesmlError, match="outcome"):
        build_series(load_dataset(path))


def test_no_forecast_section(tmp_path: Path, small_synthetic_spec: Path) -> None:
    spec = yaml.safe_load(small_synthetic_spec.read_text())
    del spec["forecast"]
    path = tmp_path / "nofc.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SalesmlError, match="forecast"):
        build_series(load_dataset(path))


@pytest.mark.parametrize(
    ("as_of", "end"),
    [("2025-10-12", "2025-10-12"), ("2025-10-15", "2025-10-12"), ("2025-10-19", "2025-10-19")],
    ids=["a-sunday", "mid-week", "next-sunday"],
)
def test_as_of_leaves_out_later_sales_and_a_week_that_runs_past_it(
    small_synthetic_spec: Path, synthetic_series, as_of: str, end: str
) -> None:
    ds = load_dataset(small_synthetic_spec)
    cut = build_series(ds, as_of=pd.Timestamp(as_of))
    assert cut.end == pd.Timestamp(end)  # W-SUN weeks: a Wednesday's week is not complete yet
    both = cut.Y.merge(synthetic_series.Y, on=["unique_id", "ds"], suffixes=("_cut", "_full"))
    assert len(both) == len(cut.Y)
    np.testing.assert_allclose(both["y_cut"], both["y_full"])  # the weeks it holds are the whole weeks' sales


def test_as_of_before_any_sale_is_a_clear_error(small_synthetic_spec: Path) -> None:
    with pytest.raises(SalesmlError, match="no sales on or before --as-of 2001-01-01"):
        build_series(load_dataset(small_synthetic_spec), as_of=pd.Timestamp("2001-01-01"))
