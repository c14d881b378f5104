"""Signals on a tiny hand-made dataset with hand-computed answers, and ``topk_rows``.

The dataset (items a b c d e; categories x = {a, b}, y = {c, d}, z = {e}; one day between
sessions)::

    s1 u1 day 0: view a, view b, buy a, buy c          (order o1 = {a, c}, a first)
    s2 u2 day 1: buy b, buy d (same second), view c    (order o2 = {b, d}; c viewed after)
    s3 u3 day 2: buy a, buy d, buy e                   (order o3 = {a, d, e} in that order)
    s4 u3 day 3: view d, view e                        (view-only session)
    s5 u1 day 4: buy c                                 (order o4 = {c}: no pair)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recset.data import Dataset
from recset.signals import Signals, topk_rows

DAY = 86_400
T0 = 1_700_000_000

_EVENTS = [
    # user, item, event, time, session, order
    ("u1", "a", "view", T0 + 1, "s1", None),
    ("u1", "b", "view", T0 + 2, "s1", None),
    ("u1", "a", "purchase", T0 + 3, "s1", "o1"),
    ("u1", "c", "purchase", T0 + 4, "s1", "o1"),
    ("u2", "b", "purchase", T0 + DAY, "s2", "o2"),
    ("u2", "d", "purchase", T0 + DAY, "s2", "o2"),
    ("u2", "c", "view", T0 + DAY + 1, "s2", None),
    ("u3", "a", "purchase", T0 + 2 * DAY, "s3", "o3"),
    ("u3", "d", "purchase", T0 + 2 * DAY + 1, "s3", "o3"),
    ("u3", "e", "purchase", T0 + 2 * DAY + 2, "s3", "o3"),
    ("u3", "d", "view", T0 + 3 * DAY, "s4", None),
    ("u3", "e", "view", T0 + 3 * DAY + 1, "s4", None),
    ("u1", "c", "purchase", T0 + 4 * DAY, "s5", "o4"),
]


@pytest.fixture(scope="module")
def ds() -> Dataset:
    catalog = pd.DataFrame(
        {
            "item_id": list("abcde"),
            "category_id": ["x", "x", "y", "y", "z"],
        }
    )
    events = pd.DataFrame(
        _EVENTS, columns=["user_id", "item_id", "event", "timestamp", "session_id", "order_id"]
    )
    return Dataset.from_frames(catalog, events)


@pytest.fixture(scope="module")
def sig(ds: Dataset) -> Signals:
    return Signals(ds)


def _pairs(ds: Dataset, m: sp.csr_matrix) -> dict[tuple[str, str], float]:
    """The nonzero entries of an item x item matrix by external ids."""
    coo = sp.coo_matrix(m)
    return {
        (ds.items.id_of(int(r)), ds.items.id_of(int(c))): float(v)
        for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)
        if v != 0
    }


def _sym(*pairs: str) -> dict[tuple[str, str], float]:
    out = {}
    for p in pairs:
        out[(p[0], p[1])] = 1.0
        out[(p[1], p[0])] = 1.0
    return out


def _dir(*pairs: str) -> dict[tuple[str, str], float]:
    return {(p[0], p[1]): 1.0 for p in pairs}


def test_co_purchase(ds: Dataset, sig: Signals) -> None:
    assert _pairs(ds, sig.co_purchase) == _sym("ac", "bd", "ad", "ae", "de")
    m = sig.co_purchase
    assert isinstance(m, sp.csr_matrix) and m.dtype == np.float32
    assert m.shape == (5, 5) and m.diagonal().sum() == 0


def test_co_purchase_directed(ds: Dataset, sig: Signals) -> None:
    """``[a, b]``: a added before b; the same-second pair (b, d) counts both ways."""
    assert _pairs(ds, sig.co_purchase_directed) == _dir("ac", "bd", "db", "ad", "ae", "de")
    # its support equals co_purchase's
    sym = sig.co_purchase_directed + sig.co_purchase_directed.T
    assert set(_pairs(ds, sym)) == set(_pairs(ds, sig.co_purchase))


def test_co_view(ds: Dataset, sig: Signals) -> None:
    assert _pairs(ds, sig.co_view) == _sym("ab", "de")


def test_purchase_after_view(ds: Dataset, sig: Signals) -> None:
    """Viewed a, then bought another item b in the same session; c viewed after the purchases
    in s2 and the views of s4 (no purchase) count nothing."""
    assert _pairs(ds, sig.purchase_after_view) == _dir("ac", "ba", "bc")


def test_co_purchase_only(ds: Dataset, sig: Signals) -> None:
    """Strict: directed co-purchases minus pairs co-viewed or purchased-after-viewed either
    way: (a, c) goes (a viewed, then c bought), (d, e) goes (co-viewed in s4)."""
    assert _pairs(ds, sig.co_purchase_only) == _dir("bd", "db", "ad", "ae")


def test_co_purchase_only_substitution(ds: Dataset, sig: Signals) -> None:
    """Default of the source: only comparison views disqualify. (a, c) stays: a was bought
    in s1, so viewing it was no comparison; (d, e) was co-viewed without buying: goes."""
    co_view, pav = sig.substitution_views
    assert _pairs(ds, co_view) == _sym("ab", "de")
    # viewed but not bought in the session -> bought in it (any order within the session)
    assert _pairs(ds, pav) == _dir("ba", "bc", "cb", "cd")
    assert _pairs(ds, sig.co_purchase_only_substitution) == _dir("ac", "bd", "db", "ad", "ae")


def test_user_category(ds: Dataset, sig: Signals) -> None:
    m = sig.user_category
    assert m.shape == (ds.n_users, ds.n_categories)
    got = {
        (ds.users.id_of(int(u)), ds.categories.id_of(int(c)))
        for u, c in zip(*m.nonzero(), strict=True)
    }
    assert got == {("u1", "x"), ("u1", "y"), ("u2", "x"), ("u2", "y")} | {
        ("u3", "x"),
        ("u3", "y"),
        ("u3", "z"),
    }
    assert set(m.data.tolist()) == {1.0}  # binary (u1 bought c twice)


def test_item_counts_and_occurrences(ds: Dataset, sig: Signals) -> None:
    idx = {i: ds.items.index_one(i) for i in "abcde"}
    purchases = {i: float(sig.item_purchases[idx[i]]) for i in "abcde"}
    assert purchases == {"a": 2, "b": 1, "c": 2, "d": 2, "e": 1}
    views = {i: float(sig.item_views[idx[i]]) for i in "abcde"}
    assert views == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    baskets = sig.occurrences("basket")
    assert {i: float(baskets[idx[i]]) for i in "abcde"} == purchases


def test_max_group_size_drops_big_baskets(ds: Dataset) -> None:
    """Order o3 holds 3 items: with max_group_size=2 its pairs are not counted."""
    small = Signals(ds, max_group_size=2)
    assert _pairs(ds, small.co_purchase) == _sym("ac", "bd")
    assert _pairs(ds, small.co_purchase_directed) == _dir("ac", "bd", "db")


def test_half_life_decays_by_age(ds: Dataset) -> None:
    """With a one-day half-life a basket's pairs weigh 0.5 ** (its age in days) measured from
    the last event (day 4): o1 is 4 days old, o3 2 days."""
    decayed = Signals(ds, half_life_days=1.0)
    got = _pairs(ds, decayed.co_purchase)
    assert got[("a", "c")] == pytest.approx(0.5**4, rel=1e-3)
    assert got[("a", "e")] == pytest.approx(0.5**2, rel=1e-3)
    assert got[("b", "d")] == pytest.approx(0.5**3, rel=1e-3)


def test_foreign_dataset_rejected(ds: Dataset, sig: Signals) -> None:
    from recset.recall.co_purchase import CoPurchaseRecall

    other = Dataset.from_frames(
        pd.DataFrame({"item_id": list("abcde")}),
        pd.DataFrame(_EVENTS, columns=["user_id", "item_id", "event", "timestamp", "s", "o"]),
    )
    with pytest.raises(ValueError, match="another dataset"):
        CoPurchaseRecall().fit(other, sig)


# -- topk_rows -----------------------------------------------------------------------------


def _topk_reference(
    m: sp.csr_matrix, k: int, min_value: float | None
) -> tuple[np.ndarray, np.ndarray]:
    n = m.shape[0]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    for r in range(n):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        entries = [
            (float(v), int(c))
            for c, v in zip(m.indices[lo:hi], m.data[lo:hi], strict=True)
            if min_value is None or v >= min_value
        ]
        entries.sort(key=lambda e: (-e[0], e[1]))
        for p, (v, c) in enumerate(entries[:k]):
            idx[r, p] = c
            val[r, p] = v
    return idx, val


@settings(max_examples=150, deadline=None)
@given(
    n_rows=st.integers(0, 12),
    n_cols=st.integers(1, 15),
    density=st.floats(0.0, 1.0),
    k=st.integers(0, 20),
    levels=st.integers(1, 6),
    negative=st.booleans(),
    min_value=st.one_of(st.none(), st.floats(-3.0, 6.0)),
    seed=st.integers(0, 2**32 - 1),
    max_entries=st.sampled_from([1, 3, 17, 1 << 23]),
    workers=st.sampled_from([1, 2]),
    as_float64=st.booleans(),
)
def test_topk_rows_matches_reference(
    n_rows: int,
    n_cols: int,
    density: float,
    k: int,
    levels: int,
    negative: bool,
    min_value: float | None,
    seed: int,
    max_entries: int,
    workers: int,
    as_float64: bool,
) -> None:
    """Few distinct values make ties common: ties go to the lower column id. Whatever the
    row blocks (``max_entries``), threads and dtype (float32: one key sort; float64: a
    lexicographic sort), the answer is the same."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, levels + 1, size=(n_rows, n_cols)).astype(np.float32)
    if negative:
        values -= levels / 2
    dense = np.where(rng.random((n_rows, n_cols)) < density, values, 0).astype(np.float32)
    m = sp.csr_matrix(dense)
    ref_idx, ref_val = _topk_reference(m, k, min_value)
    if as_float64:
        m = m.astype(np.float64)
    idx, val = topk_rows(m, k, min_value=min_value, max_entries=max_entries, workers=workers)
    assert idx.shape == (n_rows, k) and idx.dtype == np.int32 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)


def test_topk_rows_unsorted_indices() -> None:
    """Rows whose column indices are not sorted (e.g. after arithmetic) still tie-break by id."""
    m = sp.csr_matrix(
        (np.array([1.0, 1.0, 2.0], np.float32), np.array([3, 0, 1]), np.array([0, 3])),
        shape=(1, 4),
    )
    assert not m.has_sorted_indices
    idx, val = topk_rows(m, 3)
    assert idx.tolist() == [[1, 0, 3]] and val.tolist() == [[2.0, 1.0, 1.0]]
