"""The host API on external ids: recommend_batch, recommend_basket, errors a host can see."""

from __future__ import annotations

import numpy as np
import pytest

from recset import ConfigError, Engine, RecsetError
from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.pipeline import Request


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=300, seed=11))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def engine(ds: Dataset) -> Engine:
    return Engine.build(ds)


def test_batch_equals_single_calls_and_handles_unknown_ids(ds: Dataset, engine: Engine) -> None:
    seeds = [str(ds.items.id_of(i)) for i in (0, 5, 9)] + ["no-such-item"]
    batch = engine.recommend_batch(seeds, ["u-unknown", None, None, None], k=7)
    assert [len(r) for r in batch] == [7, 7, 7, 7]  # the unknown seed gets the cold-start path
    for seed, recs in zip(seeds, batch, strict=True):
        single = engine.recommend(seed, k=7)
        assert [r.item_id for r in recs] == [r.item_id for r in single]
        assert all(r.reasons for r in recs)
        assert seed not in [r.item_id for r in recs]


def test_batch_excludes_per_row(ds: Dataset, engine: Engine) -> None:
    seeds = [str(ds.items.id_of(i)) for i in (1, 2)]
    plain = engine.recommend_batch(seeds, k=5)
    banned = [[plain[0][0].item_id, plain[0][2].item_id], []]
    out = engine.recommend_batch(seeds, k=5, exclude=banned)
    assert not set(banned[0]) & {r.item_id for r in out[0]} and len(out[0]) == 5
    assert [r.item_id for r in out[1]] == [r.item_id for r in plain[1]]


def test_basket_merges_lists_and_never_returns_the_cart(ds: Dataset, engine: Engine) -> None:
    cart = [str(ds.items.id_of(i)) for i in (3, 4, 8)]
    lists = engine.recommend_batch(cart, k=20, exclude=[cart] * 3)
    recs = engine.recommend_basket(cart, k=10)
    assert len(recs) == 10 and not set(cart) & {r.item_id for r in recs}
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    # an item in every seed's list outranks one in a single list at the same positions
    counts: dict[str, int] = {}
    for rs in lists:
        for r in rs:
            counts[r.item_id] = counts.get(r.item_id, 0) + 1
    top = recs[0].item_id
    assert counts[top] == max(counts.values())
    cold = engine.recommend_basket(["x-unknown", "y-unknown"], k=4)
    assert len(cold) == 4


def test_host_errors_derive_from_recset_error(ds: Dataset, engine: Engine) -> None:
    seed = str(ds.items.id_of(0))
    for call in (
        lambda: engine.recommend(seed, k=0),
        lambda: engine.recommend_batch([seed], k=-1),
        lambda: engine.recommend_batch([seed, seed], ["u"]),
        lambda: engine.recommend_batch([seed], exclude=[[], []]),
        lambda: engine.recommend_basket([seed], k=0),
        lambda: engine.with_stage(object()),  # type: ignore[arg-type]
        lambda: engine.variant(["no-such-source"]),
        lambda: engine.run_pipeline(Request.of(np.array([0]), np.array([0, 1]), 3)),
    ):
        with pytest.raises(RecsetError):
            call()
    with pytest.raises(ConfigError, match="pipeline.stages"):
        config_from_dict({"pipeline": {"stages": ["ranker"]}})
    with pytest.raises(ConfigError, match="unknown stage"):
        config_from_dict({"pipeline": {"stages": ["recall", "nope"]}})
