"""Hyper-parameters of the baselines, chosen on a validation window cut from training.

The protocol is the ranker's (docs/ranking.md): the training part is split again the way the
test window was cut from the whole log (each user's last training basket for a leave-last
split, the last ``share`` of the training baskets for a time split); every combination of a
baseline's grid (:data:`recset.eval.baselines.GRIDS`) is fitted on the earlier part, filled
like in the backtest, and scored by item Hit@10 on the validation baskets. The test window
is never looked at. Ties go to the combination listed first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset, Queries, Split, basket_queries, leave_last_split, time_split
from recset.errors import DataError
from recset.eval._systems import System
from recset.eval.baselines import BASELINES, GRIDS, baseline_systems, shared_cooccurrence
from recset.eval.metrics import hit_matrix, summarize
from recset.recall import RecallBase

_log = logging.getLogger(__name__)

Metric = Callable[[System, Split, Queries], float]


@dataclass
class Tuned:
    """A baseline's chosen hyper-parameters and what every tried combination scored."""

    params: dict[str, Any]
    score: float
    tried: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "validation_hit@10": self.score,
            "grid": [{"params": p, "hit@10": s} for p, s in self.tried],
        }


def validation_split(
    train: Dataset, split: Literal["time", "leave_last"], share: float = 0.2
) -> Split:
    """The validation window cut from ``train`` the way the test window was cut."""
    if split == "leave_last":
        return leave_last_split(train)
    return time_split(train, test_share=share)


def validation_queries(val: Split, *, max_queries: int | None = 5000, seed: int = 0) -> Queries:
    """Basket queries of the validation window, sampled reproducibly to ``max_queries``."""
    queries = basket_queries(val.test)
    if len(queries) == 0:
        raise DataError(
            f"{val.train.name}: the validation window cut from training holds no basket "
            "with >= 2 items; there is nothing to tune the baselines on"
        )
    if max_queries is not None and len(queries) > max_queries:
        rng = np.random.default_rng(seed)
        queries = queries.take(np.sort(rng.choice(len(queries), size=max_queries, replace=False)))
    return queries


def hit_at_10(system: System, val: Split, queries: Queries) -> float:
    """Item Hit@10 of ``system`` on ``queries`` (non-personal systems asked once per seed)."""
    recs = _recommend(system, queries, 10)
    return float(summarize(hit_matrix(recs, queries.targets), queries.targets)["hit@10"])


def _recommend(system: System, queries: Queries, k: int) -> NDArray[np.int32]:
    if system.timed:  # reads when each query was asked: once per query
        return system.recommend(queries.seed, queries.user, k, queries.time)[0]
    if system.personal:
        return system.recommend(queries.seed, queries.user, k)[0]
    seeds, back = np.unique(queries.seed, return_inverse=True)
    recs = system.recommend(seeds.astype(np.int32), np.full(len(seeds), -1, np.int32), k)[0]
    return recs[back]


def refit_source(source: RecallBase, data: Dataset) -> RecallBase:
    """A new source of ``source``'s type and config, fitted on ``data``."""
    return type(source)(source.config).fit(data)


def tune_baselines(
    train: Dataset,
    names: Sequence[str] | None = None,
    *,
    split: Literal["time", "leave_last"] = "time",
    share: float = 0.2,
    fill: RecallBase | None = None,
    grids: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    metric: Metric = hit_at_10,
    max_queries: int | None = 5000,
    seed: int = 0,
) -> dict[str, Tuned]:
    """Choose each baseline's hyper-parameters on a validation window cut from ``train``.

    Parameters
    ----------
    split, share
        How the validation window is cut (:func:`validation_split`).
    fill : RecallBase, optional
        The source that fills the baselines' short rows in the backtest; a source of its
        type and config is fitted on the validation fit part and fills there too.
    grids : mapping, optional
        The combinations tried per baseline (default :data:`GRIDS`).
    metric : callable
        ``metric(system, validation_split, queries) -> float``, higher is better (default:
        item Hit@10).
    """
    names = list(BASELINES) if names is None else list(names)
    grids = GRIDS if grids is None else grids
    val = validation_split(train, split, share)
    queries = validation_queries(val, max_queries=max_queries, seed=seed)
    val_fill = None if fill is None else refit_source(fill, val.train)
    out: dict[str, Tuned] = {}
    with shared_cooccurrence():
        for name in names:
            tried = []
            for combo in grids.get(name, ({},)):
                params = dict(combo)
                (system,) = baseline_systems(
                    val.train, [name], params={name: params}, fill=val_fill
                )
                tried.append((params, metric(system, val, queries)))
                _log.info("tune %s %s: %.4f", name, params, tried[-1][1])
            best = max(range(len(tried)), key=lambda i: (tried[i][1], -i))
            out[name] = Tuned(tried[best][0], tried[best][1], tried)
    return out
