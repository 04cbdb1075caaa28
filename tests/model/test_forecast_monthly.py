"""A monthly organisation with two hierarchies and mostly intermittent bottom series (generated), end to end:
``salesml train sales --promote`` (its backtest, logged with the run, is what ``salesml backtest sales`` writes)
and the serving functions on the champion.

One full training, not a backtest and then a training: the training runs the same backtest (same config, same
choice on the calibration cutoffs) and logs its files, so a separate ``backtest sales`` here would fit every
model twice (about 3.5 minutes of the suite's CPU). ``backtest sales`` itself is run on crm
(tests/model/test_forecast_crm.py) and on the small synthetic data (tests/unit/test_forecast.py). Not ``--fast``:
with one objective and one calibration cutoff the choice on this data is the bottom-up l1 model, whose total
bias (-0.27) is the collapse the full choice exists to avoid.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monthly_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = yaml.safe_load((REPO / "features" / "specs" / "synthetic.yaml").read_text())
    spec["name"] = "synthetic_monthly"
    spec["generator"].update(n_order_lines=6000, seed=11)
    spec["forecast"] = {"frequency": "MS", "fill_gaps_with_zero": True, "season_length": 12}
    path = tmp_path_factory.mktemp("monthly") / "synthetic_monthly.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_monthly_intermittent_train_backtest_and_serve(monthly_spec: Path, fresh_home: Path) -> None:
    res = run_cli("train", "sales", "--dataset", str(monthly_spec), "--promote")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "promoted to champion" in res.stdout
    assert re.search(r"chosen .+ \(score [0-9.]+ on the calibration cutoffs", res.stdout), res.stdout[-2000:]

    import mlflow

    from training import registry
    from training.forecast.serve_api import forecast_nodes, load_forecast, plan_target, quarter_totals

    registry.configure("sales_forecast")
    version = mlflow.MlflowClient().get_model_version("sales_forecast.synthetic_monthly", "1")
    metrics = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="backtest/metrics.csv")
    )
    assert {"total", "region", "manager", "rep", "series", "product_id", "bottom"} == set(metrics["level"])
    # Croston-type baselines compete on intermittent data, and the bottom-up sums do not collapse
    assert {"CrostonSBA", "TSB", "ADIDA"} <= set(metrics["model"])
    chosen = metrics[metrics["model"] == "chosen"].set_index("level")
    assert abs(chosen.loc["total", "bias"]) < 0.25

    model = mlflow.pyfunc.load_model("models:/sales_forecast.synthetic_monthly@champion")
    art = load_forecast(model)
    assert art.meta["freq"] == "MS" and art.meta["recipe"]["chosen_on"] == "calibration"
    nodes = forecast_nodes(art, level="bottom")
    assert len(nodes) > 0 and (nodes["lo-95"] <= nodes["hi-95"]).all() and (nodes["mean"] >= 0).all()
    q = quarter_totals(art, nodes=["total"], quarter="next")
    assert len(q) == 1 and q["lo-80"].iloc[0] <= q["mean"].iloc[0] <= q["hi-80"].iloc[0]
    plan = plan_target(art, "total", float(q["mean"].iloc[0]), "next")
    assert plan[plan["role"] == "child"]["target"].sum() == pytest.approx(float(q["mean"].iloc[0]))
    card = run_cli("models", "card", "sales_forecast.synthetic_monthly", "1")
    assert card.returncode == 0 and "Forecast choice" in card.stdout and "calibration cutoffs" in card.stdout
