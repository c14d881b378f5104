"""Request and response bodies of the HTTP API, with the bounds every input is held to."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100
"""Largest list a request may ask for."""
MAX_ID_LENGTH = 256
"""Longest item or user id accepted (characters)."""
MAX_BASKET = 50
"""Most items in a basket."""
MAX_BATCH = 100
"""Most seeds in one batch request."""
MAX_EXCLUDE = 200
"""Most excluded items per list."""
MAX_BODY_BYTES = 256 * 1024
"""Largest request body (bytes); a larger one gets 413."""

MAX_AT = 2.0**53 - 1
"""Latest request time accepted (epoch seconds)."""
AT_DESCRIPTION = (
    "When the request is asked, in epoch seconds (default: now). Only time-dependent ranker "
    "features read it (the promotion calendar's cand_promo): for replays and tests."
)

Mode = Literal["complete", "discover"]
ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
K = Annotated[int, Field(ge=1, le=MAX_K, description="List length.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasketRequest(_Body):
    """One list of complements for a cart."""

    items: list[ItemId] = Field(min_length=1, max_length=MAX_BASKET, description="Cart items.")
    user: UserId | None = Field(None, description="User id (unknown: served as anonymous).")
    k: K = 10
    exclude: list[ItemId] = Field(
        default_factory=list, max_length=MAX_EXCLUDE, description="Items never to return."
    )
    mode: Mode = "complete"
    at: float | None = Field(None, ge=0, le=MAX_AT, strict=True, description=AT_DESCRIPTION)


class BatchEntry(_Body):
    seed: ItemId
    user: UserId | None = None
    exclude: list[ItemId] = Field(default_factory=list, max_length=MAX_EXCLUDE)


class BatchRequest(_Body):
    """Several seeds answered in one call (one pipeline run)."""

    requests: list[BatchEntry] = Field(min_length=1, max_length=MAX_BATCH)
    k: K = 10
    mode: Mode = "complete"
    at: float | None = Field(None, ge=0, le=MAX_AT, strict=True, description=AT_DESCRIPTION)


class ReasonOut(BaseModel):
    source: str
    score: float
    rank: int


class RecommendationOut(BaseModel):
    item_id: str
    score: float
    reasons: list[ReasonOut]


class RecommendationsOut(BaseModel):
    seed: str
    user: str | None
    k: int
    mode: Mode
    version: int = Field(description="The engine version that answered.")
    recommendations: list[RecommendationOut]


class BasketOut(BaseModel):
    items: list[str]
    user: str | None
    k: int
    mode: Mode
    version: int
    recommendations: list[RecommendationOut]


class BatchResultOut(BaseModel):
    seed: str
    user: str | None
    recommendations: list[RecommendationOut]


class BatchOut(BaseModel):
    k: int
    mode: Mode
    version: int
    results: list[BatchResultOut]


class ExplainOut(BaseModel):
    seed: str
    known: bool
    precomputed: bool
    stages: list[str]
    mix: dict[str, Any]
    candidates: list[RecommendationOut]
    version: int


class ItemOut(BaseModel):
    item_id: str
    served: bool = Field(description="The served engine knows the item.")
    available: bool | None = Field(description="Servable now (None: unknown to the engine).")
    catalog: dict[str, Any] | None = Field(description="The store's catalog row, if any.")


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    versions: dict[str, int]
    loaded_at: float | None


class ReloadOut(BaseModel):
    outcome: str
    versions: dict[str, int]
    serving: dict[str, int]
    message: str


class ErrorOut(BaseModel):
    detail: str
