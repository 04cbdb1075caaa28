"""``/leads/score`` requests -> the product contract's ``score_rows`` -> :class:`~serving.schemas.LeadResult`.

An id repeated in a request is refused here, per item; the other leads are handed to the service's
:class:`~serving.batcher.MicroBatcher`, which checks and scores the leads of every waiting request in one call
of :func:`score_lead_items` (a lead that breaks a rule is its own error entry, numbered in its request). A
lead's score does not depend on the other leads of the call (tested), so merging requests changes no answer
(two requests that both send ``lead-1`` have it scored in two rounds of the merged call, each under its id).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from features.errors import SalesmlError
from serving.answers import date_text, finite, model_ref
from serving.schemas import ItemError, LeadItem, LeadResult

__all__ = ["repeated_ids", "score_lead_items"]


def repeated_ids(leads: list[LeadItem]) -> tuple[list[Any], list[int]]:
    """One request's repeated ids: ``(results with an ItemError for each lead whose id repeats, the others)``."""
    results: list[Any] = [None] * len(leads)
    counts = Counter(item.lead_id for item in leads)
    good: list[int] = []
    for i, item in enumerate(leads):
        if counts[item.lead_id] > 1:
            results[i] = ItemError(
                id=item.lead_id, error=f"lead_id {item.lead_id!r} appears more than once in the batch"
            )
        else:
            good.append(i)
    return results, good


def score_lead_items(items: list[tuple[Any, LeadItem, int]]) -> list[LeadResult | ItemError]:
    """Check and score ``(champion, lead, its position in its request)`` triples: one check of every lead's fields
    and one ``score_rows`` call per champion (a reload between two requests may put two versions in one merged
    call; each lead is scored by the version its request started with)."""
    from features.inputs import lead_record_errors

    results: list[Any] = [None] * len(items)
    by_champion: dict[int, list[int]] = {}
    for i, (champ, _, _) in enumerate(items):
        by_champion.setdefault(id(champ), []).append(i)
    for positions in by_champion.values():
        champ = items[positions[0]][0]
        leads = [items[i][1] for i in positions]
        # Each lead's own problems first (one pass over all of them), so one bad lead costs nothing extra.
        problems = lead_record_errors(
            [{**item.features, "lead_id": item.lead_id} for item in leads],
            champ.model["context"].table,
            numbers=[items[i][2] for i in positions],
        )
        for k, problem in problems.items():
            results[positions[k]] = ItemError(id=leads[k].lead_id, error=problem)
        good = [k for k in range(len(leads)) if k not in problems]
        for k, result in zip(good, _score(champ, [leads[k] for k in good]) if good else [], strict=True):
            results[positions[k]] = result
    return results


def _score(champ: Any, leads: list[LeadItem]) -> list[LeadResult | ItemError]:
    """One champion's leads, each scored under its own id (an id can hold activities): a merged call in which
    two requests send the same id scores it in rounds, each id once per round. Item by item only when a call
    as a whole is refused, so one bad lead never sinks the rest."""
    from training import score_columns as sc
    from training.products import PRODUCTS

    results: list[Any] = [None] * len(leads)
    rounds: dict[int, list[int]] = {}
    seen: Counter[str] = Counter()
    for i, item in enumerate(leads):
        rounds.setdefault(seen[item.lead_id], []).append(i)
        seen[item.lead_id] += 1
    batches = list(rounds.values())
    cutoff = str(champ.meta.get("data_cutoff") or "")
    while batches:
        batch = batches.pop()
        records = [{**leads[i].features, "lead_id": leads[i].lead_id} for i in batch]
        try:
            scored = PRODUCTS["lead_score"].score_rows(
                champ.model["loaded"], records, context=champ.model["context"]
            )
        except SalesmlError as err:
            if len(batch) == 1:
                results[batch[0]] = ItemError(id=leads[batch[0]].lead_id, error=str(err))
            else:
                batches.extend([[i] for i in batch])
            continue
        at = {lead_id: k for k, lead_id in enumerate(scored["lead_id"].astype(str))}
        # columns as arrays, read by position (a frame's to_dict costs ~1 ms a call)
        col = {
            c: scored[c].to_numpy()
            for c in (sc.PROBABILITY, sc.BAND, sc.REASONS, sc.VALUE, sc.EXPECTED_VALUE)
        }
        as_of = scored[sc.AS_OF]
        for i in batch:
            k = at[leads[i].lead_id]
            results[i] = LeadResult(
                lead_id=leads[i].lead_id,
                probability=float(col[sc.PROBABILITY][k]),
                band=str(col[sc.BAND][k]),
                reasons=sc.reasons_from_json(col[sc.REASONS][k]),
                value=finite(col[sc.VALUE][k]),
                expected_value=finite(col[sc.EXPECTED_VALUE][k]),
                **model_ref(champ, cutoff or date_text(as_of.iloc[k])),
            )
    return results
