"""Splits leak nothing from the test window; queries are built as specified."""

import numpy as np
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.eval.splits import basket_queries, leave_last_split, time_split


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=600, seed=4))
    return Dataset.from_frames(syn.catalog, syn.events)


def test_time_split_leaks_nothing(ds: Dataset) -> None:
    sp = time_split(ds, test_share=0.2)
    t = sp.info["t"]
    assert sp.train.events.timestamp.max() < t <= sp.test.events.timestamp.min()
    # about the last 20% of baskets are in the test window
    share = len(sp.test.baskets) / len(ds.baskets)
    assert 0.15 < share < 0.25
    assert len(sp.train.events) + len(sp.test.events) == len(ds.events)


def test_leave_last_split(ds: Dataset) -> None:
    sp = leave_last_split(ds)
    b = ds.baskets
    # every buying user's test basket is their last one, and training stops before it
    test_b = sp.test.baskets
    assert len(np.unique(test_b.user)) == len(test_b)
    last_time = {u: b.timestamp[b.user == u].max() for u in np.unique(b.user)}
    for u, ts in zip(test_b.user.tolist(), test_b.timestamp.tolist(), strict=True):
        assert ts == last_time[u]
    tr = sp.train.events
    for u in np.unique(test_b.user)[:50].tolist():
        assert (tr.timestamp[tr.user == u] < last_time[u]).all()
    test_orders = set(sp.test.events.order.tolist())
    assert not (set(tr.order[tr.order >= 0].tolist()) & test_orders)


def test_queries_every_item_a_seed(ds: Dataset) -> None:
    sp = time_split(ds)
    q = basket_queries(sp.test)
    b = sp.test.baskets
    multi = b.sizes() >= 2
    assert len(q) == int(b.sizes()[multi].sum())
    for i in range(0, len(q), max(len(q) // 40, 1)):
        basket = set(b.items_of(int(q.basket[i])).tolist())
        targets = set(q.targets.item[q.targets.indptr[i] : q.targets.indptr[i + 1]].tolist())
        assert targets == basket - {int(q.seed[i])}
    first = basket_queries(sp.test, first_item_only=True)
    assert len(first) == int(multi.sum())
    assert np.array_equal(first.seed, b.item[b.indptr[:-1][multi]])


def test_queries_take_keeps_targets(ds: Dataset) -> None:
    q = basket_queries(time_split(ds).test)
    rows = np.array([5, 0, 3])
    sub = q.take(rows)
    for j, i in enumerate(rows.tolist()):
        a = q.targets.item[q.targets.indptr[i] : q.targets.indptr[i + 1]]
        b = sub.targets.item[sub.targets.indptr[j] : sub.targets.indptr[j + 1]]
        assert np.array_equal(a, b) and sub.seed[j] == q.seed[i]


def test_bootstrap_ci_brackets_the_mean() -> None:
    from recset.eval.backtest import bootstrap_ci

    rng = np.random.default_rng(0)
    hits = (rng.random(4000) < 0.3).astype(float)
    clusters = np.repeat(np.arange(1000), 4)
    lo, hi = bootstrap_ci(hits, clusters, n_boot=300)
    assert lo < hits.mean() < hi
    assert 0.0 < hi - lo < 0.1
