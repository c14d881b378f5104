"""Tests of the ``gnn_neighbors`` recall source (embeddings file -> Annoy neighbours)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.errors import ConfigError, NotFittedError
from recset.recall import get_recall
from recset.recall.gnn_neighbors import GnnNeighborsConfig, GnnNeighborsRecall


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=400, seed=3))
    return Dataset.from_frames(syn.catalog, syn.events)


def _clusters(n: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated clusters: label = item id % 2."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    centers = np.zeros((2, d), dtype=np.float32)
    centers[0, 0] = centers[1, 1] = 5.0
    return (centers[label] + rng.normal(0, 0.5, (n, d))).astype(np.float32), label


def _cfg(path: Path, **kw: object) -> GnnNeighborsConfig:
    return GnnNeighborsConfig(embeddings=str(path), max_candidates=20, **kw)


def test_registered() -> None:
    assert get_recall("gnn_neighbors") is GnnNeighborsRecall


def test_not_fitted_raises() -> None:
    with pytest.raises(NotFittedError):
        GnnNeighborsRecall().recall_many(np.array([0], dtype=np.int32), 5)


@pytest.mark.parametrize("missing", [None, "nowhere/item_embeddings.npy"])
def test_without_embeddings_answers_nothing(
    ds: Dataset, missing: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="recset.recall.gnn_neighbors"):
        src = GnnNeighborsRecall(GnnNeighborsConfig(embeddings=missing)).fit(ds)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    cand = src.recall_many(np.array([0, 5, -1], dtype=np.int32), 10)
    assert cand.item.shape == (3, 10)
    assert (cand.item == -1).all() and np.isneginf(cand.score).all()


@pytest.mark.parametrize("fmt", ["npy", "npz"])
@pytest.mark.parametrize("metric", ["angular", "dot"])
def test_planted_clusters(ds: Dataset, tmp_path: Path, fmt: str, metric: str) -> None:
    emb, label = _clusters(ds.n_items)
    path = tmp_path / f"emb.{fmt}"
    if fmt == "npy":
        np.save(path, emb)
    else:
        np.savez(path, embeddings=emb, other=np.zeros(3))
    src = GnnNeighborsRecall(_cfg(path, metric=metric)).fit(ds)
    seeds = np.r_[np.arange(ds.n_items), -1].astype(np.int32)
    cand = src.recall_many(seeds, 10)
    assert cand.item.shape == (len(seeds), 10)
    assert cand.counts()[-1] == 0  # unknown seed: empty row
    real = cand.item[:-1] >= 0
    assert real.sum(axis=1).min() == 10
    same = label[cand.item[:-1]] == label[:, None]
    assert same[real].all()
    assert not (cand.item[:-1] == np.arange(ds.n_items)[:, None]).any()
    unavailable = np.flatnonzero(~ds.catalog.available)
    assert not np.isin(cand.item, unavailable).any()
    assert (np.diff(cand.score[:-1], axis=1) <= 1e-6).all()
    if metric == "angular":
        sims = cand.score[:-1][real]
        assert (sims <= 1.0 + 1e-5).all() and (sims > 0.5).all()


def test_zero_rows_have_no_neighbours(ds: Dataset, tmp_path: Path) -> None:
    emb, _ = _clusters(ds.n_items)
    emb[:10] = 0.0
    np.save(tmp_path / "emb.npy", emb)
    src = GnnNeighborsRecall(_cfg(tmp_path / "emb.npy")).fit(ds)
    cand = src.recall_many(np.arange(ds.n_items, dtype=np.int32), 15)
    assert (cand.counts()[:10] == 0).all()
    assert not np.isin(cand.item, np.arange(10)).any()


def test_shape_mismatch_is_config_error(ds: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, np.ones((ds.n_items + 1, 4), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"bad\.npy.*expected shape \(400, d\).*\(401, 4\)"):
        GnnNeighborsRecall(_cfg(path)).fit(ds)
    np.save(path, np.ones(ds.n_items, dtype=np.float32))
    with pytest.raises(ConfigError, match="2-D"):
        GnnNeighborsRecall(_cfg(path)).fit(ds)


def test_deterministic_and_save_load(ds: Dataset, tmp_path: Path) -> None:
    emb, _ = _clusters(ds.n_items)
    np.save(tmp_path / "emb.npy", emb)
    a = GnnNeighborsRecall(_cfg(tmp_path / "emb.npy")).fit(ds)
    b = GnnNeighborsRecall(_cfg(tmp_path / "emb.npy")).fit(ds)
    np.testing.assert_array_equal(a.neighbors_, b.neighbors_)
    np.testing.assert_array_equal(a.neighbor_sim_, b.neighbor_sim_)
    a.save(tmp_path / "saved")
    (tmp_path / "emb.npy").unlink()  # the file is not needed after fit
    loaded = GnnNeighborsRecall.load(tmp_path / "saved")
    seeds = np.r_[np.arange(ds.n_items), -1].astype(np.int32)
    x, y = a.recall_many(seeds, 30), loaded.recall_many(seeds, 30)
    np.testing.assert_array_equal(x.item, y.item)
    np.testing.assert_array_equal(x.score, y.score)


def test_query_embeddings_seed_the_search(ds: Dataset, tmp_path: Path) -> None:
    # planted asymmetry: each item's query vector sits in the *other* cluster
    emb, label = _clusters(ds.n_items)
    queries = emb[np.arange(ds.n_items) ^ 1]  # item 2k <-> 2k + 1: the other label
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=emb, query_embeddings=queries)
    src = GnnNeighborsRecall(_cfg(path)).fit(ds)
    cand = src.recall_many(np.arange(ds.n_items, dtype=np.int32), 10)
    real = cand.item >= 0
    assert real.sum(axis=1).min() == 10
    assert (label[cand.item] != label[:, None])[real].all()
    # the same as indexing the vectors directly with those queries
    direct = GnnNeighborsRecall(_cfg(path))._index(emb, ds, "direct", queries)
    np.testing.assert_array_equal(src.neighbors_, direct.neighbors_)
    np.testing.assert_array_equal(src.neighbor_sim_, direct.neighbor_sim_)
    # without query_embeddings the file is read as before (seeds search with their own row)
    np.savez(path, embeddings=emb)
    plain = GnnNeighborsRecall(_cfg(path)).fit(ds)
    cand = plain.recall_many(np.arange(ds.n_items, dtype=np.int32), 10)
    assert (label[cand.item] == label[:, None])[cand.item >= 0].all()


def test_bad_query_embeddings_are_config_errors(ds: Dataset, tmp_path: Path) -> None:
    emb, _ = _clusters(ds.n_items)
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=emb, query_embeddings=emb[:, :4])
    with pytest.raises(ConfigError, match=r"emb\.npz.*'query_embeddings'.*\(400, 8\)"):
        GnnNeighborsRecall(_cfg(path)).fit(ds)
    bad = emb.copy()
    bad[3, 1] = np.nan
    np.savez(path, embeddings=emb, query_embeddings=bad)
    with pytest.raises(ConfigError, match="non-finite"):
        GnnNeighborsRecall(_cfg(path)).fit(ds)


def test_training_keys_are_gone(tmp_path: Path) -> None:
    from recset.config import config_from_dict

    with pytest.raises(ConfigError, match="train"):
        config_from_dict({"sources": {"gnn_neighbors": {"train": True}}})
    with pytest.raises(ValueError, match="train"):
        GnnNeighborsConfig(train=True)  # type: ignore[call-arg]


def _planted_pairs(n_pairs: int = 20, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """``a_k`` (category A) is always bought with ``b_k`` (category B); pairs as dense ids."""
    rng = np.random.default_rng(seed)
    items = [f"a{k:02d}" for k in range(n_pairs)] + [f"b{k:02d}" for k in range(n_pairs)]
    cat = pd.DataFrame(
        {"item_id": items, "category_id": ["A"] * n_pairs + ["B"] * n_pairs, "title": items}
    )
    rows = []
    t = 1_000_000
    for u in range(4 * n_pairs):
        for k in rng.choice(n_pairs, 3, replace=False):
            o = f"o{u}_{k}"
            rows.append((f"u{u}", f"a{k:02d}", "purchase", t, o))
            rows.append((f"u{u}", f"b{k:02d}", "purchase", t + 10, o))
            t += 100
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    planted = Dataset.from_frames(cat, ev, name="planted")
    a = planted.items.index([f"a{k:02d}" for k in range(n_pairs)])
    b = planted.items.index([f"b{k:02d}" for k in range(n_pairs)])
    return planted, np.stack([a, b], axis=1)


@pytest.mark.slow
def test_trained_gnn_embeddings_artifact(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    from recset.personalization import NeuralConfig, save_item_embeddings, train_neural

    planted, pairs = _planted_pairs()
    feats = np.random.default_rng(1).normal(size=(planted.n_items, 8)).astype(np.float32)
    cfg = NeuralConfig(
        stages="gnn",
        device="cpu",
        embedding_size=16,
        gnn_layers=1,
        gnn_epochs=60,
        gnn_batch_size=256,
        blend_weight=0.5,
    )
    model = train_neural(planted, cfg, features=feats)
    path = save_item_embeddings(model, tmp_path / "gnn" / "item_embeddings.npz")
    assert path == tmp_path / "gnn" / "item_embeddings.npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["embeddings", "query_embeddings"]
        np.testing.assert_array_equal(z["embeddings"], model.item_embeddings())
        np.testing.assert_array_equal(z["query_embeddings"], model.query_embeddings())

    src = GnnNeighborsRecall(_cfg(path)).fit(planted)
    # the same neighbours as the model's vectors give (seeds search with P(theta))
    direct = GnnNeighborsRecall(_cfg(path))._index(
        model.item_embeddings(), planted, "model", model.query_embeddings()
    )
    np.testing.assert_array_equal(src.neighbors_, direct.neighbors_)
    np.testing.assert_array_equal(src.neighbor_sim_, direct.neighbor_sim_)
    # planted structure: a_k's complement b_k is among its first neighbours
    cand = src.recall_many(pairs[:, 0].astype(np.int32), 5)
    found = (cand.item == pairs[:, 1:]).any(axis=1)
    assert found.mean() >= 0.8, found.mean()  # measured: 1.0


def test_import_recset_does_not_import_heavy_backends() -> None:
    code = (
        "import sys, recset, recset.recall; "
        "bad = [m for m in ('annoy', 'gensim', 'torch') if m in sys.modules]; "
        "sys.exit(bool(bad) and print(bad) is None)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
