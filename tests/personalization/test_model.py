"""Training on planted data, re-ranking, save / load (small and fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recset.data import Dataset
from recset.errors import ConfigError
from recset.personalization import NeuralConfig

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from recset.personalization import NeuralModel, train_neural  # noqa: E402

FAST = dict(
    device="cpu",
    embedding_size=16,
    gnn_layers=1,
    max_history=5,
    transformer_layers=1,
    transformer_heads=2,
    contrastive_batch_size=16,
    gnn_batch_size=256,
    joint_batch_size=128,
)


def _planted(n_pairs: int = 20, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """``a_k`` (category A) is always bought with, then followed by, ``b_k`` (category B).

    Users buy 3 random pairs each; nothing else. Returns the dataset and the pairs as
    dense ids, shape (n_pairs, 2).
    """
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
    ds = Dataset.from_frames(cat, ev, name="planted")
    pairs = np.array(
        [
            [ds.items.index([f"a{k:02d}"])[0], ds.items.index([f"b{k:02d}"])[0]]
            for k in range(n_pairs)
        ]
    )
    return ds, pairs


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, np.ndarray, NeuralModel]:
    ds, pairs = _planted()
    feats = np.random.default_rng(1).normal(size=(ds.n_items, 8)).astype(np.float32)
    cfg = NeuralConfig(**FAST, gnn_epochs=60, joint_epochs=3, blend_weight=0.5)
    return ds, pairs, train_neural(ds, cfg, features=feats)


def test_linked_items_nearer_than_unlinked(planted) -> None:
    ds, pairs, model = planted
    theta, query = model.item_embeddings(), model.query_embeddings()
    assert theta.shape == (ds.n_items, 16) and theta.dtype == np.float32
    a, b = pairs[:, 0], pairs[:, 1]
    linked = ((query[a] - theta[b]) ** 2).sum(1)
    # every unlinked (a_k, b_m), m != k
    d_all = ((query[a][:, None, :] - theta[b][None, :, :]) ** 2).sum(-1)
    unlinked = d_all[~np.eye(len(a), dtype=bool)]
    assert linked.mean() < 0.5 * unlinked.mean()
    # and for most seeds the linked item is the nearest of the B items
    assert (d_all.argmin(axis=1) == np.arange(len(a))).mean() >= 0.8


def test_rerank_padding_and_unknown_users(planted) -> None:
    ds, pairs, model = planted
    rng = np.random.default_rng(3)
    b = 6
    items = rng.choice(ds.n_items, size=(b, 10)).astype(np.int32)
    items[:, 7:] = -1
    base = rng.normal(size=(b, 10)).astype(np.float32) * 1000.0
    base[:, 7:] = -np.inf
    seeds = pairs[:b, 0].astype(np.int32)
    users = np.array([0, 1, -1, 10_000, 2, -1], dtype=np.int32)
    out = model.rerank(seeds, users, items, base)
    assert out.shape == items.shape and out.dtype == np.float32
    assert np.isneginf(out[:, 7:]).all()
    assert np.isfinite(out[:, :7]).all()
    for r in (2, 3, 5):  # unknown users keep the base order
        assert (
            np.argsort(-out[r, :7], kind="stable") == np.argsort(-base[r, :7], kind="stable")
        ).all()
    # unknown users get the neutral vector
    u = model.user_vectors(np.array([-1, 10_000], dtype=np.int32))
    assert (u == 1.0).all()


def test_rerank_is_scale_free(planted) -> None:
    ds, pairs, model = planted
    rng = np.random.default_rng(4)
    items = rng.choice(ds.n_items, size=(4, 12)).astype(np.int32)
    base = rng.normal(size=(4, 12))
    seeds, users = pairs[:4, 0].astype(np.int32), np.arange(4, dtype=np.int32)
    a = model.rerank(seeds, users, items, base)
    b = model.rerank(seeds, users, items, 1e6 * base + 7.0)
    np.testing.assert_array_equal(a, b)


def test_save_load_roundtrip(planted, tmp_path: Path) -> None:
    ds, pairs, model = planted
    model.save(tmp_path / "neural")
    model.save(tmp_path / "neural")  # replacing an existing directory works
    loaded = NeuralModel.load(tmp_path / "neural", device="cpu", n_items=ds.n_items)
    np.testing.assert_array_equal(loaded.item_embeddings(), model.item_embeddings())
    users = np.arange(8, dtype=np.int32)
    np.testing.assert_array_equal(loaded.user_vectors(users), model.user_vectors(users))
    rng = np.random.default_rng(5)
    items = rng.choice(ds.n_items, size=(8, 9)).astype(np.int32)
    base = rng.normal(size=(8, 9)).astype(np.float32)
    seeds = pairs[:8, 0].astype(np.int32)
    np.testing.assert_array_equal(
        loaded.rerank(seeds, users, items, base), model.rerank(seeds, users, items, base)
    )
    assert loaded.blend_weight_ == model.blend_weight_
    with np.load(tmp_path / "neural" / "neural_model.npz", allow_pickle=False) as z:
        emb = z["embeddings"]
    assert emb.shape == (ds.n_items, 16) and emb.dtype == np.float32


def test_load_errors_name_the_file(planted, tmp_path: Path) -> None:
    ds, _, model = planted
    model.save(tmp_path / "m")
    with pytest.raises(ConfigError, match="neural_model.json"):
        NeuralModel.load(tmp_path / "m", device="cpu", n_items=ds.n_items + 1)
    npz = tmp_path / "m" / "neural_model.npz"
    with np.load(npz, allow_pickle=False) as z:
        arrays = dict(z)
    np.savez(npz, **{**arrays, "embeddings": np.zeros((3, 16), np.float32)})
    with pytest.raises(ConfigError, match=r"neural_model\.npz.*'embeddings'"):
        NeuralModel.load(tmp_path / "m", device="cpu")
    np.savez(npz, **{**arrays, "history_items": np.full(3, ds.n_items, np.int32)})
    with pytest.raises(ConfigError, match=r"neural_model\.npz.*histories"):
        NeuralModel.load(tmp_path / "m", device="cpu")
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.raises(ConfigError, match="neural_model"):
        NeuralModel.load(tmp_path / "m", device="cpu")
    model.save(tmp_path / "m")
    (tmp_path / "m" / "graph.pt").unlink()
    with pytest.raises(ConfigError, match="graph.pt"):
        NeuralModel.load(tmp_path / "m", device="cpu")
    (tmp_path / "m" / "neural_model.json").unlink()
    with pytest.raises(ConfigError, match="neural_model.json.*missing"):
        NeuralModel.load(tmp_path / "m", device="cpu")


def _old_layout(model: NeuralModel, directory: Path) -> None:
    """The files NeuralModel.save wrote before the versioned state (format version 1)."""
    model.save(directory)
    doc = json.loads((directory / "neural_model.json").read_text())
    with np.load(directory / "neural_model.npz", allow_pickle=False) as z:
        arrays = dict(z)
    (directory / "neural_model.json").unlink()
    (directory / "neural_model.npz").unlink()
    (directory / "neural.json").write_text(json.dumps({"format_version": 1, **doc["meta"]}))
    np.save(directory / "embeddings.npy", arrays["embeddings"])
    np.save(directory / "query.npy", arrays["query"])
    np.savez(
        directory / "histories.npz",
        indptr=arrays["history_indptr"],
        items=arrays["history_items"],
    )


def test_old_layout_is_refused_with_retrain(planted, tmp_path: Path) -> None:
    ds, _, model = planted
    _old_layout(model, tmp_path / "old")
    with pytest.raises(ConfigError, match="retrain the neural model with `recset train-neural`"):
        NeuralModel.load(tmp_path / "old", device="cpu", n_items=ds.n_items)
    model.save(tmp_path / "v")
    doc = json.loads((tmp_path / "v" / "neural_model.json").read_text())
    doc["format_version"] = 1
    (tmp_path / "v" / "neural_model.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="format version 1.*retrain the neural model"):
        NeuralModel.load(tmp_path / "v", device="cpu")


def test_training_is_deterministic_on_cpu() -> None:
    ds, _ = _planted(n_pairs=8, seed=2)
    feats = np.random.default_rng(0).normal(size=(ds.n_items, 6)).astype(np.float32)
    cfg = NeuralConfig(**FAST, gnn_epochs=3, joint_epochs=1, blend_weight=0.3)
    a = train_neural(ds, cfg, features=feats)
    b = train_neural(ds, cfg, features=feats)
    np.testing.assert_array_equal(a.item_embeddings(), b.item_embeddings())
    users = np.arange(ds.n_users, dtype=np.int32)
    np.testing.assert_array_equal(a.user_vectors(users), b.user_vectors(users))


def test_gnn_only_stage_and_validation_blend() -> None:
    ds, _ = _planted(n_pairs=10, seed=4)
    feats = np.random.default_rng(0).normal(size=(ds.n_items, 6)).astype(np.float32)
    model = train_neural(ds, NeuralConfig(**FAST, stages="gnn", gnn_epochs=3), features=feats)
    assert model.encoder_ is None
    assert 0.0 <= model.blend_weight_ <= 1.0
    assert model.metadata_["blend_source"].startswith(("validation", "default"))
    # with no user encoder every user vector is neutral
    assert (model.user_vectors(np.arange(3, dtype=np.int32)) == 1.0).all()


def test_personalizer_save_load(planted, tmp_path: Path) -> None:
    from recset.data import IdMap
    from recset.personalization import Personalizer

    ds, pairs, model = planted
    d = tmp_path / "p"
    Personalizer(model, ds.users).save(d)
    assert sorted(p.name for p in d.iterdir()) == [
        "item_embeddings.npz",
        "model",
        "personalizer.json",
        "personalizer.npz",
    ]
    back = Personalizer.load(d, device="cpu", n_items=ds.n_items)
    assert back.users == ds.users
    users = np.arange(8, dtype=np.int32)
    rng = np.random.default_rng(5)
    items = rng.choice(ds.n_items, size=(8, 9)).astype(np.int32)
    base = rng.normal(size=(8, 9)).astype(np.float32)
    seeds = pairs[:8, 0].astype(np.int32)
    np.testing.assert_array_equal(
        back.model.rerank(seeds, users, items, base), model.rerank(seeds, users, items, base)
    )
    # a user map that does not match the model's histories is refused
    Personalizer(model, IdMap(ds.users.values[:-1])).save(tmp_path / "short")
    with pytest.raises(ConfigError, match=r"personalizer\.json.*users, the model keeps"):
        Personalizer.load(tmp_path / "short", device="cpu")
    with pytest.raises(ConfigError, match="neural_model.json"):
        Personalizer.load(d, device="cpu", n_items=ds.n_items + 1)


def test_personalizer_old_layout_is_refused_with_retrain(planted, tmp_path: Path) -> None:
    from recset.personalization import Personalizer

    ds, _, model = planted
    d = tmp_path / "p"
    # the layout before the versioned state: users.json next to the old model files
    _old_layout(model, d / "model")
    (d / "users.json").write_text(json.dumps(ds.users.values.tolist()))
    with pytest.raises(ConfigError, match="retrain the neural stages with `recset train-neural`"):
        Personalizer.load(d, device="cpu", n_items=ds.n_items)
    # the personalizer's own state written, the model still in the old layout
    Personalizer(model, ds.users).save(tmp_path / "q")
    _old_layout(model, tmp_path / "q" / "model")
    with pytest.raises(ConfigError, match="retrain the neural model with `recset train-neural`"):
        Personalizer.load(tmp_path / "q", device="cpu", n_items=ds.n_items)


# --------------------------------------------------------------------------- affinity head


def test_repeat_features_hand_computed() -> None:
    import torch

    from recset.personalization._modules import repeat_features

    # history (time order) 7, 3, 7, 5: item 7 twice, last at recency 2; 5 at recency 1
    hist = torch.tensor([[7, 3, 7, 5, -1], [4, -1, -1, -1, -1]])
    length = torch.tensor([4, 1])
    cand = torch.tensor([[7, 5, 3, 9, -1], [4, 7, -1, -1, -1]])
    f = repeat_features(cand, hist, length).numpy()
    np.testing.assert_allclose(f[0, :, 0], np.log1p([2, 1, 1, 0, 0]), rtol=1e-6)
    np.testing.assert_allclose(f[0, :, 1], [1 / 2, 1.0, 1 / 3, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(f[0, :, 2], [1, 1, 1, 0, 0])
    # padding of the history (-1) never matches a padded candidate (-1)
    np.testing.assert_array_equal(f[1, :, 2], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(f[1, 0, :2], [np.log1p(1), 1.0], rtol=1e-6)


def test_attribute_repeat_features_hand_computed() -> None:
    import torch

    from recset.personalization._modules import repeat_features

    # items 0..4; attribute 0 (brand): 0, 0, 1, 1, unknown; attribute 1 (type): 0, 1, 0, 1, 1
    attrs = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1], [-1, 1]])
    hist = torch.tensor([[0, 2, 3, -1]])  # brands 0, 1, 1; types 0, 0, 1
    length = torch.tensor([3])
    cand = torch.tensor([[1, 3, 4]])
    f = repeat_features(cand, hist, length, attrs).numpy()[0]
    assert f.shape == (3, 3 + 2 * 2)
    np.testing.assert_array_equal(f[:, 2], [0, 1, 0])  # only item 3 itself was bought
    # brand share and 1/recency of the last purchase of that brand
    np.testing.assert_allclose(f[:, 3], [1 / 3, 2 / 3, 0.0], rtol=1e-6)
    np.testing.assert_allclose(f[:, 4], [1 / 3, 1.0, 0.0], rtol=1e-6)
    # type share and its recency (item 4's unknown brand matches nothing; its type does)
    np.testing.assert_allclose(f[:, 5], [1 / 3, 1 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(f[:, 6], [1.0, 1.0, 1.0], rtol=1e-6)


def test_row_zscore() -> None:
    from recset.personalization._model import _row_zscore

    v = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    z = _row_zscore(v, mask)
    np.testing.assert_allclose(z[0, :3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert z[0, 3] == 0.0 and (z[1] == 0.0).all()


def test_affinity_blend_keeps_the_tail_under_the_head(planted) -> None:
    """Only the rerank_n best by base score are re-ordered; the rest stay below, in base
    order, whatever their personal score."""
    ds, pairs, model = planted
    assert model.affinity_ is not None
    n = model.config.rerank_n + 15
    rng = np.random.default_rng(8)
    items = np.tile(np.arange(n) % ds.n_items, (3, 1)).astype(np.int32)
    base = rng.normal(size=(3, n))
    personal = rng.normal(size=(3, n)) * 50.0
    out = model._blend(items, base, personal, 0.7)
    order = np.argsort(-base, axis=1)
    head, tail = order[:, : model.config.rerank_n], order[:, model.config.rerank_n :]
    for r in range(3):
        assert out[r, head[r]].min() > out[r, tail[r]].max()
        assert (np.diff(out[r, tail[r]]) < 0).all()


def test_affinity_saved_and_loaded(planted, tmp_path: Path) -> None:
    ds, pairs, model = planted
    model.save(tmp_path / "a")
    assert (tmp_path / "a" / "affinity.pt").is_file()
    loaded = NeuralModel.load(tmp_path / "a", device="cpu", n_items=ds.n_items)
    assert loaded.affinity_ is not None
    users = np.arange(6, dtype=np.int32)
    items = np.random.default_rng(2).choice(ds.n_items, size=(6, 7)).astype(np.int32)
    np.testing.assert_array_equal(loaded._affinity(users, items), model._affinity(users, items))
    # a missing or mismatched file is named
    (tmp_path / "a" / "affinity.pt").unlink()
    with pytest.raises(ConfigError, match="affinity.pt"):
        NeuralModel.load(tmp_path / "a", device="cpu")
    model.save(tmp_path / "a")
    npz = tmp_path / "a" / "neural_model.npz"
    with np.load(npz, allow_pickle=False) as z:
        arrays = dict(z)
    np.savez(npz, **{**arrays, "item_features": np.zeros((2, 8), np.float32)})
    with pytest.raises(ConfigError, match=r"neural_model\.npz.*'item_features'"):
        NeuralModel.load(tmp_path / "a", device="cpu")
    np.savez(npz, **{**arrays, "item_attributes": np.full((ds.n_items, 1), -5)})
    with pytest.raises(ConfigError, match=r"neural_model\.npz.*'item_attributes'"):
        NeuralModel.load(tmp_path / "a", device="cpu")


def test_model_saved_before_the_affinity_head_loads_with_the_distance(
    planted, tmp_path: Path
) -> None:
    ds, pairs, model = planted
    model.save(tmp_path / "old")
    doc = json.loads((tmp_path / "old" / "neural_model.json").read_text())
    del doc["meta"]["has_affinity"]
    for key in [k for k in doc["meta"]["config"] if k.startswith(("affinity", "personal"))]:
        del doc["meta"]["config"][key]
    (tmp_path / "old" / "neural_model.json").write_text(json.dumps(doc))
    (tmp_path / "old" / "affinity.pt").unlink()
    old = NeuralModel.load(tmp_path / "old", device="cpu", n_items=ds.n_items)
    assert old.affinity_ is None and old.config.personal_score == "distance"
    seeds, users = pairs[:4, 0].astype(np.int32), np.arange(4, dtype=np.int32)
    items = np.tile(np.arange(ds.n_items, dtype=np.int32), (4, 1))
    d = old._distance(seeds, items, *old._user_state(users))
    np.testing.assert_array_equal(old._personal(seeds, users, items), -d)


def test_affinity_training_is_deterministic_on_cpu() -> None:
    ds, _ = _planted(n_pairs=8, seed=2)
    feats = np.random.default_rng(0).normal(size=(ds.n_items, 6)).astype(np.float32)
    cfg = NeuralConfig(**FAST, gnn_epochs=1, joint_epochs=1, affinity_epochs=2, blend_weight=0.3)
    a = train_neural(ds, cfg, features=feats)
    b = train_neural(ds, cfg, features=feats)
    users = np.arange(ds.n_users, dtype=np.int32)
    items = np.tile(np.arange(ds.n_items, dtype=np.int32), (ds.n_users, 1))
    np.testing.assert_array_equal(a._affinity(users, items), b._affinity(users, items))
    assert a.metadata_["fit"]["affinity_rows"] > 0


def test_item_attributes_read_category_brand_and_common_aspects() -> None:
    from recset.personalization._affinity import item_attributes

    n = 40
    colours = ["red", "blue"] * 19 + ["green", None]  # green: on one item only
    aspects = [
        json.dumps({"color": c, "tags": ["x"], "rare": "r"} if i == 0 else {"color": c})
        if c is not None
        else None
        for i, c in enumerate(colours)
    ]
    cat = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "category_id": ["A", "B"] * (n // 2),
            "brand": ["b1", "b2", "b3", "b4"] * (n // 4),
            "aspects": aspects,
        }
    )
    ev = pd.DataFrame(
        {"user_id": ["u"] * 2, "item_id": ["i0", "i1"], "event": "purchase", "timestamp": [1, 2]}
    )
    ds = Dataset.from_frames(cat, ev, name="attrs")
    a = item_attributes(ds)
    # category, brand, colour: no product type; "rare" is on 1 of 40 items (< 5%), "tags" a list
    assert a.shape == (n, 3)
    idx = ds.items.index([f"i{k}" for k in range(n)])
    assert len(set(a[idx[:4], 1])) == 4 and len(set(a[idx[:4], 0])) == 2
    col = a[idx, 2]
    assert col[0] != col[1] and col[0] == col[2] and col[38] == -1 and col[39] == -1
