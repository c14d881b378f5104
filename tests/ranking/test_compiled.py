"""The compiled (lleaves) scorer: same scores as LightGBM, its cache, the fallback."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from recset.ranking import _compiled
from recset.ranking._compiled import BoosterScorer, cache_path, compile_model, scorer

lgb = pytest.importorskip("lightgbm")
pytest.importorskip("lleaves")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, np.ndarray]:
    """A lambdarank model on rows with missing values (NaN), saved as LightGBM text."""
    rng = np.random.default_rng(0)
    n, d = 3000, 12
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[rng.random((n, d)) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 3]) > 0.5).astype(np.float32)
    params = {"objective": "lambdarank", "num_leaves": 15, "verbose": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(X, y, group=[30] * 100), num_boost_round=40)
    path = tmp_path_factory.mktemp("model") / "model.txt"
    booster.save_model(str(path))
    Xq = rng.normal(size=(500, d)).astype(np.float32)
    Xq[rng.random((500, d)) < 0.3] = np.nan
    return booster, path, Xq


def test_compiled_scores_equal_lightgbm(model: tuple) -> None:
    booster, path, X = model
    fast = compile_model(path, cache=False)
    assert fast is not None and fast.kind == "lleaves"
    want = BoosterScorer(booster).predict(X)
    got = fast.predict(X)
    assert got.shape == want.shape == (len(X),)
    assert np.abs(got - want).max() < 1e-6
    assert np.ptp(want) > 0.1  # the trees really split: the comparison is not of constants
    assert fast.predict(X[:0]).shape == (0,)
    with pytest.raises(ValueError, match="12 features"):
        fast.predict(X[:, :5])


def test_cache_is_written_once_and_reused(model: tuple, tmp_path: Path) -> None:
    booster, path, X = model
    local = tmp_path / "model.txt"
    local.write_bytes(path.read_bytes())
    first = compile_model(local)
    cached = cache_path(local)
    assert cached.is_file() and cached.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    mtime = cached.stat().st_mtime_ns
    second = compile_model(local)
    assert cached.stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert first is not None and second is not None
    assert np.array_equal(first.predict(X), second.predict(X))
    # another model text gets another cache file: a stale cache is never loaded
    other = tmp_path / "other" / "model.txt"
    other.parent.mkdir()
    lgb.train(
        {"objective": "regression", "verbose": -1, "num_leaves": 4},
        lgb.Dataset(np.nan_to_num(X), np.arange(len(X), dtype=float)),
        num_boost_round=3,
    ).save_model(str(other))
    assert cache_path(other).name != cached.name


def test_store_manifest_must_list_the_cache(
    model: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    booster, path, X = model
    local = tmp_path / "model.txt"
    local.write_bytes(path.read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"model.txt": {}}}))
    with caplog.at_level(logging.INFO, logger="recset.ranking._compiled"):
        fast = compile_model(local)
    assert fast is not None
    assert not cache_path(local).exists()  # not written into a store's version
    assert "manifest lists no compiled model" in caplog.text
    assert np.abs(fast.predict(X) - booster.predict(X)).max() < 1e-6


def test_falls_back_to_lightgbm_without_lleaves(
    model: tuple, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    booster, path, X = model
    monkeypatch.setattr(_compiled, "_lleaves", lambda: None)
    with caplog.at_level(logging.INFO, logger="recset.ranking._compiled"):
        s = scorer(booster, path)
    assert s.kind == "lightgbm"
    assert "lleaves is not installed" in caplog.text
    assert np.array_equal(s.predict(X), booster.predict(X))
