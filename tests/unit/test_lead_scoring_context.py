"""Lead scores at request speed are the scores of the slow, obviously correct path, alone, in a batch, any order.

The fast path is the one the service and ``score leads --input`` take: the data set's new-lead context counted
once (:func:`features.lead_records.new_lead_context`), then each batch only looked up and scored
(``PRODUCTS["lead_score"].score_rows``). The reference is the definition: the lead appended to the data set's
leads table as its only new open lead and the whole lead set rebuilt by the training featuriser
(:func:`features.leads.build_lead_set`), its row scored by the same champion. Expectations are computed once per
lead; seeded random subsets and permutations of the leads must reproduce them to 1e-12.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.lead_records import new_lead_context
from features.leads import build_lead_set
from features.load import Dataset, load_dataset
from training.products import PRODUCTS, LoadedModel, load_model

ATTRIBUTES = ("owner", "source", "company_size", "industry", "demo_requested", "amount")


@pytest.fixture(scope="module")
def champion(trained_home: Path, small_synthetic_spec: Path) -> tuple[LoadedModel, Dataset]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SALESML_HOME", str(trained_home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        loaded = load_model("lead_score", "synthetic")
    return loaded, load_dataset(small_synthetic_spec)


def _records(dataset: Dataset, n: int, seed: int) -> list[dict]:
    """Raw leads: known and unknown owners and categories, with and without an amount; two reuse the ids of
    open leads with logged activities (their counts must come through)."""
    rng = np.random.default_rng(seed)
    leads = dataset.tables["leads"]
    events = dataset.tables["activities"]["entity_id"]
    active_open = sorted(set(leads.loc[leads["outcome"] == "open", "lead_id"]) & set(events))[:2]
    ids = [*active_open, *(f"new-{i}" for i in range(n - len(active_open)))]
    pick = {c: [*leads[c].dropna().unique()[:4], f"unseen-{c}"] for c in ATTRIBUTES[:4]}
    return [
        {
            "lead_id": lead_id,
            **{c: str(rng.choice(pick[c])) for c in pick},
            "demo_requested": bool(rng.random() < 0.5),
            "amount": float(rng.integers(1, 200) * 50) if rng.random() < 0.7 else np.nan,
        }
        for lead_id in ids
    ]


def _slow_probability(record: dict, dataset: Dataset, loaded: LoadedModel) -> float:
    """The lead as the data set's one new open lead (an open lead's id: in its place), featurised with the whole
    history by the training path."""
    leads = dataset.tables["leads"]
    leads = leads[leads["lead_id"] != record["lead_id"]]
    row = pd.DataFrame([{**record, "outcome": "open"}]).reindex(columns=leads.columns)
    row = row.astype({c: leads[c].dtype for c in (*ATTRIBUTES, "created_at", "closed_at")})
    grown = pd.concat([leads, row], ignore_index=True)
    grown["outcome"] = pd.Categorical(grown["outcome"], categories=leads["outcome"].cat.categories)
    frame = build_lead_set(replace(dataset, tables={**dataset.tables, "leads": grown})).frame
    return float(loaded.model.predict(frame.iloc[[-1]])["probability"].iloc[0])


@pytest.fixture(scope="module")
def expected(champion: tuple[LoadedModel, Dataset]) -> tuple[list[dict], dict[str, float]]:
    loaded, dataset = champion
    records = _records(dataset, 8, seed=20)
    return records, {r["lead_id"]: _slow_probability(r, dataset, loaded) for r in records}


@pytest.fixture(scope="module")
def fast(champion: tuple[LoadedModel, Dataset]):
    loaded, dataset = champion
    context = new_lead_context(dataset)  # once, as the service's loader does

    def score(records: list[dict]) -> pd.Series:
        out = PRODUCTS["lead_score"].score_rows(loaded, records, context=context)
        return out.set_index("lead_id")["probability"]

    return score


def test_each_lead_alone_scores_as_the_slow_path(fast, expected) -> None:
    records, want = expected
    for record in records:
        got = fast([record])
        assert got.index.tolist() == [record["lead_id"]]
        assert got.iloc[0] == pytest.approx(want[record["lead_id"]], abs=1e-12, rel=0)
    assert len({round(p, 9) for p in want.values()}) > 3  # the leads differ: the check is not vacuous


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_any_batch_in_any_order_scores_as_the_slow_path(fast, expected, data: st.DataObject) -> None:
    records, want = expected
    batch = data.draw(st.permutations(records).flatmap(lambda p: st.integers(1, len(p)).map(lambda k: p[:k])))
    got = fast(list(batch))
    assert got.index.tolist() == [r["lead_id"] for r in batch]
    np.testing.assert_allclose(got.to_numpy(), [want[r["lead_id"]] for r in batch], rtol=0, atol=1e-12)


def test_a_batch_above_the_look_up_size_scores_as_its_leads_alone(champion, expected) -> None:
    """Text columns of a few rows are encoded by look-up, of more rows by pandas (training.classifier.scoring
    SMALL_ROWS): both give the same probabilities and the same reasons."""
    from training.classifier.scoring import SMALL_ROWS

    loaded, dataset = champion
    context = new_lead_context(dataset)
    records, _ = expected
    many = [
        {**r, "lead_id": f"{r['lead_id']}-{k}"}
        for k in range(SMALL_ROWS // len(records) + 2)
        for r in records
    ]
    assert len(many) > SMALL_ROWS
    together = PRODUCTS["lead_score"].score_rows(loaded, many, context=context).set_index("lead_id")
    alone = pd.concat([PRODUCTS["lead_score"].score_rows(loaded, [r], context=context) for r in many])
    alone = alone.set_index("lead_id").loc[together.index]
    np.testing.assert_allclose(together["probability"], alone["probability"], rtol=0, atol=1e-12)
    assert together["reasons"].tolist() == alone["reasons"].tolist()
    assert together["band"].tolist() == alone["band"].tolist()


@pytest.mark.slow
def test_row_ordered_leads_are_each_the_next_row_whatever_the_batch(shared_data: Path) -> None:
    """bank-marketing (no dates, rows in time order): every new lead of a batch is decided right after the data
    (the same decision time, so the same ``as_of``), and its feature row is the one it gets alone."""
    from features.lead_records import lead_record_features
    from features.spec import Role

    dataset = load_dataset("bank-marketing")
    context = new_lead_context(dataset)
    leads = dataset.table(Role.leads)
    table = dataset.spec.table_of(Role.leads)[1]
    skip = {"lead_id", "outcome", "closed_at", *table.post_outcome}
    raw = leads.drop(columns=[c for c in skip if c in leads]).tail(5).to_json(orient="records")
    records = [{**r, "lead_id": f"N{i}"} for i, r in enumerate(json.loads(raw))]  # JSON, as a CRM sends
    together, _ = lead_record_features(records, context)
    assert set(together["decision_time"]) == {context.n_leads + 1}
    alone = pd.concat([lead_record_features([r], context)[0] for r in records], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone[together.columns])


def test_a_merged_call_scores_each_lead_under_its_own_id(champion, expected, fast) -> None:
    """The service merges waiting requests into one call (serving.leads.score_lead_items): two requests that
    send the same ids, one of them an open lead with logged activities, get what each lead gets alone."""
    from types import SimpleNamespace

    from serving.leads import score_lead_items
    from serving.schemas import LeadItem

    loaded, dataset = champion
    champ = SimpleNamespace(
        model={"loaded": loaded, "context": new_lead_context(dataset)},
        meta={"dataset": "synthetic"},
        name=loaded.name,
        version=loaded.version,
    )
    records, want = expected
    first, second = records[:3], [records[0], records[3]]  # records[0]: an open lead with activities
    items = [
        (champ, LeadItem(lead_id=r["lead_id"], features={k: v for k, v in r.items() if k != "lead_id"}), k)
        for request in (first, second)
        for k, r in enumerate(request)
    ]
    results = score_lead_items(items)
    assert [r.lead_id for r in results] == [r["lead_id"] for r in (*first, *second)]
    got = [r.probability for r in results]
    np.testing.assert_allclose(got, [want[r["lead_id"]] for r in (*first, *second)], rtol=0, atol=1e-12)
    alone = fast([records[0]]).iloc[0]
    assert got[0] == got[3] == pytest.approx(alone, abs=1e-12)
