"""Bad input gets a clear error and exit 2, never a traceback, and nothing half-written (found by probing the CLI).

The command-line cases run ``salesml``'s entry point in this process (the ``salesml`` fixture of tests/conftest.py:
``training.cli.main``, which is what the console script calls), so each costs milliseconds rather than a new
interpreter.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.churn import ChurnInputError, parse_as_of
from features.errors import SalesmlError
from features.lead_context import point_in_time_rates
from features.lead_records import leads_from_records
from features.load import DataValidationError, load_dataset
from features.spec import SpecError, TableSpec, load_spec
from training.classifier import ClassifierData, TrainConfig, train_classifier
from training.outputs import check_out_file, check_out_folder, check_out_parts, staged


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "churn"], "Missing option '--dataset'"),
        (["train", "churn", "--dataset", "telco", "--bogus"], "No such option: --bogus"),
        (["train", "churn", "--dataset", "telco", "--horizon-days", "abc"], "'--horizon-days'"),
        (["train", "churn", "--dataset", "telco", "--timeout", "0"], "'--timeout'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["models", "history", "nosuch_model"], "with product one of sales_forecast, churn_risk, lead_score"),
        (["serve", "--port", "99999"], "'--port'"),
    ],
)
def test_usage_errors_exit_2_with_the_option_named(salesml, args, needle) -> None:
    result = salesml(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_models_show_reads_the_store_of_salesml_home(
    salesml, monkeypatch, fresh_home, tmp_path_factory
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    result = salesml("models", "show", "churn_risk")
    assert result.returncode == 2 and "has no champion" in result.stderr
    assert not (elsewhere / "mlflow.db").exists()  # it used to open (and create) ./mlflow.db
    assert list(fresh_home.rglob("mlflow.db"))  # the store under SALESML_HOME


def test_as_of_is_a_date() -> None:
    assert parse_as_of("1997-12-30") == pd.Timestamp("1997-12-30")
    assert parse_as_of(pd.Timestamp("1997-12-30 13:00")) == pd.Timestamp("1997-12-30")
    assert parse_as_of(None) is None
    for bad in ("2025-13-45", "yesterday", "2024-06-01 13:00", ""):
        with pytest.raises(ChurnInputError, match="--as-of must be a date written YYYY-MM-DD"):
            parse_as_of(bad)


# --- outputs ---------------------------------------------------------------------------------------------------


def test_out_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "folder.parquet").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [
        (tmp_path / "folder.parquet", "is a folder"),
        (tmp_path / "scores.txt", "must end in .parquet or .csv"),
        (tmp_path / "a_file" / "scores.parquet", "is a file, not a folder"),
        (Path("/proc/scores.parquet"), "cannot create files in /proc"),
    ]
    for out, needle in cases:
        with pytest.raises(SalesmlError, match=needle):
            check_out_file(out, (".parquet", ".csv"))
    assert check_out_file(tmp_path / "new" / "deeper" / "s.csv", (".parquet", ".csv")).name == "s.csv"
    files = ("forecasts.parquet", "metrics.csv")
    with pytest.raises(SalesmlError, match="is empty"):
        check_out_folder("", files)
    with pytest.raises(SalesmlError, match="is a file"):
        check_out_folder(tmp_path / "a_file", files)
    (tmp_path / "bt" / "metrics.csv").mkdir(parents=True)
    with pytest.raises(SalesmlError, match="is a folder, where the file metrics.csv goes"):
        check_out_folder(tmp_path / "bt", files)


def test_staged_writes_all_files_or_none_and_keeps_what_was_there(tmp_path: Path) -> None:
    old, other = tmp_path / "scores.csv", tmp_path / "totals.parquet"
    old.write_text("id\nkept\n")
    frame = pd.DataFrame({"id": ["new"]})

    def full_disk(f: pd.DataFrame, path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError(27, "File too large")

    too_large = "could not write --out .*totals.parquet: File too large; nothing was written"
    with pytest.raises(SalesmlError, match=too_large), staged({other: frame, old: frame}, writer=full_disk):
        pass
    with pytest.raises(RuntimeError, match="upsert failed"), staged({other: frame, old: frame}):
        raise RuntimeError("upsert failed")  # e.g. the database write inside the block
    assert old.read_text() == "id\nkept\n" and not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # no temporary file left behind
    with staged({other: frame, old: frame}):
        pass
    assert pd.read_csv(old)["id"].tolist() == ["new"] and pd.read_parquet(other)["id"].tolist() == ["new"]


def test_a_folder_of_score_parts_is_replaced_whole_or_kept(tmp_path: Path) -> None:
    folder = tmp_path / "scores"
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(50)], "probability": range(50)})
    with staged({folder: frame}):
        pass
    parts = sorted(p.name for p in folder.iterdir())
    assert len(parts) == 4 and all(p.startswith("part-") for p in parts)  # a customer's row in one part
    back = pd.concat(pd.read_parquet(folder / p) for p in parts)
    assert sorted(back["customer_id"]) == sorted(frame["customer_id"])
    with pytest.raises(RuntimeError, match="upsert failed"), staged({folder: frame.head(3)}):
        raise RuntimeError("upsert failed")
    assert sorted(p.name for p in folder.iterdir()) == parts  # the old parts, untouched
    with staged({folder: frame.head(3)}):
        pass
    assert sum(len(pd.read_parquet(p)) for p in folder.iterdir()) == 3  # replaced whole, no stale part
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]  # nothing staged is left behind
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(SalesmlError, match="holds other files \\(notes.txt\\)"):
        check_out_parts(folder)
    with pytest.raises(SalesmlError, match="is a file"):
        check_out_parts(folder / "notes.txt")


# --- data sources and specs ----------------------------------------------------------------------------------


def _spec(tmp_path: Path, table: dict, **top) -> Path:
    spec = {"name": "probe", "tables": {"purchases": {"role": "transactions", **table}}, **top}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


COLUMNS = {"customer_id": "cust", "time": "day", "amount": "amt"}


@pytest.mark.parametrize(
    ("content", "read", "needle"),
    [
        (b"", {}, "EmptyDataError"),
        (b"cust,day,amt\n1,2024-01-01,3\n2,2024-01-02,4,5,6\n", {}, "ParserError"),
        ("cust,day,amt\nA\xe9,2024-01-01,3\n".encode("latin-1"), {}, "UnicodeDecodeError"),
        (b"cust,day,amt\n1,2024-01-01,3\n", {"encoding": "utf-99"}, "unknown encoding"),
        (
            b"cust,day,amt\n1,2024-01-01,3\n",
            {"date_format": "%Q%Q"},
            "read.date_format '%Q%Q' is not a strftime",
        ),
    ],
)
def test_unreadable_sources_name_the_table_and_the_file(tmp_path, content, read, needle) -> None:
    (tmp_path / "tx.csv").write_bytes(content)
    path = _spec(tmp_path, {"path": "tx.csv", "columns": COLUMNS, **({"read": read} if read else {})})
    with pytest.raises(SpecError, match=needle) as err:
        load_dataset(path, root=tmp_path)
    assert "table 'purchases'" in str(err.value)


def test_a_folder_or_fake_parquet_as_source_and_a_table_without_rows(tmp_path: Path) -> None:
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(SpecError, match="no Parquet file in .*folder.csv .*holds the table's .parquet parts"):
        load_dataset(_spec(tmp_path, {"path": "folder.csv", "columns": COLUMNS}), root=tmp_path)
    (tmp_path / "fake.parquet").write_text("not parquet")
    with pytest.raises(SpecError, match="cannot read .*fake.parquet as Parquet"):
        load_dataset(_spec(tmp_path, {"path": "fake.parquet", "columns": COLUMNS}), root=tmp_path)
    (tmp_path / "header.csv").write_text("cust,day,amt\n")
    with pytest.raises(DataValidationError, match="the table has no rows"):
        load_dataset(_spec(tmp_path, {"path": "header.csv", "columns": COLUMNS}), root=tmp_path)


def test_sql_sources_with_a_bad_url_or_a_missing_sqlite_file(tmp_path: Path) -> None:
    def spec(url: str) -> Path:
        return _spec(tmp_path, {"sql": {"url": url, "table": "tx"}, "columns": COLUMNS})

    with pytest.raises(SpecError, match="sql.url is not a database URL"):
        load_dataset(spec("not a url"), root=tmp_path)
    with pytest.raises(SpecError, match="cannot use sql.url"):
        load_dataset(spec("nosuchdb://x/y"), root=tmp_path)
    missing = tmp_path / "missing.db"
    with pytest.raises(SpecError, match="SQLite database file .*missing.db does not exist"):
        load_dataset(spec(f"sqlite:///{missing}"), root=tmp_path)
    assert not missing.exists()  # sources are only read, never created
    with sqlite3.connect(tmp_path / "ok.db") as conn:
        conn.execute("create table tx (cust text, day text, amt real)")
        conn.execute("insert into tx values ('c1', '2024-01-01', 3.0)")
    assert len(load_dataset(spec(f"sqlite:///{tmp_path / 'ok.db'}"), root=tmp_path).tables["purchases"]) == 1


@pytest.mark.parametrize(
    ("top", "needle"),
    [
        ({"forecast": {"frequency": "W-FRI", "season_length": -3}}, "forecast.season_length"),
        ({"forecast": {"frequency": "W-FRI", "season_length": 0}}, "forecast.season_length"),
        ({"generator": {"name": "synthetic", "start": "banana"}}, "start must be a date written YYYY-MM-DD"),
        (
            {"generator": {"name": "synthetic", "start": "2022-01-01", "end": "2021-01-01"}},
            "must be after start",
        ),
    ],
)
def test_spec_values_out_of_range_are_refused(tmp_path, top, needle) -> None:
    with pytest.raises(SpecError, match=needle):
        load_spec(_spec(tmp_path, {"path": "tx.csv", "columns": COLUMNS}, **top))


def test_a_spec_without_tables_a_folder_or_a_binary_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "none.yaml").write_text("name: x\ntables: {}\n")
    with pytest.raises(SpecError, match="tables"):
        load_spec(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match="is not a file"):
        load_spec(str(tmp_path) + "/")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SpecError, match="cannot read spec .* as UTF-8"):
        load_spec(tmp_path / "bin.yaml")


# --- lead batches and training -------------------------------------------------------------------------------


LEADS = TableSpec.model_validate(
    {
        "role": "leads",
        "path": "leads.csv",
        "columns": {"lead_id": "id", "outcome": "status", "created_at": "created", "total_visits": "visits"},
        "types": {"total_visits": "numeric"},
        "outcome_values": {"won": ["Won"], "lost": ["Lost"], "open": ["Open"]},
    }
)


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"total_visits": {"x": 1}}, "field 'total_visits' holds a dict; expected a single value"),
        ({"total_visits": "lots"}, "lead L1: field 'total_visits' must be a number, got 'lots'"),
        ({"total_visits": True}, "field 'total_visits' must be a number, got True"),
        ({"created_at": "not-a-date"}, "field 'created_at' must be a date"),
    ],
)
def test_lead_fields_of_the_wrong_type_name_the_lead_and_the_field(record, needle) -> None:
    with pytest.raises(SalesmlError, match=needle):
        leads_from_records([{"lead_id": "L1", **record}], LEADS)


def test_lead_fields_that_convert_are_kept_and_empty_text_is_missing() -> None:
    frame = leads_from_records(
        [
            {"lead_id": "L1", "total_visits": "3", "created_at": "2024-05-01"},
            {"lead_id": "L2", "total_visits": " "},
        ],
        LEADS,
    )
    assert frame["total_visits"].tolist()[0] == 3.0 and np.isnan(frame["total_visits"].tolist()[1])
    assert frame["created_at"].iloc[0] == pd.Timestamp("2024-05-01")


def test_a_key_missing_in_every_row_gets_no_deals_and_the_overall_rate() -> None:
    history = pd.DataFrame(
        {
            "closed_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]),
            "label": [1.0, 1.0, 0.0, 1.0],
            "agent": ["a", "a", "b", "b"],
        }
    )
    one = pd.DataFrame({"decision_time": pd.to_datetime(["2024-02-01"]), "agent": [np.nan]})
    both = pd.DataFrame({"decision_time": pd.to_datetime(["2024-02-01"] * 2), "agent": [np.nan, "a"]})
    alone, mixed = point_in_time_rates(one, history, ["agent"]), point_in_time_rates(both, history, ["agent"])
    assert list(alone.columns) == list(mixed.columns) == ["agent_win_rate", "agent_closed_deals"]
    assert alone.iloc[0].tolist() == pytest.approx([0.75, 0.0])  # 3 of 4 earlier deals won, none of this key
    assert mixed.iloc[0].tolist() == pytest.approx([0.75, 0.0])


def test_training_needs_enough_rows_of_each_class_and_a_positive_budget() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": range(15), "t": range(15), "x": rng.normal(size=15), "y": [0, 1] * 7 + [0]})
    data = ClassifierData(
        frame=frame, id_col="id", time_col="t", label_col="y", numeric=["x"], categorical=[]
    )
    with pytest.raises(SalesmlError, match="7 positive and 8 negative in 'y'; .* at least 10 of each class"):
        train_classifier(data, TrainConfig(split="stratified"))
    big = pd.concat([frame] * 4, ignore_index=True).assign(id=range(60), t=range(60))
    for budget in (0.0, float("nan"), -1.0):
        with pytest.raises(SalesmlError, match="search budget \\(--timeout\\) must be a positive number"):
            train_classifier(ClassifierData(**{**data.__dict__, "frame": big}), TrainConfig(timeout_s=budget))


def test_the_model_store_uri_and_home_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from training.registry import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    with pytest.raises(SalesmlError, match="MLflow has no store for 'bogus'"):
        connect()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "a_file"))
    with pytest.raises(SalesmlError, match="cannot create the model store folder .*a_file/models"):
        connect()
