"""The release gate: does a newly trained stage serve better than the engine served now?

``recset train-ranker`` and ``recset train-neural`` store every stage they train, but make it
part of the active release only when the engine with the new stage does at least as well as
the served engine on a validation window cut from the training data (the last ``share`` of
its baskets, as :func:`recset.eval.validation_split` cuts it; never a test window). Both
engines answer the same queries, through the host API (external ids, the query's user), so
the comparison is the one a host would see.

The served engine's lists and the new stage were both fitted on data that includes that
window: the comparison does not measure generalisation (a backtest does), it refuses a stage
that cannot even beat the served engine on data it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recset.eval._tuning import validation_queries, validation_split
from recset.eval.metrics import hit_matrix, summarize

if TYPE_CHECKING:
    from recset.data import Dataset
    from recset.engine import Engine

GATE_METRIC = "hit@10"
"""The metric a new stage must not lose on (item level)."""

HIT1_TOLERANCE = 0.02
"""How far a new stage's Hit@1 may fall below the served engine's before it is refused, even
when its Hit@10 holds: the first slot is what most hosts show. 0.02 is about three standard
errors of a Hit@1 near 0.3 on the gate's 5,000 queries, so sampling noise alone rarely trips
it, while a stage that trades the top slot away (neural stages on the demo data: 0.303 ->
0.159) is stopped."""


@dataclass(frozen=True)
class GateResult:
    """The served engine's and the candidate's metrics on the same validation queries."""

    served: dict[str, float]
    candidate: dict[str, float]
    queries: int

    @property
    def wins(self) -> bool:
        """The candidate does at least as well as the served engine on :data:`GATE_METRIC`,
        and its Hit@1 is not lower by more than :data:`HIT1_TOLERANCE` (when both engines
        report Hit@1)."""
        if self.candidate.get(GATE_METRIC, 0.0) < self.served.get(GATE_METRIC, 0.0):
            return False
        if "hit@1" in self.candidate and "hit@1" in self.served:
            return self.candidate["hit@1"] >= self.served["hit@1"] - HIT1_TOLERANCE
        return True

    def describe(self) -> str:
        """``"hit@1 0.30 -> 0.16, hit@10 0.65 -> 0.61 on 5,000 validation queries"``."""
        parts = [
            f"{m} {self.served.get(m, 0.0):.4f} -> {self.candidate.get(m, 0.0):.4f}"
            for m in ("hit@1", "hit@10", "ndcg@10")
        ]
        return f"{', '.join(parts)} (served -> new) on {self.queries:,} validation queries"

    def to_json(self) -> dict[str, Any]:
        return {"served": self.served, "candidate": self.candidate, "queries": self.queries}


def _scores(engine: Engine, dataset: Dataset, seeds: list[str], users: list[str | None]) -> Any:
    recs = engine.recommend_batch(seeds, users, k=10)
    out = np.full((len(seeds), 10), -1, dtype=np.int64)
    for row, lst in enumerate(recs):
        if lst:
            out[row, : len(lst)] = dataset.items.index([r.item_id for r in lst])
    return out


def compare_on_validation(
    served: Engine,
    candidate: Engine,
    dataset: Dataset,
    *,
    share: float = 0.1,
    max_queries: int = 5000,
    seed: int = 0,
) -> GateResult:
    """Hit@1/5/10, NDCG@10 of ``served`` and ``candidate`` on the validation window of
    ``dataset`` (its last ``share`` of baskets; at most ``max_queries`` queries, sampled
    reproducibly with ``seed``).

    Raises
    ------
    DataError
        The window holds no basket with two items or more.
    """
    val = validation_split(dataset, "time", share)
    queries = validation_queries(val, max_queries=max_queries, seed=seed)
    seeds = [str(s) for s in dataset.items.values[queries.seed]]
    user_ids = dataset.users.values
    users = [str(user_ids[u]) if u >= 0 else None for u in queries.user.tolist()]
    result = {}
    for name, engine in (("served", served), ("candidate", candidate)):
        recs = _scores(engine, dataset, seeds, users)
        result[name] = summarize(hit_matrix(recs, queries.targets), queries.targets, (1, 5, 10))
    return GateResult(result["served"], result["candidate"], len(queries))


__all__ = ["GATE_METRIC", "GateResult", "compare_on_validation"]
