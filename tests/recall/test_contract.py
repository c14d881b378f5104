"""Every registered recall set passes :class:`recset.testing.RecallSetContract`.

The contract is parametrized over :func:`registered_recall_sets`, so a new source (built-in or
plugin) is checked as soon as it registers. A second class runs it again on non-default
configs that take other code paths (product level, user unit, related-category scope with
aspect matching, GNN embeddings from a file...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.recall import RecallBase, SourceConfig, registered_recall_sets
from recset.signals import Signals
from recset.testing import RecallSetContract, dependency_specs

NAMES = sorted(registered_recall_sets())


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    syn = generate(SyntheticConfig(n_items=600, seed=3))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def shared_signals(dataset: Dataset) -> Signals:
    return Signals(dataset)


@pytest.fixture(scope="module")
def embeddings_file(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random item embeddings for ``gnn_neighbors``, with some all-zero ("no embedding") rows."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(dataset.n_items, 8)).astype(np.float32)
    vectors[::17] = 0.0
    path = tmp_path_factory.mktemp("emb") / "items.npy"
    np.save(path, vectors)
    return path


_FITS: dict[tuple[int, str, str], RecallBase] = {}


class _SharedFits(RecallSetContract):
    """Reuse one fit per (dataset, source, config) across the read-only checks.

    The checks that fit on their own (fit returns self, determinism, foreign signals) still
    fit fresh instances.
    """

    @pytest.fixture
    def recall_signals(self, shared_signals: Signals) -> Signals:
        return shared_signals

    @pytest.fixture
    def fitted_recall(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_signals: Signals,
        recall_dependencies: dict[str, RecallBase],
    ) -> RecallBase:
        key = (id(dataset), recall_cls.name, recall_config.model_dump_json())
        if key not in _FITS:
            _FITS[key] = self.fit(
                recall_cls, recall_config, dataset, recall_signals, recall_dependencies
            )
        return _FITS[key]


class TestRegisteredRecallSets(_SharedFits):
    """The contract on every registered source with its default config."""

    @pytest.fixture(params=NAMES)
    def recall_cls(self, request: pytest.FixtureRequest) -> type[RecallBase]:
        return registered_recall_sets()[request.param]


VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("co_purchase", {"level": "product", "similarity": "ochiai", "max_candidates": 10}),
    ("co_purchase", {"level": "item", "unit": "user", "similarity": "asymmetric_cosine"}),
    ("co_view", {"level": "product", "min_support": 2.0}),
    ("co_purchase_only", {"exclude": "any", "similarity": "ochiai"}),
    ("popular", {"scope": "related_categories", "match_aspect": "brand"}),
    ("popular", {"scope": "global", "match_aspect": "color", "half_life_days": 0}),
    ("popular", {"scope": "category", "max_candidates": 7}),
    ("related_categories", {"similarity": "cosine", "own_category_min_purchases": 0}),
    ("substitutes", {"by": "category", "keep_if_items_per_basket": 0}),
    ("complementary_of_similar", {"signal": "co_purchase_only", "min_complements": 0}),
    ("gnn_neighbors", {"embeddings": "<file>", "max_candidates": 30}),
    ("gnn_neighbors", {"embeddings": "<file>", "metric": "dot"}),
]


class TestRecallSetVariants(_SharedFits):
    """The contract on non-default configs (other code paths of the same sources)."""

    @pytest.fixture(params=VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
    def variant(self, request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
        return request.param  # type: ignore[no-any-return]

    @pytest.fixture
    def recall_cls(self, variant: tuple[str, dict[str, object]]) -> type[RecallBase]:
        return registered_recall_sets()[variant[0]]

    @pytest.fixture
    def recall_config(
        self,
        recall_cls: type[RecallBase],
        variant: tuple[str, dict[str, object]],
        embeddings_file: Path,
    ) -> SourceConfig:
        settings = {k: str(embeddings_file) if v == "<file>" else v for k, v in variant[1].items()}
        return recall_cls.Config.model_validate(settings)


def test_registry_is_covered() -> None:
    """The built-in sources are all registered (so the contract above runs on them)."""
    assert {
        "co_purchase",
        "co_purchase_only",
        "co_view",
        "compatibility",
        "complementary_of_similar",
        "gnn_neighbors",
        "popular",
        "related_categories",
        "substitutes",
    } <= set(NAMES)


def test_dependencies_follow_the_engine() -> None:
    """``popular`` scoped by related categories gets that source fitted first, as in
    :meth:`Engine.build`; a default ``popular`` needs nothing."""
    cls = registered_recall_sets()["popular"]
    scoped = dependency_specs(cls, cls.Config.model_validate({"scope": "related_categories"}))
    assert {n: kind for n, (kind, _) in scoped.items()} == {
        "related_categories": "related_categories"
    }
    assert dependency_specs(cls, cls.Config()) == {}
