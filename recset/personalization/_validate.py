"""Does the personalization stage beat the ranker's own order? Measured on held-out queries.

:func:`validate_stage` takes the ranker's lists for queries of a validation window (cut from
the training data, never the test window), re-ranks them with a trained
:class:`~recset.personalization.NeuralModel` at every blend weight of a grid, and reports the
Hit@k of the ranker alone and of each weight: the weight to serve, and whether the stage
wins at all (a stage that does not should be saved but not activated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from recset.data import Targets
from recset.errors import ConfigError

if TYPE_CHECKING:
    from recset.personalization._model import NeuralModel

_CHUNK = 2000
"""Rows whose personal scores are computed at a time (bounds the (rows, N, d) temporaries)."""


@dataclass(frozen=True)
class StageValidation:
    """Hit@k on validation queries of the ranker alone and re-ranked at each blend weight.

    Attributes
    ----------
    k : int
    queries : int
        Validation queries measured.
    ranker_hit : float
        Hit@k of the incoming (ranker's) order: the share of queries with a target in the
        top k.
    hit : dict of float to float
        Hit@k at each blend weight of the grid (weight 0 is the ranker's order).
    weight : float
        The weight with the best Hit@k (the smallest such weight on ties, so 0 when
        nothing beats the ranker).
    """

    k: int
    queries: int
    ranker_hit: float
    hit: dict[float, float] = field(default_factory=dict)
    weight: float = 0.0

    @property
    def stage_hit(self) -> float:
        """Hit@k at the chosen weight."""
        return self.hit[self.weight]

    @property
    def wins(self) -> bool:
        """Whether the stage, at its chosen weight, beats the ranker's order."""
        return self.stage_hit > self.ranker_hit

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "queries": self.queries,
            "ranker_hit": self.ranker_hit,
            "stage_hit": self.stage_hit,
            "weight": self.weight,
            "wins": self.wins,
            "hit_by_weight": {f"{w:g}": h for w, h in self.hit.items()},
        }


def _hit_rate(
    items: NDArray[np.integer], scores: NDArray[np.floating], targets: Targets, k: int
) -> float:
    """Share of rows whose ``k`` best-scored real items hold a target."""
    n = len(items)
    if n == 0:
        return 0.0
    width = min(k, items.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :width]
    top_items = np.take_along_axis(items, top, 1).astype(np.int64)
    top_ok = np.isfinite(np.take_along_axis(scores, top, 1)) & (top_items >= 0)
    n_items = int(max(items.max(initial=-1), targets.item.max(initial=-1))) + 1
    rows = np.arange(n, dtype=np.int64)[:, None]
    rec_keys = np.where(top_ok, rows * n_items + top_items, -1)
    target_keys = targets.query_of_entry() * n_items + targets.item
    hit = np.isin(rec_keys, target_keys) & top_ok
    return float(hit.any(axis=1).mean())


def validate_stage(
    model: NeuralModel,
    seeds: NDArray[np.int32],
    users: NDArray[np.int32],
    items: NDArray[np.int32],
    base_scores: NDArray[np.floating],
    targets: Targets,
    *,
    k: int = 10,
    grid: tuple[float, ...] | None = None,
) -> StageValidation:
    """Hit@k of the ranker's lists and of the lists re-ranked at each blend weight.

    Parameters
    ----------
    model : NeuralModel
        Trained on data before the validation window (its ``blend_weight_`` is ignored).
    seeds, users : ndarray of int32, shape (B,)
        Dense ids of the validation queries.
    items : ndarray of int32, shape (B, N)
        The ranker's candidates (padded with -1), in any order.
    base_scores : ndarray of float, shape (B, N)
        The ranker's scores (higher is better; padding -inf).
    targets : Targets
        Each query's held-out items (``targets.n_queries == B``).
    k : int
    grid : tuple of float, optional
        Blend weights to try (default: ``model.config.blend_grid``); 0 is always tried.
    """
    items = np.asarray(items)
    base = np.where(items >= 0, np.asarray(base_scores, dtype=np.float64), -np.inf)
    if targets.n_queries != len(items):
        raise ConfigError(
            f"validate_stage: {targets.n_queries} target sets for {len(items)} candidate rows"
        )
    if k < 1:
        raise ConfigError(f"The 'k' parameter of validate_stage must be >= 1. Got {k} instead.")
    weights = sorted({0.0, *(grid if grid is not None else model.config.blend_grid)})
    seeds = np.asarray(seeds)
    users = np.asarray(users)
    known = model._has_history(users)
    d = (
        np.concatenate(
            [
                model._personal(
                    seeds[lo : lo + _CHUNK], users[lo : lo + _CHUNK], items[lo : lo + _CHUNK]
                )
                for lo in range(0, len(items), _CHUNK)
            ]
        )
        if len(items)
        else np.zeros(items.shape)
    )
    hit = {
        w: _hit_rate(items, model._blend(items, base, d, np.where(known, w, 0.0)), targets, k)
        for w in weights
    }
    best = max(weights, key=lambda w: (hit[w], -w))
    return StageValidation(k, len(items), _hit_rate(items, base, targets, k), hit, best)
