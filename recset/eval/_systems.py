"""What a backtest evaluates: a named :class:`System` that recommends for dense seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset
from recset.recall import PopularConfig, PopularRecall

# recs(seeds, users, k) -> (n, k) dense item ids padded with -1, and a bool (n,) telling per
# query whether the system had >= k candidates of its own (before any fallback)
Recommender = Callable[
    [NDArray[np.int32], NDArray[np.int32], int], tuple[NDArray[np.int32], NDArray[np.bool_]]
]


@dataclass
class System:
    """A named recommender under test.

    ``kind`` is "recset" or "baseline"; a ``personal`` system uses the query's user (others
    are evaluated once per distinct seed).
    """

    name: str
    kind: str
    recommend: Recommender
    personal: bool = False


def popular_system(train: Dataset, name: str, scope: str) -> System:
    """The ``popular`` recall source alone (``scope`` "global" or "category") as a baseline."""
    model = PopularRecall(PopularConfig(scope=scope)).fit(train)  # type: ignore[arg-type]

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        c = model.recall_many(seeds, k)
        return c.item, c.counts() >= k

    return System(name, "baseline", rec)
