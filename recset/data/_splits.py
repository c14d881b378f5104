"""Train/test splits, and queries built from test baskets with their target sets.

Both the ranker (its label window) and the backtest cut data this way, so the cut lives with
the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recset.data._dataset import Dataset
from recset.errors import DataError


@dataclass(frozen=True)
class Targets:
    """Target sets of ``n_queries`` queries as CSR-like arrays.

    Query ``q`` has targets ``item[indptr[q]:indptr[q+1]]`` (distinct ids).
    """

    indptr: NDArray[np.int64]
    item: NDArray[np.int64]

    @property
    def n_queries(self) -> int:
        return len(self.indptr) - 1

    def sizes(self) -> NDArray[np.int64]:
        return np.diff(self.indptr)

    def query_of_entry(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.sizes())

    def map(self, mapping: NDArray[np.integer]) -> Targets:
        """Targets mapped through ``mapping`` (e.g. item -> type), deduplicated, -1 dropped."""
        q = self.query_of_entry()
        mapped = np.asarray(mapping, dtype=np.int64)[self.item]
        ok = mapped >= 0
        q, mapped = q[ok], mapped[ok]
        if len(q):
            width = int(mapped.max()) + 1
            keys = np.unique(q * width + mapped)
            q, mapped = keys // width, keys % width
        indptr = np.zeros(self.n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(q, minlength=self.n_queries), out=indptr[1:])
        return Targets(indptr, mapped)

    def select(self, keep: NDArray[np.bool_]) -> Targets:
        """Keep only the target entries where ``keep`` (one flag per entry) is true."""
        q = self.query_of_entry()[keep]
        indptr = np.zeros(self.n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(q, minlength=self.n_queries), out=indptr[1:])
        return Targets(indptr, self.item[keep])


@dataclass(frozen=True)
class Split:
    """A train dataset, a test dataset (same id maps) and a description for reports."""

    train: Dataset
    test: Dataset
    info: dict[str, object]


def time_split(dataset: Dataset, t: int | None = None, *, test_share: float = 0.2) -> Split:
    """Train on events before ``t``, test on events from ``t`` on.

    Without ``t``, it is the time that leaves the last ``test_share`` of orders in the test
    window. Nothing at or after ``t`` is in ``train``.
    """
    if t is None:
        t = dataset.order_time_quantile(1.0 - test_share)
    train, test = dataset.split_time(t)
    info = {
        "kind": "time",
        "t": int(t),
        "train_events": len(train.events),
        "test_events": len(test.events),
        "test_share": test_share,
    }
    return Split(train, test, info)


def leave_last_split(dataset: Dataset) -> Split:
    """Each user's last basket is the test set; training keeps everything that user did before.

    Events of a user from the start of their last basket on are left out of training, so no
    model sees the test baskets. (Other users' later events stay in training: this is the
    usual per-user protocol, for data without absolute dates such as Instacart's.)
    """
    b = dataset.baskets
    if len(b) == 0:
        raise DataError(f"{dataset.name}: no baskets (purchases with an order_id) to split on")
    order = np.lexsort((b.timestamp, b.user))
    last = order[np.r_[b.user[order][1:] != b.user[order][:-1], True]]
    t_user = np.full(dataset.n_users, np.iinfo(np.int64).max, dtype=np.int64)
    t_user[b.user[last]] = b.timestamp[last]
    ev = dataset.events
    train_mask = ev.timestamp < t_user[ev.user]
    last_orders = np.zeros(len(dataset.orders_map), dtype=bool)
    last_orders[b.key[last]] = True
    test_mask = (ev.order >= 0) & last_orders[np.maximum(ev.order, 0)]
    train = dataset.with_events(train_mask, name=f"{dataset.name}[train]")
    test = dataset.with_events(test_mask, name=f"{dataset.name}[last baskets]")
    info = {
        "kind": "leave_last_order_out",
        "test_baskets": int(len(last)),
        "train_events": len(train.events),
        "test_events": len(test.events),
    }
    return Split(train, test, info)


@dataclass(frozen=True)
class Queries:
    """One query per (test basket, seed item): the other items of the basket are targets.

    ``seed``, ``user``, ``basket`` have shape (n_queries,); ``targets`` holds the target sets;
    ``time`` (n_queries,), when known, is when each query was asked (its basket's time, epoch
    seconds): the time-dependent ranker features (the promotion calendar) read it.
    """

    seed: NDArray[np.int32]
    user: NDArray[np.int32]
    basket: NDArray[np.int64]
    targets: Targets
    time: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.seed)

    def take(self, rows: NDArray[np.integer]) -> Queries:
        """The queries at ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        tg = self.targets
        sizes = tg.sizes()[rows]
        starts = tg.indptr[rows]
        idx = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
        indptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        return Queries(
            self.seed[rows],
            self.user[rows],
            self.basket[rows],
            Targets(indptr, tg.item[idx]),
            None if self.time is None else self.time[rows],
        )


def basket_queries(test: Dataset, *, first_item_only: bool = False) -> Queries:
    """Queries from every test basket with >= 2 distinct items.

    Each item is a seed and the rest of its basket are the targets; with
    ``first_item_only`` only the first-added item of each basket is a seed.
    """
    b = test.baskets
    sizes = b.sizes()
    multi = np.flatnonzero(sizes >= 2)
    s = sizes[multi]
    if first_item_only:
        q_basket = multi
        seed = b.item[b.indptr[multi]]
        seed_pos = np.zeros(len(multi), dtype=np.int64)
    else:
        q_basket = np.repeat(multi, s)
        offsets = np.arange(int(s.sum())) - np.repeat(np.cumsum(s) - s, s)
        seed_pos = offsets
        seed = b.item[b.indptr[q_basket] + offsets]
    q_sizes = sizes[q_basket]
    # every (query, basket item) pair, then drop the seed's own position
    q_of_pair = np.repeat(np.arange(len(q_basket)), q_sizes)
    pos = np.arange(int(q_sizes.sum())) - np.repeat(np.cumsum(q_sizes) - q_sizes, q_sizes)
    keep = pos != seed_pos[q_of_pair]
    items = b.item[b.indptr[q_basket][q_of_pair] + pos][keep]
    counts = np.bincount(q_of_pair[keep], minlength=len(q_basket))
    indptr = np.zeros(len(q_basket) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Queries(
        seed=seed.astype(np.int32),
        user=b.user[q_basket].astype(np.int32),
        basket=q_basket.astype(np.int64),
        targets=Targets(indptr, items.astype(np.int64)),
        time=b.timestamp[q_basket].astype(np.int64),
    )
