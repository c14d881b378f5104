"""Type transition, strategy "min_types": the least change that makes a list span N types."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recset.personalization._type_transition_config import TypeTransitionConfig

pytest.importorskip("torch")

from recset.personalization._type_transition import TypeTransition  # noqa: E402

# item -> type; item 9 has no type
_ITEM_TYPE = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4, -1], dtype=np.int32)
N_TYPES = 5


def _model(min_types: int) -> TypeTransition:
    """A fitted-looking model over the types above (the strategy reads only item types)."""
    tt = TypeTransition(TypeTransitionConfig(strategy="min_types", min_types=min_types))
    tt.level_ = "product_type"
    tt.type_names_ = [f"t{i}" for i in range(N_TYPES)]
    tt.item_type_ = _ITEM_TYPE
    tt.known_seed_ = np.ones(N_TYPES, dtype=bool)
    tt.known_type_ = tt.known_seed_.copy()
    p = np.full((N_TYPES, N_TYPES), 1.0 / (N_TYPES - 1), dtype=np.float32)
    np.fill_diagonal(p, 0.0)
    tt._set_scores(p)
    return tt


def _types(items: np.ndarray) -> set[int]:
    t = _ITEM_TYPE[items[items >= 0]]
    return set(t[t >= 0].tolist())


def test_exact_order() -> None:
    # score order: 0 1 3 2 6 5 8 9 (types 0 0 1 0 3 2 4 -); top 4 spans types {0, 1}
    items = np.array([[0, 1, 2, 3, 5, 6, 8, 9]])
    scores = np.array([[0.9, 0.8, 0.6, 0.7, 0.3, 0.5, 0.2, 0.1]])
    seeds = np.array([0])
    # N = 3: the best new type (3, item 6) takes the place of the last repeat (item 2)
    out = _model(3).diversify(seeds, items, scores, 4)
    assert items[0, out[0]].tolist() == [0, 1, 3, 6]
    # N = 4: also type 2 (item 5); the repeats 2 then 1 give way, from the bottom
    out = _model(4).diversify(seeds, items, scores, 4)
    assert items[0, out[0]].tolist() == [0, 3, 6, 5]
    # N = 2: the top 4 already spans two types: the score order, untouched
    out = _model(2).diversify(seeds, items, scores, 4)
    assert items[0, out[0]].tolist() == [0, 1, 3, 2]
    # N larger than k: at most k types (every slot a new type), the untyped item never counts
    out = _model(5).diversify(seeds, items, scores, 3)
    assert items[0, out[0]].tolist() == [0, 3, 6]


@given(
    st.integers(1, 10).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-1, 9), min_size=n, max_size=n),
            st.lists(st.floats(-5, 5), min_size=n, max_size=n),
            st.integers(1, n + 2),
            st.integers(1, 6),
        )
    )
)
def test_properties(case: tuple) -> None:
    items_l, scores_l, k, n_types = case
    items = np.array([items_l])
    scores = np.where(items >= 0, np.array([scores_l]), -np.inf)
    out = _model(n_types).diversify(np.array([0]), items, scores, k)[0]
    assert out.shape == (k,)
    real = out[out >= 0]
    n_real = int((items >= 0).sum())
    assert len(set(real.tolist())) == len(real)  # no column twice
    assert len(real) == min(k, n_real) and (out[len(real) :] == -1).all()
    assert (items[0, real] >= 0).all()
    ref = [c for c in np.argsort(-scores[0], kind="stable") if items[0, c] >= 0][:k]
    before, after = _types(items[0, ref]), _types(items[0, real])
    available = _types(items[0])
    # never fewer types than min(N, k, what the candidates offer), and never fewer than before
    assert len(after) >= min(n_types, k, len(available))
    assert len(after) >= len(before)
    if len(before) >= n_types:
        assert real.tolist() == ref  # a list that spans N types is not changed
        return
    # the kept items keep their order; the promoted ones follow, in score order, each the
    # best candidate of a type the list lacked; only as many as needed
    kept = [c for c in real if c in ref]
    promoted = [c for c in real if c not in ref]
    assert kept == [c for c in ref if c in kept]
    assert real.tolist() == kept + promoted
    order = [c for c in np.argsort(-scores[0], kind="stable") if items[0, c] >= 0]
    assert promoted == [c for c in order if c in promoted]
    for c in promoted:
        t = int(_ITEM_TYPE[items[0, c]])
        assert t >= 0 and t not in before
        assert next(x for x in order if _ITEM_TYPE[items[0, x]] == t) == c
    assert len(promoted) == min(min(n_types, k) - len(before), len(available - before))
    assert _types(items[0, kept]) == before  # no type lost to make room


def test_stage_checks_the_served_head() -> None:
    from recset.personalization._stage import _diversified

    # score order: 0 1 2 3 4 5 6 8 9 (types 0 0 0 1 1 2 3 4 -)
    items = np.array([[0, 1, 2, 3, 4, 5, 6, 8, 9]])
    scores = -np.arange(9, dtype=np.float64)[None, :]
    order = np.broadcast_to(np.arange(9), items.shape)
    full = _diversified(_model(3), np.array([0]), items, scores, order, 3)
    # the head of 3 gets types 1 and 2 (items 3, 5) in place of items 2 and 1; the rest
    # follows in score order
    assert items[0, full[0]].tolist() == [0, 3, 5, 1, 2, 4, 6, 8, 9]
    assert sorted(full[0].tolist()) == list(range(9))
    # the whole row as the list: it spans 5 types already, nothing changes
    whole = _diversified(_model(3), np.array([0]), items, scores, order)
    assert whole[0].tolist() == list(range(9))
