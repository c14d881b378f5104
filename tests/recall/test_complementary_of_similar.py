"""Tests of the ``complementary_of_similar`` recall source and the text embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, SyntheticData, generate
from recset.errors import NotFittedError
from recset.recall import get_recall
from recset.recall._text import TextEmbeddingConfig, embed_items
from recset.recall.complementary_of_similar import (
    ComplementaryOfSimilarConfig,
    ComplementaryOfSimilarRecall,
    aggregate_candidates,
)
from recset.signals import Signals


@pytest.fixture(scope="module")
def syn() -> SyntheticData:
    return generate(SyntheticConfig(n_items=1500, seed=7))


@pytest.fixture(scope="module")
def ds(syn: SyntheticData) -> Dataset:
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def signals(ds: Dataset) -> Signals:
    return Signals(ds)


@pytest.fixture(scope="module")
def fitted(ds: Dataset, signals: Signals) -> ComplementaryOfSimilarRecall:
    return ComplementaryOfSimilarRecall().fit(ds, signals)


def _types(ds: Dataset) -> np.ndarray:
    return np.asarray(ds.product_types.values, dtype=object)[ds.catalog.product_type]


def _complement_share(
    src: ComplementaryOfSimilarRecall, ds: Dataset, truth: dict, seeds: np.ndarray, k: int = 10
) -> tuple[float, int]:
    """Share of top-k answers of a planted complementary type, over anchor-type seeds."""
    types = _types(ds)
    comp = truth["complementary_types"]
    cand = src.recall_many(seeds.astype(np.int32), k)
    good = total = 0
    for i, s in enumerate(seeds):
        items, _ = cand.row(i)
        wanted = set(comp[types[s]])
        if not wanted:  # complement types call for nothing (the graph is asymmetric)
            continue
        good += sum(types[j] in wanted for j in items)
        total += len(items)
    return good / max(total, 1), total


def test_registered() -> None:
    assert get_recall("complementary_of_similar") is ComplementaryOfSimilarRecall


def test_not_fitted_raises() -> None:
    with pytest.raises(NotFittedError):
        ComplementaryOfSimilarRecall().recall_many(np.array([0], dtype=np.int32), 5)


def test_answers_cold_start_items(
    fitted: ComplementaryOfSimilarRecall, ds: Dataset, syn: SyntheticData
) -> None:
    cold = ds.items.index(np.asarray(syn.truth["cold_start_items"], dtype=object))
    assert len(cold) > 20 and (cold >= 0).all()
    cand = fitted.recall_many(cold, 10)
    assert (cand.counts() > 0).mean() >= 0.9
    share, n = _complement_share(fitted, ds, syn.truth, cold)
    assert n >= 30
    assert share >= 0.7, share


def test_answers_are_complementary_types(
    fitted: ComplementaryOfSimilarRecall, ds: Dataset, syn: SyntheticData
) -> None:
    share, n = _complement_share(fitted, ds, syn.truth, np.arange(ds.n_items))
    assert n >= 300
    assert share >= 0.7, share


def test_only_answers_seeds_with_few_complements(
    ds: Dataset, signals: Signals, fitted: ComplementaryOfSimilarRecall
) -> None:
    seeds = np.arange(ds.n_items, dtype=np.int32)
    many = fitted.n_complements_ >= fitted.config.min_complements
    assert many.any() and (~many).any()
    cand = fitted.recall_many(seeds, 10)
    assert (cand.counts()[many] == 0).all()
    always = ComplementaryOfSimilarRecall(ComplementaryOfSimilarConfig(min_complements=0))
    always.fit(ds, signals)
    assert (always.recall_many(seeds[many], 10).counts() > 0).mean() > 0.9


def test_shapes_padding_and_unknown_seed(
    fitted: ComplementaryOfSimilarRecall, ds: Dataset, syn: SyntheticData
) -> None:
    cold = ds.items.index(np.asarray(syn.truth["cold_start_items"][:5], dtype=object))
    seeds = np.r_[cold, -1, ds.n_items + 3].astype(np.int32)
    for n in (1, 7, 400):
        cand = fitted.recall_many(seeds, n)
        assert cand.item.shape == cand.score.shape == (len(seeds), n)
        assert cand.item.dtype == np.int32 and cand.score.dtype == np.float32
        pad = cand.item < 0
        assert np.isneginf(cand.score[pad]).all() and np.isfinite(cand.score[~pad]).all()
        assert (cand.counts()[-2:] == 0).all()  # -1 and out-of-range seeds: empty rows
        assert cand.counts().max() <= fitted.config.max_candidates
        for i in range(len(seeds)):
            items, scores = cand.row(i)
            assert (cand.item[i, : len(items)] >= 0).all()  # padding only at the end
            assert seeds[i] not in items
            assert len(np.unique(items)) == len(items)
            assert (np.diff(scores) <= 0).all()
    single = fitted.recall(int(cold[0]), 7)
    np.testing.assert_array_equal(single.item[0], fitted.recall_many(cold[:1], 7).item[0])


def test_deterministic(ds: Dataset, signals: Signals, fitted: ComplementaryOfSimilarRecall) -> None:
    again = ComplementaryOfSimilarRecall().fit(ds, signals)
    for attr in fitted._state:
        np.testing.assert_array_equal(getattr(fitted, attr), getattr(again, attr))


def test_save_load_round_trip(
    fitted: ComplementaryOfSimilarRecall, ds: Dataset, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "cos")
    loaded = ComplementaryOfSimilarRecall.load(tmp_path / "cos")
    assert loaded.config == fitted.config
    seeds = np.r_[np.arange(ds.n_items), -1].astype(np.int32)
    a, b = fitted.recall_many(seeds, 20), loaded.recall_many(seeds, 20)
    np.testing.assert_array_equal(a.item, b.item)
    np.testing.assert_array_equal(a.score, b.score)


def test_max_aggregate_and_co_purchase_only(ds: Dataset, signals: Signals) -> None:
    for cfg in (
        ComplementaryOfSimilarConfig(aggregate="max"),
        ComplementaryOfSimilarConfig(signal="co_purchase_only"),
    ):
        src = ComplementaryOfSimilarRecall(cfg).fit(ds, signals)
        cand = src.recall_many(np.arange(ds.n_items, dtype=np.int32), 10)
        assert (cand.counts() > 0).sum() > 100


def test_aggregate_candidates() -> None:
    seeds = np.array([0, 9], dtype=np.int32)
    item = np.array([[3, 4, 3, 0, -1], [5, 5, 6, -1, -1]], dtype=np.int32)
    score = np.array([[0.2, 0.3, 0.25, 9.0, 0.0], [0.1, 0.1, 0.15, 0, 0]], dtype=np.float32)
    mx = aggregate_candidates(seeds, item, score, 3, how="max")
    np.testing.assert_array_equal(mx.item, [[4, 3, -1], [6, 5, -1]])
    np.testing.assert_allclose(mx.score[0, :2], [0.3, 0.25])
    sm = aggregate_candidates(seeds, item, score, 3, how="sum")
    np.testing.assert_array_equal(sm.item, [[3, 4, -1], [5, 6, -1]])
    np.testing.assert_allclose(sm.score[:, :2], [[0.45, 0.3], [0.2, 0.15]], rtol=1e-6)


def test_text_embeddings_without_title(syn: SyntheticData) -> None:
    cat = syn.catalog.head(300).copy()
    cat.loc[cat.index[:20], "title"] = None  # category / type / brand words remain
    empty = cat.index[20]
    for col in ("title", "aspects", "category_id", "category_path", "product_type", "brand"):
        cat.loc[empty, col] = None
    events = syn.events[syn.events["item_id"].isin(cat["item_id"])]
    small = Dataset.from_frames(cat, events)
    cfg = TextEmbeddingConfig(embedding_size=16)
    emb = embed_items(small, cfg)
    assert emb.shape == (300, 16) and emb.dtype == np.float32
    norms = np.linalg.norm(emb, axis=1)
    row = small.items.index(np.asarray([cat.loc[empty, "item_id"]], dtype=object))[0]
    assert norms[row] == 0.0
    others = np.delete(norms, row)
    np.testing.assert_allclose(others, 1.0, rtol=1e-5)
    np.testing.assert_array_equal(emb, embed_items(small, cfg))
    # items without a title are still closest to items of their own product type
    types = _types(small)
    untitled = small.items.index(cat["item_id"].iloc[:20].to_numpy(dtype=object))
    sims = emb[untitled] @ emb.T
    sims[np.arange(20), untitled] = -2
    nearest = sims.argmax(axis=1)
    assert (types[nearest] == types[untitled]).mean() >= 0.8


def test_catalog_without_usable_text_degrades_to_no_answers() -> None:
    # regression: a catalog whose only text is one id per category (Taobao: each distinct
    # token list once, every word below min_count) crashed gensim's training
    import pandas as pd

    items = [f"i{j}" for j in range(12)]
    cat = pd.DataFrame({"item_id": items, "category_id": [str(1000 + j) for j in range(12)]})
    rows = [
        {
            "user_id": f"u{j % 3}",
            "item_id": items[j],
            "event": "purchase",
            "timestamp": j,
            "order_id": f"o{j // 2}",
        }
        for j in range(12)
    ]
    data = Dataset.from_frames(cat, pd.DataFrame(rows))
    vectors = embed_items(data)
    assert vectors.shape[0] == 12 and not vectors.any()
    src = get_recall("complementary_of_similar")().fit(data, Signals(data))
    c = src.recall_many(np.arange(12, dtype=np.int32), 5)
    assert (c.item == -1).all()
