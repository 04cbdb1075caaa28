"""Request and response bodies of the HTTP service (pydantic; they are the OpenAPI document).

Requests forbid unknown fields, so a typo is a 400 that names the field instead of a silently ignored option.
What BentoML's document generator cannot carry (batch limits, one-of rules, OpenAPI 3.0 forms of bounds, every
status the edge answers) is added to the served document by :mod:`serving.openapi`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from features.settings import env_positive_int

__all__ = [
    "max_batch",
    "ChurnResult",
    "ChurnScoreRequest",
    "EmptyRequest",
    "ForecastRequest",
    "LeadScoreRequest",
    "PlanRequest",
    "CustomerItem",
    "ForecastNode",
    "ItemError",
    "LeadItem",
    "LeadResult",
    "ModelInfo",
    "PeriodForecast",
    "PlanChild",
    "PlanResponse",
    "QuarterTotal",
    "Reason",
]

# Taken as sent (no stripping), so the document's length bounds are the ones the server checks.
Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def max_batch() -> int:
    """Items per request (``SALESML_MAX_BATCH``): checked by the endpoints, stated by the served document."""
    return env_positive_int("SALESML_MAX_BATCH", 10_000)


FeatureValue = float | int | str | bool | None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerItem(_Request):
    customer_id: Id = Field(description="The customer's id as in the data set.")
    features: dict[str, FeatureValue] | None = Field(
        None,
        description="Feature values to score with instead of the stored snapshot (canonical feature names); "
        "omitted, null or {}: the customer's row in the snapshot.",
    )


class LeadItem(_Request):
    lead_id: Id = Field(description="The lead's or deal's id.")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict,
        description="The lead's attributes (canonical names of the data set's leads table).",
    )


class ChurnScoreRequest(_Request):
    customers: list[CustomerItem] = Field(description="Customers to score, by id or with feature values.")


class LeadScoreRequest(_Request):
    leads: list[LeadItem] = Field(description="Leads or deals to score with their attributes.")


class ForecastRequest(_Request):
    # Either may be left out but neither may be null: exactly one of the two is given (the document says so).
    nodes: list[Id] = Field(None, description="Node ids (e.g. 'total', 'store_type=A/store=1').")  # type: ignore[assignment]
    level: Id = Field(None, description="A hierarchy level name; every node of that level.")  # type: ignore[assignment]


class PlanRequest(_Request):
    node: Id = Field(description="The node whose quarter target is given.")
    # strict: a number, not "5" or true (which pydantic would otherwise read as 5.0 / 1.0)
    target: float = Field(
        gt=0, strict=True, allow_inf_nan=False, description="The quarter target, a positive amount."
    )
    quarter: Literal["current", "next"] = Field("next", description="Which quarter the target is for.")


class EmptyRequest(_Request):
    pass


class Reason(BaseModel):
    feature: str
    contribution: float = Field(
        description="Signed contribution to the log-odds (positive raises the probability)."
    )
    value: str


class ModelRef(BaseModel):
    dataset: str = Field(description="The data set the model was trained on and the answer computed from.")
    model_name: str = Field(description="The registered model, <product>.<data set>.")
    model_version: str
    as_of: str = Field(description="Date of the data the features / forecasts were computed from.")


class ItemError(BaseModel):
    id: str
    error: str


class ChurnResult(ModelRef):
    customer_id: str
    probability: float = Field(ge=0, le=1, description="Probability of no purchase within horizon_days.")
    horizon_days: int
    band: str = Field(description="Risk tier: high, medium or low.")
    reasons: list[Reason]
    value: float | None = Field(None, description="Trailing 12-month revenue (null when the data has none).")
    expected_value: float | None = Field(
        None, description="probability x value: the revenue expected to be lost."
    )


class LeadResult(ModelRef):
    lead_id: str
    probability: float = Field(ge=0, le=1, description="Probability that the lead or deal converts.")
    band: str = Field(description="Grade: A (best) to D.")
    reasons: list[Reason]
    value: float | None = Field(None, description="The deal's value (null when the data has none).")
    expected_value: float | None = Field(
        None, description="probability x value: the value expected to be won."
    )


class PeriodForecast(BaseModel):
    ds: str
    mean: float
    lo_80: float
    hi_80: float
    lo_95: float
    hi_95: float


class QuarterTotal(BaseModel):
    quarter: Literal["current", "next"]
    period: str
    actual_to_date: float
    mean: float
    median: float
    lo_80: float
    hi_80: float
    lo_95: float
    hi_95: float


class ForecastNode(ModelRef):
    node: str
    level: str
    periods: list[PeriodForecast]
    quarters: list[QuarterTotal]


class PlanChild(BaseModel):
    node: str
    level: str
    role: Literal["node", "child"]
    share: float
    target: float
    median: float
    probability: float = Field(
        ge=0, le=1, description="Calibrated probability that the quarter total reaches target."
    )


class PlanResponse(ModelRef):
    node: str
    quarter: Literal["current", "next"]
    target: float
    rows: list[PlanChild]


class ModelInfo(BaseModel):
    product: str
    name: str
    version: str
    alias: str
    source: str
    stale: bool
    dataset: str
    trained_at: str
    as_of: str
    metrics: dict[str, float]
