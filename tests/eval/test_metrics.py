"""Hit@k and friends: hand-computed cases and properties."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recset.eval.metrics import Targets, hit_matrix, per_query, summarize


def _targets(sets: list[list[int]]) -> Targets:
    indptr = np.r_[0, np.cumsum([len(s) for s in sets])].astype(np.int64)
    items = np.array([i for s in sets for i in s], dtype=np.int64)
    return Targets(indptr, items)


def test_hand_computed() -> None:
    recs = np.array([[3, 1, 2], [4, 5, 6], [7, -1, -1]])
    t = _targets([[1, 9], [6], [8]])
    h = hit_matrix(recs, t)
    assert h.tolist() == [[False, True, False], [False, False, True], [False, False, False]]
    m = summarize(h, t, ks=(1, 2, 3))
    assert m["hit@1"] == 0.0
    assert m["hit@2"] == pytest.approx(1 / 3)
    assert m["hit@3"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    # ndcg@10: q0 dcg = 1/log2(3), idcg = 1 + 1/log2(3); q1 dcg = 1/log2(4) = 0.5, idcg = 1
    q0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg@10"] == pytest.approx((q0 + 0.5) / 3)
    assert m["recall@10"] == pytest.approx((0.5 + 1.0) / 3)


def test_repeated_recommendation_hits_once() -> None:
    h = hit_matrix(np.array([[1, 1, 2]]), _targets([[1]]))
    assert h.tolist() == [[True, False, False]]


def test_padding_never_hits() -> None:
    h = hit_matrix(np.array([[-1, -1]]), _targets([[0]]))
    assert not h.any()


def test_map_to_groups() -> None:
    t = _targets([[0, 1, 2], [3]]).map(np.array([5, 5, -1, 7]))
    assert t.indptr.tolist() == [0, 1, 2] and t.item.tolist() == [5, 7]


queries = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.lists(st.integers(0, 15), min_size=1, max_size=20, unique=True),
            min_size=n,
            max_size=n,
        ),
        st.lists(
            st.lists(st.integers(0, 15), min_size=1, max_size=5, unique=True),
            min_size=n,
            max_size=n,
        ),
    )
)


@given(queries, st.randoms())
def test_properties(q: tuple[list[list[int]], list[list[int]]], rnd) -> None:  # noqa: ANN001
    rec_lists, target_sets = q
    width = 20
    recs = np.full((len(rec_lists), width), -1)
    for i, r in enumerate(rec_lists):
        recs[i, : len(r)] = r
    t = _targets(target_sets)
    h = hit_matrix(recs, t)
    m = summarize(h, t, ks=(1, 3, 5, 10, 20))
    # all metrics in [0, 1]
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in m.values())
    # hit@k non-decreasing in k
    hits = [m[f"hit@{k}"] for k in (1, 3, 5, 10, 20)]
    assert hits == sorted(hits)
    # invariant to the order of targets
    shuffled = [rnd.sample(s, len(s)) for s in target_sets]
    t2 = _targets(shuffled)
    assert summarize(hit_matrix(recs, t2), t2) == pytest.approx(summarize(h, t))
    # hit@k = 1 exactly when a target is among the first k
    pq = per_query(h, t.sizes(), 3)["hit"]
    for i, (r, s) in enumerate(zip(rec_lists, target_sets, strict=True)):
        assert pq[i] == float(bool(set(r[:3]) & set(s)))
