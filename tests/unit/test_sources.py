"""A table stored as many Parquet files (a folder with hive partitions, or a glob) loads as the one file does,
with the same rules and the same one-message errors, and a broken part is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.errors import SalesmlError
from features.load import DataValidationError, load_dataset


@pytest.fixture(scope="module")
def parts(small_synthetic_spec: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(spec of the one-file data, spec whose orders are a folder of yearly hive partitions, that data root)."""
    one = load_dataset(small_synthetic_spec)
    root = tmp_path_factory.mktemp("parts")
    for file in Path(one.root).glob("*.parquet"):
        shutil.copy(file, root / file.name)
    orders = pd.read_parquet(root / "orders.parquet")
    for year, rows in orders.groupby(orders["time"].dt.year):
        folder = root / "orders" / f"year={year}"
        folder.mkdir(parents=True)
        for i, chunk in enumerate(range(0, len(rows), 5_000)):
            rows.iloc[chunk : chunk + 5_000].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    spec = yaml.safe_load(small_synthetic_spec.read_text())
    spec.pop("generator")
    single = root / "single.yaml"
    single.write_text(yaml.safe_dump(spec, sort_keys=False))
    spec["tables"]["orders"]["path"] = "orders"
    folder_spec = root / "folder.yaml"
    folder_spec.write_text(yaml.safe_dump(spec, sort_keys=False))
    return single, folder_spec, root


def _spec_with(parts: tuple[Path, Path, Path], path: str, name: str) -> Path:
    spec = yaml.safe_load(parts[1].read_text())
    spec["tables"]["orders"]["path"] = path
    out = parts[2] / name
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def _orders(spec: Path, root: Path) -> pd.DataFrame:
    frame = load_dataset(spec, root=root).tables["orders"]
    return frame.sort_values(["order_id", "line"]).reset_index(drop=True)


def test_a_folder_of_hive_partitions_loads_as_the_one_file(parts) -> None:
    single, folder, root = parts
    assert len(list((root / "orders").rglob("*.parquet"))) > 4
    pd.testing.assert_frame_equal(_orders(folder, root), _orders(single, root))


def test_a_glob_of_parts_loads_as_the_one_file(parts) -> None:
    single, _, root = parts
    glob = _spec_with(parts, "orders/year=*/part-*.parquet", "glob.yaml")
    pd.testing.assert_frame_equal(_orders(glob, root), _orders(single, root))


def test_a_bad_value_in_one_part_gets_the_one_file_message(parts, tmp_path: Path) -> None:
    single, folder, root = parts
    bad_root = tmp_path / "bad"
    shutil.copytree(root, bad_root)
    part = sorted((bad_root / "orders").rglob("*.parquet"))[1]
    rows = pd.read_parquet(part)
    rows.loc[rows.index[:3], "customer_id"] = None
    rows.to_parquet(part, index=False)
    whole = pd.concat([pd.read_parquet(p) for p in sorted((bad_root / "orders").rglob("*.parquet"))])
    whole.to_parquet(bad_root / "orders.parquet", index=False)
    with pytest.raises(DataValidationError) as from_parts:
        load_dataset(folder, root=bad_root)
    with pytest.raises(DataValidationError) as from_file:
        load_dataset(single, root=bad_root)
    assert "customer_id" in str(from_parts.value)
    assert str(from_parts.value) == str(from_file.value)


def test_an_empty_folder_a_broken_part_and_parts_that_disagree_are_named(parts, tmp_path: Path) -> None:
    _, folder, root = parts
    empty = tmp_path / "empty"
    shutil.copytree(root, empty, ignore=shutil.ignore_patterns("part-*.parquet"))
    with pytest.raises(SalesmlError, match="no Parquet file in .*orders"):
        load_dataset(folder, root=empty)
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    part = sorted((broken / "orders").rglob("*.parquet"))[2]
    part.write_bytes(b"not parquet")
    with pytest.raises(SalesmlError, match=f"cannot read {part} as Parquet"):
        load_dataset(folder, root=broken)
    other = tmp_path / "other"
    shutil.copytree(root, other)
    part = sorted((other / "orders").rglob("*.parquet"))[2]
    pd.read_parquet(part).drop(columns="promo").to_parquet(part, index=False)
    with pytest.raises(SalesmlError, match="differ in their columns"):
        load_dataset(folder, root=other)
    nothing = _spec_with(parts, "orders/year=1999/*.parquet", "nothing.yaml")
    with pytest.raises(SalesmlError, match="no Parquet file in"):
        load_dataset(nothing, root=root)
