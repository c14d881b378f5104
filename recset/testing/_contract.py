"""The contract every recall set must pass, as a pytest base class.

Usage: subclass :class:`RecallSetContract` in a test module and provide two fixtures,
``recall_cls`` (the :class:`~recset.recall.RecallBase` subclass under test, typically
parametrized over :func:`~recset.recall.registered_recall_sets`) and ``dataset`` (a small
fitted-on :class:`~recset.data.Dataset`, module scope recommended)::

    from recset.testing import RecallSetContract

    @pytest.fixture(scope="module")
    def dataset():
        syn = generate(SyntheticConfig(n_items=600, seed=3))
        return Dataset.from_frames(syn.catalog, syn.events)

    class TestMySource(RecallSetContract):
        @pytest.fixture
        def recall_cls(self):
            return MySource

Optional fixtures that a subclass may override: ``recall_config`` (default: the class's
default config), ``recall_signals`` (default: fresh :class:`~recset.signals.Signals`),
``recall_dependencies`` (default: the sources the engine would fit first, see
:func:`fit_dependencies`), ``recall_seeds`` (default: every item, up to 500 of them, with
an unknown seed ``-1`` in the middle).

What is checked (modelled on scikit-learn's ``parametrize_with_checks`` and LensKit's
``BasicComponentTests``): ``fit`` returns ``self``; use before ``fit`` raises
:class:`~recset.errors.NotFittedError`; ``recall_many`` returns :class:`Candidates` of shape
``(n_seeds, n)``, int32 / float32, padded with ``-1`` / ``-inf`` only at the end of a row,
real scores finite, items valid dense ids, the seed never returned, no item twice in a row,
scores non-increasing along a row; an unknown seed (``-1``) gives an empty row without
raising; a batch answers each seed as if alone, ``recall`` equals one row of
``recall_many`` and a shorter ``n`` is a prefix of a longer one; two fits give identical
results; ``save`` / ``load`` and the config round-trip unchanged.

Two documented exceptions of built-in sources are handled explicitly (see
:meth:`RecallSetContract.allowed_score_runs` and
:meth:`RecallSetContract.answers_unknown_seed`): ``popular`` orders by (aspect match, in the
seed's scope, popularity), so its scores restart once per group; and it is the cold-start
fallback, so it answers an unknown seed with the global list. Filters
(``related_categories``, ``substitutes``) recall nothing: every row is padding, which
satisfies every check above.

This module imports pytest; ``import recset`` never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import pytest
except ImportError as exc:  # pragma: no cover - pytest is in the dev extra
    raise ImportError(
        "recset.testing needs pytest; install it with `pip install 'recset[dev]'`"
    ) from exc

from recset.data import Dataset
from recset.errors import NotFittedError
from recset.recall import (
    BuildConfig,
    Candidates,
    MixConfig,
    RecallBase,
    RecallConfig,
    SourceConfig,
    get_recall,
    registered_recall_sets,
)
from recset.recall.popular import PopularRecall
from recset.signals import Signals

__all__ = ["RecallSetContract", "fit_dependencies"]

_MAX_SEEDS = 500


def dependency_specs(
    recall_cls: type[RecallBase], config: SourceConfig
) -> dict[str, tuple[str, SourceConfig]]:
    """The other sources the engine fits for ``recall_cls`` with ``config``, by name.

    For a registered class this is exactly :meth:`recset.config.Config.source_configs` of a
    config that mixes only this source (``requires`` and the ``popular`` scope rule
    included); for an unregistered class (a plugin under test) its declared ``requires``
    with default configs.
    """
    name = recall_cls.name
    known = registered_recall_sets()
    if known.get(name) is not recall_cls:
        return {dep: (dep, known[dep].Config()) for dep in recall_cls.requirements(config)}
    cfg = RecallConfig(
        build=BuildConfig(fallback=name),
        sources={name: config},
        source_types={name: name},
        mix=MixConfig(sources=(name,), filters=()),
    )
    specs = cfg.source_configs()
    specs.pop(name)
    return specs


def fit_dependencies(
    recall_cls: type[RecallBase],
    config: SourceConfig,
    dataset: Dataset,
    signals: Signals | None = None,
) -> dict[str, RecallBase]:
    """Fit what ``recall_cls`` needs, in the engine's order, to pass as ``fitted=``."""
    specs = dependency_specs(recall_cls, config)
    fitted: dict[str, RecallBase] = {}
    if not specs:
        return fitted
    order = RecallConfig(
        build=BuildConfig(fallback=next(iter(specs))),
        sources={n: c for n, (_, c) in specs.items()},
        source_types={n: t for n, (t, _) in specs.items()},
        mix=MixConfig(sources=tuple(specs), filters=()),
    ).fit_order()
    for name in order:
        kind, cfg = specs[name]
        fitted[name] = get_recall(kind)(cfg).fit(dataset, signals, fitted=dict(fitted))
    return fitted


def _runs(scores: NDArray[np.float32]) -> int:
    """Number of maximal non-increasing runs in a 1-D array (0 for an empty one)."""
    if len(scores) == 0:
        return 0
    return 1 + int((np.diff(scores.astype(np.float64)) > 0).sum())


class RecallSetContract:
    """Contract tests of a recall set; see the module docstring for the fixtures."""

    #: width asked of ``recall_many`` in most checks
    n: int = 25

    # -- fixtures a subclass may override ------------------------------------------------
    @pytest.fixture
    def recall_config(self, recall_cls: type[RecallBase]) -> SourceConfig:
        return recall_cls.Config()

    @pytest.fixture
    def recall_signals(self, dataset: Dataset) -> Signals:
        return Signals(dataset)

    @pytest.fixture
    def recall_dependencies(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_signals: Signals,
    ) -> Mapping[str, RecallBase]:
        return fit_dependencies(recall_cls, recall_config, dataset, recall_signals)

    @pytest.fixture
    def recall_seeds(self, dataset: Dataset) -> NDArray[np.int32]:
        n = dataset.n_items
        known = np.unique(np.linspace(0, n - 1, min(n, _MAX_SEEDS)).astype(np.int32))
        half = len(known) // 2
        return np.r_[known[:half], -1, known[half:]].astype(np.int32)

    @pytest.fixture
    def fitted_recall(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_signals: Signals,
        recall_dependencies: Mapping[str, RecallBase],
    ) -> RecallBase:
        return self.fit(recall_cls, recall_config, dataset, recall_signals, recall_dependencies)

    # -- hooks ---------------------------------------------------------------------------
    def fit(
        self,
        recall_cls: type[RecallBase],
        config: SourceConfig,
        dataset: Dataset,
        signals: Signals,
        dependencies: Mapping[str, RecallBase],
    ) -> RecallBase:
        """A new instance of ``recall_cls`` fitted on ``dataset``."""
        obj = recall_cls(config)
        return obj.fit(dataset, signals, fitted=dict(dependencies))  # type: ignore[attr-defined,no-any-return]

    def allowed_score_runs(self, recall: RecallBase) -> int:
        """How many non-increasing runs of scores a row may be made of (1: sorted).

        ``popular`` lists the seed's scope first, then globally popular items outside it,
        and with ``match_aspect`` items sharing the aspect before all others: sorted by
        popularity within each of up to 2 x 2 groups, not overall.
        """
        if isinstance(recall, PopularRecall):
            scoped = recall.config.scope != "global"
            return (2 if scoped else 1) * (2 if recall.config.match_aspect else 1)
        return 1

    def answers_unknown_seed(self, recall: RecallBase) -> bool:
        """Whether an unknown seed (``-1``) gets candidates (only the cold-start fallback)."""
        return isinstance(recall, PopularRecall)

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def assert_same_candidates(a: Candidates, b: Candidates) -> None:
        np.testing.assert_array_equal(a.item, b.item)
        np.testing.assert_array_equal(a.score, b.score)

    # -- the contract --------------------------------------------------------------------
    def test_fit_returns_self(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_signals: Signals,
        recall_dependencies: Mapping[str, RecallBase],
    ) -> None:
        obj = recall_cls(recall_config)
        assert obj.fit(dataset, recall_signals, fitted=dict(recall_dependencies)) is obj  # type: ignore[attr-defined]
        assert obj.config is recall_config

    def test_name_registered(self, recall_cls: type[RecallBase]) -> None:
        assert isinstance(recall_cls.name, str) and recall_cls.name
        assert all(isinstance(r, str) for r in recall_cls.requires)
        assert issubclass(recall_cls.Config, SourceConfig)

    def test_not_fitted_raises(
        self, recall_cls: type[RecallBase], recall_config: SourceConfig, tmp_path: Path
    ) -> None:
        obj = recall_cls(recall_config)
        seeds = np.array([0, -1], dtype=np.int32)
        with pytest.raises(NotFittedError):
            obj.recall_many(seeds, 5)  # type: ignore[attr-defined]
        with pytest.raises(NotFittedError):
            obj.recall(0, 5)
        with pytest.raises(NotFittedError):
            obj.save(tmp_path / "unfitted")

    def test_shape_and_dtypes(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32]
    ) -> None:
        for n in (1, self.n):
            c = fitted_recall.recall_many(recall_seeds, n)  # type: ignore[attr-defined]
            assert isinstance(c, Candidates)
            assert c.item.shape == (len(recall_seeds), n)
            assert c.score.shape == (len(recall_seeds), n)
            assert c.item.dtype == np.int32
            assert c.score.dtype == np.float32
        empty = fitted_recall.recall_many(np.zeros(0, dtype=np.int32), self.n)  # type: ignore[attr-defined]
        assert empty.item.shape == (0, self.n)

    def test_padding_only_at_row_ends(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32], dataset: Dataset
    ) -> None:
        c = fitted_recall.recall_many(recall_seeds, self.n)  # type: ignore[attr-defined]
        real = c.item >= 0
        assert ((c.item == -1) | real).all(), "item ids must be dense ids or -1"
        assert (c.item < dataset.n_items).all()
        # padding: -1 exactly where the score is -inf, and only after the real entries
        np.testing.assert_array_equal(real, c.score > -np.inf)
        assert np.isfinite(c.score[real]).all()
        n_real = real.sum(axis=1)
        np.testing.assert_array_equal(real, np.arange(self.n)[None, :] < n_real[:, None])

    def test_scores_non_increasing(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32]
    ) -> None:
        c = fitted_recall.recall_many(recall_seeds, self.n)  # type: ignore[attr-defined]
        allowed = self.allowed_score_runs(fitted_recall)
        for r in range(c.n_seeds):
            _, score = c.row(r)
            assert _runs(score) <= allowed, (int(recall_seeds[r]), score.tolist())

    def test_no_seed_no_duplicates(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32]
    ) -> None:
        c = fitted_recall.recall_many(recall_seeds, self.n)  # type: ignore[attr-defined]
        for r in range(c.n_seeds):
            item, _ = c.row(r)
            assert recall_seeds[r] not in item, int(recall_seeds[r])
            assert len(np.unique(item)) == len(item), item.tolist()

    def test_unknown_seed(self, fitted_recall: RecallBase) -> None:
        c = fitted_recall.recall_many(np.array([-1, -1], dtype=np.int32), self.n)  # type: ignore[attr-defined]
        assert c.item.shape == (2, self.n)
        if self.answers_unknown_seed(fitted_recall):
            assert (c.counts() > 0).all()
            np.testing.assert_array_equal(c.item[0], c.item[1])
        else:
            assert (c.item == -1).all() and np.isneginf(c.score).all()

    def test_batch_independent(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32]
    ) -> None:
        """Each row is the seed's answer alone: order of the batch and neighbours don't matter."""
        c = fitted_recall.recall_many(recall_seeds, self.n)  # type: ignore[attr-defined]
        perm = np.random.default_rng(0).permutation(len(recall_seeds))
        shuffled = fitted_recall.recall_many(recall_seeds[perm], self.n)  # type: ignore[attr-defined]
        self.assert_same_candidates(
            Candidates(c.item[perm], c.score[perm]), Candidates(shuffled.item, shuffled.score)
        )
        for r in np.linspace(0, len(recall_seeds) - 1, 5).astype(int).tolist():
            one = fitted_recall.recall(int(recall_seeds[r]), self.n)
            self.assert_same_candidates(one, Candidates(c.item[r : r + 1], c.score[r : r + 1]))

    def test_shorter_n_is_prefix(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32]
    ) -> None:
        long = fitted_recall.recall_many(recall_seeds, self.n)  # type: ignore[attr-defined]
        short = fitted_recall.recall_many(recall_seeds, 5)  # type: ignore[attr-defined]
        self.assert_same_candidates(short, Candidates(long.item[:, :5], long.score[:, :5]))

    def test_deterministic(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_dependencies: Mapping[str, RecallBase],
        recall_seeds: NDArray[np.int32],
    ) -> None:
        """Two fits (each on fresh signals) give identical candidates and scores."""
        a = self.fit(recall_cls, recall_config, dataset, Signals(dataset), recall_dependencies)
        b = self.fit(recall_cls, recall_config, dataset, Signals(dataset), recall_dependencies)
        self.assert_same_candidates(
            a.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
            b.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
        )

    def test_save_load_roundtrip(
        self, fitted_recall: RecallBase, recall_seeds: NDArray[np.int32], tmp_path: Path
    ) -> None:
        fitted_recall.save(tmp_path / "src")
        again = type(fitted_recall).load(tmp_path / "src")
        assert type(again) is type(fitted_recall)
        assert again.config == fitted_recall.config
        self.assert_same_candidates(
            fitted_recall.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
            again.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
        )

    def test_config_roundtrip(self, recall_config: SourceConfig) -> None:
        cls = type(recall_config)
        assert cls.model_validate(recall_config.model_dump()) == recall_config
        as_json = json.loads(json.dumps(recall_config.model_dump(mode="json")))
        assert cls.model_validate(as_json) == recall_config

    def test_config_rejects_unknown_key(self, recall_cls: type[RecallBase]) -> None:
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            recall_cls.Config.model_validate({"no_such_key_": 1})

    def test_foreign_signals_rejected_or_ignored(
        self,
        recall_cls: type[RecallBase],
        recall_config: SourceConfig,
        dataset: Dataset,
        recall_dependencies: Mapping[str, RecallBase],
        recall_seeds: NDArray[np.int32],
    ) -> None:
        """Signals of another dataset raise ``ValueError`` or are not read at all."""
        other = Signals(Dataset.from_frames(*_tiny_frames()))
        obj = recall_cls(recall_config)
        try:
            obj.fit(dataset, other, fitted=dict(recall_dependencies))  # type: ignore[attr-defined]
        except ValueError:
            return
        ref = self.fit(recall_cls, recall_config, dataset, Signals(dataset), recall_dependencies)
        self.assert_same_candidates(
            obj.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
            ref.recall_many(recall_seeds, self.n),  # type: ignore[attr-defined]
        )


def _tiny_frames() -> tuple[Any, Any]:
    import pandas as pd

    catalog = pd.DataFrame({"item_id": ["x", "y"], "category_id": ["c", "c"]})
    events = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["x", "y"],
            "event": ["purchase", "purchase"],
            "timestamp": [1, 2],
            "order_id": ["o", "o"],
        }
    )
    return catalog, events
