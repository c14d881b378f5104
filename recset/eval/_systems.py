"""What a backtest evaluates: a named :class:`System` that recommends for dense seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset
from recset.recall import PopularConfig, PopularRecall

# recs(seeds, users, k) -> (n, k) dense item ids padded with -1, and a bool (n,) telling per
# query whether the system had >= k candidates of its own (before any fallback)
Recommender = Callable[..., tuple[NDArray[np.int32], NDArray[np.bool_]]]
"""``(seeds, users, k)`` (and the queries' times for a timed system) -> (lists, coverage)."""


@dataclass
class System:
    """A named recommender under test.

    ``kind`` is "recset" or "baseline"; a ``personal`` system uses the query's user (others
    are evaluated once per distinct seed). A ``timed`` system also reads when each query was
    asked: its ``recommend`` takes a fourth argument, the queries' times (epoch seconds, or
    None when unknown), and it is asked once per query. ``params`` are the hyper-parameters
    it was built with (a tuned baseline's chosen values), reported in metrics.json.
    """

    name: str
    kind: str
    recommend: Recommender
    personal: bool = False
    params: dict[str, Any] | None = field(default=None)
    timed: bool = False


def popular_system(
    train: Dataset, name: str, scope: str, *, half_life_days: float = 30.0
) -> System:
    """The ``popular`` recall source alone (``scope`` "global" or "category") as a baseline.

    Ties in popularity go to the lower item id.
    """
    cfg = PopularConfig(scope=scope, half_life_days=half_life_days)  # type: ignore[arg-type]
    model = PopularRecall(cfg).fit(train)

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        c = model.recall_many(seeds, k)
        return c.item, c.counts() >= k

    return System(name, "baseline", rec)
