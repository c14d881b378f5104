"""The three extension points, used from this test module only (no edit to recset): a recall
source, a ranker feature and a pipeline stage, registered here, configured by name and served
through :meth:`Engine.recommend_batch`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Self

import numpy as np
import pytest
from numpy.typing import NDArray

from recset import Engine
from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.pipeline import STAGES, Candidates, Request, Stage, get_stage, register_stage
from recset.ranking import (
    BASE_FEATURES,
    FEATURES,
    FeatureBatch,
    RankerFeature,
    register_feature,
    train_ranker,
)
from recset.recall import RECALL_SETS, RecallBase, SourceConfig, compact, register_recall


@pytest.fixture
def registries() -> Iterator[None]:
    """Registrations made by a test are gone after it (in all three registries)."""
    with RECALL_SETS.isolated(), FEATURES.isolated(), STAGES.isolated():
        yield


def _register_toys() -> None:
    class NextConfig(SourceConfig):
        step: int = 1

    @register_recall("toy_next")
    class NextItem(RecallBase):
        """Planted 'bought after': the item whose dense id follows the seed's."""

        Config = NextConfig
        basis = "behaviour"
        _state = ("n_items_",)

        def fit(self, dataset: Dataset, signals: Any = None, *, fitted: Any = None) -> Self:
            self.n_items_ = np.array(dataset.n_items)
            return self

        def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
            self._check_fitted()
            nxt = (seeds.astype(np.int64) + self.config.step) % int(self.n_items_)
            item = np.where(seeds >= 0, nxt, -1).astype(np.int32)[:, None]
            return compact(item, np.ones(item.shape, np.float32), item >= 0, n)

    @register_feature("toy_is_next")
    class IsNext(RankerFeature):
        def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
            return np.where(batch.s_ok & batch.valid, (batch.c == batch.s + 1) * 1.0, np.nan)

    @register_stage("toy_even_only")
    class EvenOnly(Stage):
        """A business rule: never serve an item with an odd dense id."""

        @classmethod
        def create(cls, parts: Mapping[str, Any]) -> Stage:
            return cls()

        def run(self, request: Request, candidates: Candidates) -> Candidates:
            keep = (candidates.item >= 0) & (candidates.item % 2 == 0)
            order = np.argsort(~keep, axis=1, kind="stable")
            out = candidates.take(order)
            kept = np.take_along_axis(keep, order, 1)
            return Candidates(
                np.where(kept, out.item, -1).astype(np.int32),
                np.where(kept, out.score, -np.inf).astype(np.float32),
                out.source_score,
                out.source_rank,
                out.sources,
            )


def test_toy_source_feature_and_stage_are_served(registries: None) -> None:
    _register_toys()
    syn = generate(SyntheticConfig(n_items=400, seed=4))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    config = config_from_dict(
        {
            "mix": {"sources": ["co_purchase", "toy_next", "popular"], "filters": []},
            "ranker": {"extra_features": ["toy_is_next"], "n_estimators": 20},
            "pipeline": {"stages": ["recall", "ranker", "toy_even_only", "explore"]},
        }
    )
    engine = Engine.build(ds, config)
    ranker = train_ranker(ds, config, mixer=engine.mixer, embeddings=np.zeros((400, 0), "f4"))
    # a plug-in feature named in extra_features is read after the built-in columns
    assert "toy_is_next" in ranker.feature_names[len(BASE_FEATURES) :]
    served = engine.with_ranker(ranker)
    assert [s.name for s in served.stages] == ["recall", "ranker", "toy_even_only"]
    even_seeds = [str(ds.items.id_of(i)) for i in range(0, 40, 2)]
    users = [str(u) for u in ds.users.values[: len(even_seeds)]]
    lists = served.recommend_batch(even_seeds, users, k=10)
    assert len(lists) == len(even_seeds)
    toy_reasons = 0
    for seed, recs in zip(even_seeds, lists, strict=True):
        dense = [served.items.index_one(r.item_id) for r in recs]
        assert all(d % 2 == 0 for d in dense), "the stage dropped odd items"
        assert seed not in [r.item_id for r in recs]
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True)
        toy_reasons += sum(any(x.source == "toy_next" for x in r.reasons) for r in recs)
    # seeds are even, so seed + 2 (step 2 below) survives the even-only stage
    assert toy_reasons == 0  # step 1: seed + 1 is odd, always dropped
    two = config.to_dict()
    two["sources"] = {"toy_next": {"step": 2}}
    del two["pipeline"]  # the default stages; the rule is added to this engine instance only
    engine2 = Engine.build(ds, config_from_dict(two))
    engine2 = engine2.with_stage(get_stage("toy_even_only")(), after="ranker")
    assert [s.name for s in engine2.stages] == ["recall", "toy_even_only"]
    recs = engine2.recommend_batch(even_seeds, k=10)
    hits = sum(any(x.source == "toy_next" for r in rs for x in r.reasons) for rs in recs)
    assert hits == len(even_seeds)  # the planted next item is recalled for every seed
