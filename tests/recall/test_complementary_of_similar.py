"""Tests of the ``complementary_of_similar`` recall source and the text embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, SyntheticData, generate
from recset.errors import NotFittedError
from recset.recall import get_recall
from recset.recall._text import (
    TextEmbeddingConfig,
    embed_items,
    item_tokens,
    portable_fasttext,
    text_groups,
    word_vectors,
)
from recset.recall.complementary_of_similar import (
    ComplementaryOfSimilarConfig,
    ComplementaryOfSimilarRecall,
    aggregate_candidates,
    first_equal_row,
    neighbor_table,
)
from recset.signals import Signals, topk_rows


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


# -- the fit's shortcuts give what their plain definitions give ---------------------------


def test_first_equal_row_finds_the_first_equal_row() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 6)).astype(np.float32)
    x = base[rng.integers(0, 40, size=500)]  # many repeats
    x[7] = np.nan  # never equal to anything, itself included
    rows = rng.permutation(500)[:300]
    for block in (1, 17, 1 << 16):
        got = first_equal_row(x, rows, block=block)
        seen: dict[bytes, int] = {}
        for j, r in enumerate(rows):
            want = r if np.isnan(x[r]).any() else seen.setdefault(x[r].tobytes(), r)
            assert got[j] == want or (got[j] != r and np.array_equal(x[got[j]], x[r]))
            assert list(rows).index(got[j]) <= j
    assert len(np.unique(first_equal_row(x, rows))) < 60
    # float64 rows, an empty selection, a bad shape
    assert (first_equal_row(x.astype(np.float64), rows) == first_equal_row(x, rows)).all()
    assert len(first_equal_row(x, np.zeros(0, dtype=np.int64))) == 0
    with pytest.raises(ValueError, match="2-D"):
        first_equal_row(x[0], rows)


def test_first_equal_row_survives_hash_collisions(monkeypatch) -> None:  # noqa: ANN001
    # every row hashes alike here: the full comparison still keeps different rows apart
    import recset.recall.complementary_of_similar as cos

    x = np.array([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]], dtype=np.float32)
    monkeypatch.setattr(cos, "_row_hashes", lambda part: np.zeros(len(part), dtype=np.uint64))
    got = first_equal_row(x, np.arange(5))
    # all rows fall in one hash group led by row 0: only its equal (row 2) maps to it
    np.testing.assert_array_equal(got, [0, 1, 0, 3, 4])


def test_neighbor_table_answers_repeated_vectors_as_annoy_does() -> None:
    # rows with equal query vectors are searched once: every row still gets exactly what its
    # own Annoy query gives: the best 6 of Annoy's 6 + 8 nearest by exact cosine
    from annoy import AnnoyIndex

    rng = np.random.default_rng(5)
    base = rng.standard_normal((60, 8)).astype(np.float32)
    vectors = base[rng.integers(0, 60, size=400)]
    indexed = rng.random(400) < 0.5
    queries = rng.random(400) < 0.7
    idx, sim = neighbor_table(vectors, indexed, queries, 6, n_trees=4, search_k=30, seed=2)
    members = np.flatnonzero(indexed)
    index = AnnoyIndex(8, "angular")
    index.set_seed(2)
    for j, r in enumerate(members):
        index.add_item(j, vectors[r])
    index.build(4, n_jobs=1)
    v64 = vectors.astype(np.float64)
    for row in range(400):
        if not queries[row]:
            assert (idx[row] == -1).all() and np.isneginf(sim[row]).all()
            continue
        ids, dist = index.get_nns_by_vector(vectors[row], 14, 30, True)
        found = members[ids]
        cos = v64[found] @ v64[row] / np.linalg.norm(v64[found], axis=1) / np.linalg.norm(v64[row])
        best = np.lexsort((found, -cos.astype(np.float32)))[:6]
        m = len(best)
        np.testing.assert_array_equal(idx[row, :m], found[best])
        np.testing.assert_allclose(sim[row, :m], cos[best], rtol=0, atol=1e-7)
        # the same similarities as Annoy's distances say, up to float32 rounding
        d = np.asarray(dist, dtype=np.float64)[best]
        np.testing.assert_allclose(sim[row, :m], 1.0 - d * d / 2.0, rtol=0, atol=1e-5)
        assert (idx[row, m:] == -1).all()


@pytest.mark.parametrize("metric", ["angular", "dot"])
def test_neighbor_table_does_not_depend_on_annoys_float_order(
    monkeypatch: pytest.MonkeyPatch, metric: str
) -> None:
    """Annoy built for another CPU (AVX2 instead of AVX-512) computes its float32 distances
    in another order and may rank near-ties the other way; the table must not change. Here
    an Annoy whose answers come in reverse order, with its distances perturbed, stands in for
    it (rows 0 and 1 are exact ties of every query: the lower id goes first)."""
    import annoy

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, 12)).astype(np.float32)
    vectors[1] = vectors[0]
    indexed = np.ones(300, dtype=bool)
    queries = rng.random(300) < 0.8
    args = dict(metric=metric, n_trees=5, search_k=200, seed=1)
    want = neighbor_table(vectors, indexed, queries, 10, **args)  # type: ignore[arg-type]

    class Reversed(annoy.AnnoyIndex):  # type: ignore[misc]
        def get_nns_by_vector(self, v, n, search_k=-1, include_distances=False):  # type: ignore[no-untyped-def]
            ids, dist = super().get_nns_by_vector(v, n, search_k, True)
            dist = [d * (1 + 1e-6) for d in reversed(dist)]
            ids = ids[::-1]
            return (ids, dist) if include_distances else ids

    monkeypatch.setattr(annoy, "AnnoyIndex", Reversed)
    got = neighbor_table(vectors, indexed, queries, 10, **args)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # rows 0 and 1 share their vector: wherever both are neighbours, 0 comes right before 1
    for row in np.flatnonzero(queries):
        r = list(want[0][row])
        if 0 in r and 1 in r:
            assert r.index(1) == r.index(0) + 1


def _brute_force(
    vectors: np.ndarray,
    indexed: np.ndarray,
    qv: np.ndarray,
    row: int,
    k: int,
    metric: str,
    exclude_self: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The true ``k`` nearest indexed rows of query ``row`` in float64, ties to the lower id."""
    v64, q = vectors.astype(np.float64), qv[row].astype(np.float64)
    cand = np.flatnonzero(indexed)
    if exclude_self:
        cand = cand[cand != row]
    score = v64[cand] @ q
    if metric == "angular":
        den = np.linalg.norm(v64[cand], axis=1) * np.linalg.norm(q)
        score = np.divide(score, den, out=np.zeros_like(score), where=den > 0)
    best = np.lexsort((cand, -score.astype(np.float32)))[:k]
    return cand[best], score[best]


@pytest.mark.parametrize("metric", ["angular", "dot"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_exact_neighbor_table_is_the_true_nearest(metric: str, exclude_self: bool) -> None:
    rng = np.random.default_rng(11)
    base = rng.standard_normal((80, 6)).astype(np.float32)
    vectors = base[rng.integers(0, 80, size=500)]  # many exact ties between rows
    vectors[7] = 0.0  # a zero vector: every score 0, ties to the lower id
    indexed = rng.random(500) < 0.6
    queries = rng.random(500) < 0.7
    queries[7] = True
    qv = vectors + 0.5 * rng.standard_normal(vectors.shape).astype(np.float32)
    qv[7] = 0.0
    qv[~queries] = vectors[~queries]
    idx, sim = neighbor_table(
        vectors,
        indexed,
        queries,
        9,
        metric=metric,  # type: ignore[arg-type]
        exclude_self=exclude_self,
        query_vectors=qv,
        exact=True,
    )
    for row in range(500):
        if not queries[row]:
            assert (idx[row] == -1).all() and np.isneginf(sim[row]).all()
            continue
        want_idx, want_sim = _brute_force(vectors, indexed, qv, row, 9, metric, exclude_self)
        np.testing.assert_array_equal(idx[row], want_idx)
        np.testing.assert_allclose(sim[row], want_sim, rtol=1e-6, atol=1e-6)


def test_exact_neighbor_table_does_not_depend_on_blas_rounding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another machine's BLAS rounds the float32 product that picks each query's pool in
    other last bits; the pool's margin keeps the same true nearest in it, so the table does
    not change. Here the query (row 0) has three clear nearest rows (1-3), then 30 equal
    rows (4-33) tied behind them, then the rest; k = 5 asks for two of the tied rows (the
    lower ids, 4 and 5), and the pool holds 13. Another machine stands in as a product that
    scores the 15 lowest tied rows one ulp lower: without the margin they would all fall
    out of the pool, and rows 19 and 20 would be answered."""
    from recset.recall import complementary_of_similar as cos

    rng = np.random.default_rng(4)
    vectors = np.empty((134, 4), dtype=np.float32)
    vectors[0] = [1.0, 1.0, 1.0, 1.0]
    vectors[1:4] = [[1.0, 1.0, 1.0, 0.9], [1.0, 1.0, 1.0, 0.8], [1.0, 1.0, 1.0, 0.7]]
    vectors[4:34] = [1.0, 1.0, 1.0, 0.3]
    vectors[34:] = rng.random((100, 4)).astype(np.float32) * [1.0, 0.1, 0.1, 0.1] + [1, 0, 0, 0]
    indexed = np.arange(134) > 0
    queries = np.arange(134) == 0
    want = neighbor_table(vectors, indexed, queries, 5, exact=True)
    assert want[0][0].tolist() == [1, 2, 3, 4, 5]
    init = cos._ExactPool.__init__

    def other_machine(self: cos._ExactPool, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        # indexed positions 3..17 are rows 4..18
        self.v_t[:, 3:18] = np.nextafter(self.v_t[:, 3:18], np.float32(-np.inf))

    monkeypatch.setattr(cos._ExactPool, "__init__", other_machine)
    got = neighbor_table(vectors, indexed, queries, 5, exact=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_exact_source_finds_the_true_nearest_items(ds: Dataset, signals: Signals) -> None:
    # a coarse Annoy (one tree, 20 nodes) misses some nearest items; the same settings with
    # the exact search find them: at every rank at least as similar, somewhere more
    coarse = {"n_trees": 1, "search_k": 20}
    annoy = ComplementaryOfSimilarRecall(ComplementaryOfSimilarConfig(**coarse))
    exact = ComplementaryOfSimilarRecall(ComplementaryOfSimilarConfig(search="exact", **coarse))
    annoy.fit(ds, signals)
    exact.fit(ds, signals)
    a, e = annoy.neighbor_sim_, exact.neighbor_sim_
    both = np.isfinite(a) & np.isfinite(e)
    assert (e[both] >= a[both] - 1e-6).all()
    assert (np.isfinite(e) | ~np.isfinite(a)).all()
    assert (e[both] > a[both] + 1e-6).any() or np.isfinite(e).sum() > np.isfinite(a).sum()


def test_source_search_setting_selects_the_exact_search() -> None:
    from pydantic import ValidationError

    from recset.recall.complementary_of_similar import ComplementaryOfSimilarConfig
    from recset.recall.gnn_neighbors import GnnNeighborsConfig

    for cls in (ComplementaryOfSimilarConfig, GnnNeighborsConfig):
        assert cls().search == "annoy"
        assert cls(search="exact").search == "exact"
        with pytest.raises(ValidationError, match="search"):
            cls(search="faiss")


def test_word_vectors_are_gensims_word_vectors() -> None:
    from gensim.models import FastText

    rng = np.random.default_rng(0)
    vocab = ["".join(rng.choice(list("abcdefgh"), rng.integers(1, 12))) for _ in range(400)]
    corpus = [list(rng.choice(vocab, 8)) for _ in range(300)]
    words = [*vocab, "zzzzqq", "x", "cam-117", "ünïcode"]
    for max_n in (5, 0):  # max_n 0: no n-grams, words outside the vocabulary are zero
        model = FastText(vector_size=16, min_count=2, max_n=max_n, workers=1, seed=0, bucket=5000)
        model.build_vocab(corpus_iterable=corpus)
        model.train(corpus_iterable=corpus, total_examples=len(corpus), epochs=2)
        known = [w in model.wv.key_to_index for w in words]
        assert 0 < sum(known) < len(words)
        got = word_vectors(model.wv, words, block=37)
        for w, k, row in zip(words, known, got, strict=True):
            if k or max_n:
                assert row.tobytes() == model.wv[w].tobytes(), w
            else:
                assert not row.any()


def test_text_groups_share_the_token_list(syn: SyntheticData) -> None:
    data = Dataset.from_frames(syn.catalog, syn.events)
    cfg = TextEmbeddingConfig()
    group, first = text_groups(data, cfg)
    assert len(first) < data.n_items  # the synthetic catalog repeats titles and aspects
    assert (np.diff(first) > 0).all() and (group[first] == np.arange(len(first))).all()
    tokens = item_tokens(data, cfg)
    for i in range(data.n_items):
        assert tokens[i] == tokens[first[group[i]]]


def test_embed_items_is_the_item_by_item_definition(syn: SyntheticData) -> None:
    """Each item's vector is the SIF-weighted mean of its tokens' normalised FastText
    vectors, minus the common component, normalised; computed here item by item with
    gensim's own word lookup (the fit computes it once per group of items with the same
    text, and looks words up in blocks)."""
    from gensim.models import FastText

    data = Dataset.from_frames(syn.catalog, syn.events)
    cfg = TextEmbeddingConfig(embedding_size=16)
    tokens = item_tokens(data, cfg)
    firsts = sorted({tuple(t): i for i, t in reversed(list(enumerate(tokens))) if t}.values())
    assert len(firsts) <= cfg.max_train_items  # no sampling: the corpus is every distinct list
    corpus = [tokens[i] for i in firsts]
    model = FastText(
        vector_size=16, window=cfg.window, min_count=cfg.min_count, min_n=cfg.min_n,
        max_n=cfg.max_n, bucket=cfg.bucket, epochs=cfg.epochs, seed=cfg.seed, workers=1, sg=0,
    )  # fmt: skip
    model.build_vocab(corpus_iterable=corpus)
    with portable_fasttext():
        model.train(corpus_iterable=corpus, total_examples=len(corpus), epochs=cfg.epochs)
    tf: dict[str, int] = {}
    for t in tokens:
        for w in t:
            tf[w] = tf.get(w, 0) + 1
    total = sum(tf.values())
    want = np.zeros((data.n_items, 16))
    for i, t in enumerate(tokens):
        weights = np.array([cfg.sif_a / (cfg.sif_a + tf[w] / total) for w in t])
        vecs = np.array([model.wv[w] / np.linalg.norm(model.wv[w]) for w in t])
        want[i] = weights @ vecs / weights.sum()
    pc = np.linalg.svd(want, full_matrices=False)[2][0]
    want -= np.outer(want @ pc, pc)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(embed_items(data, cfg), want, atol=2e-5)


@pytest.mark.parametrize("how", ["sum", "max"])
def test_recall_many_is_the_padded_table_definition(
    ds: Dataset, signals: Signals, how: str
) -> None:
    # the complements are kept as CSR rows and pooled as flat entries: the same lists, bit
    # for bit, as pooling the padded (n_items, complements_per_item) table
    src = ComplementaryOfSimilarRecall(ComplementaryOfSimilarConfig(aggregate=how))
    src.fit(ds, signals)
    k = src.config.complements_per_item
    table, table_score = topk_rows(src._complement_matrix(ds, signals), k)
    kept = table >= 0
    np.testing.assert_array_equal(src.complement_items_, table[kept])
    np.testing.assert_array_equal(src.complement_scores_, table_score[kept])
    np.testing.assert_array_equal(np.diff(src.complement_indptr_), kept.sum(axis=1))
    seeds = np.r_[np.arange(ds.n_items), -1].astype(np.int32)
    got = src.recall_many(seeds, 60)
    answer = (seeds >= 0) & (src.n_complements_[np.maximum(seeds, 0)] < src.config.min_complements)
    s = seeds[answer]
    nb, sim = src.neighbors_[s], src.neighbor_sim_[s]
    item = np.where(nb[:, :, None] >= 0, table[np.maximum(nb, 0)], -1)
    score = sim[:, :, None] * table_score[np.maximum(nb, 0)]
    want = aggregate_candidates(s, item.reshape(len(s), -1), score.reshape(len(s), -1), 60, how=how)
    assert (want.counts() > 0).sum() > 100
    np.testing.assert_array_equal(got.item[answer], want.item)
    assert got.score[answer].tobytes() == want.score.tobytes()
    assert (got.item[~answer] == -1).all()


def test_state_saved_with_padded_complements_still_loads(
    fitted: ComplementaryOfSimilarRecall, ds: Dataset, tmp_path: Path
) -> None:
    # engines saved before the CSR rows hold (n_items, complements_per_item) tables padded
    # with -1: they load into the same rows and answer the same lists
    from recset.recall._base import _FORMAT_VERSION
    from recset.storage import write_state

    k = fitted.config.complements_per_item
    ptr = fitted.complement_indptr_
    n = len(ptr) - 1
    items = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    for i in range(n):
        row = slice(ptr[i], ptr[i + 1])
        items[i, : ptr[i + 1] - ptr[i]] = fitted.complement_items_[row]
        scores[i, : ptr[i + 1] - ptr[i]] = fitted.complement_scores_[row]
    assert (items[:, -1] == -1).any() and (items[:, 0] >= 0).any()
    write_state(
        tmp_path / "old",
        "recall_set",
        _FORMAT_VERSION,
        meta={"name": fitted.name, "config": fitted.config.model_dump(mode="json")},
        arrays={
            "neighbors_": fitted.neighbors_,
            "neighbor_sim_": fitted.neighbor_sim_,
            "complements_": items,
            "complement_score_": scores,
            "n_complements_": fitted.n_complements_,
        },
    )
    loaded = ComplementaryOfSimilarRecall.load(tmp_path / "old")
    for attr in ("complement_indptr_", "complement_items_", "complement_scores_"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(fitted, attr))
        assert getattr(loaded, attr).dtype == getattr(fitted, attr).dtype
    seeds = np.r_[np.arange(ds.n_items), -1].astype(np.int32)
    a, b = fitted.recall_many(seeds, 20), loaded.recall_many(seeds, 20)
    np.testing.assert_array_equal(a.item, b.item)
    assert a.score.tobytes() == b.score.tobytes()
