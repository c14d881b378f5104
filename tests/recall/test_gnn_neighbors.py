"""Tests of the ``gnn_neighbors`` recall source (embeddings file -> Annoy neighbours)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_import_recset_does_not_import_heavy_backends() -> None:
    code = (
        "import sys, recset, recset.recall; "
        "bad = [m for m in ('annoy', 'gensim', 'torch') if m in sys.modules]; "
        "sys.exit(bool(bad) and print(bad) is None)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
