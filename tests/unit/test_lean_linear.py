"""training/classifier/lean.py LeanLinear: the logistic part's preparation on arrays gives scikit-learn's columns
bit for bit (missing numbers, a column never seen with a value, rare, missing and unseen categories)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from training.classifier.lean import LeanLinear
from training.classifier.pipelines import logistic_pipeline

NUMERIC = ["amount", "age", "empty"]
CATEGORICAL = ["channel", "region"]


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.2] = np.nan
    channels = np.array(["web", "phone", "partner", "event", "rare-1", "rare-2"], dtype=object)
    p = np.array([0.4, 0.3, 0.2, 0.09, 0.005, 0.005])
    channel = channels[rng.choice(len(channels), n, p=p)]
    channel[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "amount": amount,
            "age": rng.integers(18, 80, n).astype(float),
            "empty": np.full(n, np.nan),  # no value in the fitted rows: the imputer drops it
            "channel": channel,
            "region": rng.choice(np.array(["N", "S", "E", "W"], dtype=object), n),
        }
    )


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")  # 'empty', on purpose
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lean_linear_gives_the_pipelines_columns_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fit = frame(rng, 600)
    y = (rng.random(600) < 0.3).astype(int)
    pipe = logistic_pipeline(
        SimpleNamespace(numeric=NUMERIC, categorical=CATEGORICAL), SimpleNamespace(random_state=0)
    )
    pipe.fit(fit, y)
    prepare = pipe.named_steps["prepare"]
    lean = LeanLinear.build(prepare, NUMERIC, CATEGORICAL)
    assert lean is not None

    new = frame(rng, 300)
    new.loc[:5, "channel"] = ["never-seen", "(missing)", "rare-1", np.nan, "web", "rare-2"]
    new.loc[6:8, "empty"] = [1.0, 2.0, np.nan]
    new.loc[9:10, "region"] = ["X", np.nan]
    expected = np.asarray(prepare.transform(new), dtype=np.float64)
    numbers = new[NUMERIC].to_numpy(dtype=np.float64)
    texts = new[CATEGORICAL].to_numpy(dtype=object)
    got = lean.transform(numbers, texts)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)  # equal to the bit (not close)
    one = lean.transform(numbers[:1], texts[:1])  # a single row, as the service sends it
    assert np.array_equal(one, expected[:1])


def test_a_pipeline_of_another_shape_is_left_to_scikit_learn() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import MinMaxScaler

    other = ColumnTransformer([("num", MinMaxScaler(), ["amount"])]).fit(pd.DataFrame({"amount": [1.0, 2.0]}))
    assert LeanLinear.build(other, ["amount"], []) is None
