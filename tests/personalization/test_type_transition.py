"""Type transition: planted type graph recovered, asymmetry, loss, diversify, persistence."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.errors import ConfigError, DataError, NotFittedError
from recset.personalization._type_transition_config import TypeTransitionConfig

torch = pytest.importorskip("torch")

from recset.personalization._type_transition import (  # noqa: E402
    TypeTransition,
    train_type_transition,
    transition_loss,
)

# Measured on this data (n_items=3000, seed=0, default config): every anchor's top-|truth|
# predictions are its planted complement types (precision 1.0; 0.94-1.0 over epochs 30-150
# and catalog sizes 2k-20k), and no complement type predicts its anchor back
# (max P(anchor | complement) ~0.002 against a chance threshold of 1/45 ~0.022).
MIN_PRECISION = 0.9


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # noqa: ANN202
    # tiny tensors: intra-op threads only add overhead (7x on a busy 2-core runner)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def syn():  # noqa: ANN201
    return generate(SyntheticConfig(n_items=3000, seed=0))


@pytest.fixture(scope="module")
def ds(syn) -> Dataset:  # noqa: ANN001
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def tt(ds: Dataset) -> TypeTransition:
    return train_type_transition(ds, TypeTransitionConfig(device="cpu"))


def _tid(tt: TypeTransition, name: str) -> int:
    return tt.type_names_.index(name)


def _item_of(tt: TypeTransition, name: str, n: int = 1) -> np.ndarray:
    return np.flatnonzero(tt.item_type_ == _tid(tt, name))[:n]


# --------------------------------------------------------------------------- import


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, recset, recset.personalization._type_transition_config, "
        "recset.personalization._type_transition; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------- planted truth


def test_recovers_planted_complementary_types(syn, tt: TypeTransition) -> None:  # noqa: ANN001
    assert tt.level_ == "product_type"
    truth = syn.truth["complementary_types"]
    hits = total = listed = listed_hits = 0
    for anchor, comps in truth.items():
        if not comps:
            continue
        types, scores = tt.complement_types(np.array([_tid(tt, anchor)]))
        pred = [tt.type_names_[t] for t in types[0] if t >= 0]
        hits += sum(p in comps for p in pred[: len(comps)])
        total += len(comps)
        listed += len(pred)
        listed_hits += sum(p in comps for p in pred)
        real = scores[0][types[0] >= 0]
        assert (np.diff(real) <= 0).all(), "best first"
    assert hits / total >= MIN_PRECISION
    assert listed_hits / listed >= 0.85  # the thresholded lists add little noise


def test_asymmetric(syn, tt: TypeTransition) -> None:  # noqa: ANN001
    cam, sd = _tid(tt, "camera"), _tid(tt, "sd_card")
    types, _ = tt.complement_types(np.array([cam, sd]))
    assert sd in types[0]
    assert cam not in types[1]
    assert tt.score_table_[sd, cam] < tt.threshold_ < tt.score_table_[cam, sd]
    for anchor, comps in syn.truth["complementary_types"].items():
        for comp in comps:
            back, _ = tt.complement_types(np.array([_tid(tt, comp)]))
            assert _tid(tt, anchor) not in back[0], (comp, anchor)


def test_type_of_and_type_scores(ds: Dataset, tt: TypeTransition) -> None:
    assert tt.type_of(np.array([0, -1, ds.n_items + 5])).tolist()[1:] == [-1, -1]
    np.testing.assert_array_equal(tt.type_of(np.arange(ds.n_items)), ds.catalog.product_type)
    cams = _item_of(tt, "camera", 2)
    sd = _item_of(tt, "sd_card")[0]
    seeds = np.array([cams[0], sd, -1])
    items = np.array([[sd, cams[1], -1], [cams[1], sd, -1], [sd, cams[1], -1]])
    s = tt.type_scores(seeds, items)
    assert s.shape == (3, 3) and s.dtype == np.float32
    assert s[0, 0] > tt.threshold_ and s[0, 1] == 0.0  # same type: not a complement
    assert s[1, 0] < tt.threshold_
    assert np.isnan(s[:, 2]).all() and np.isnan(s[2]).all()


def test_complement_types_padding_and_long_lists(tt: TypeTransition) -> None:
    cam = _tid(tt, "camera")
    types, scores = tt.complement_types(np.array([-1, cam, 10**6]))
    assert types.shape == (3, tt.config.n_complements) and types.dtype == np.int32
    assert (types[[0, 2]] == -1).all() and np.isnan(scores[[0, 2]]).all()
    long_types, long_scores = tt.complement_types(np.array([cam]), m=20)
    assert long_types.shape == (1, 20)
    n = (types[1] >= 0).sum()
    np.testing.assert_array_equal(long_types[0, :n], types[1, :n])
    real = long_scores[0][long_types[0] >= 0]
    assert (real >= tt.threshold_).all()
    with pytest.raises(ConfigError, match="'m'"):
        tt.complement_types(np.array([cam]), m=0)


# --------------------------------------------------------------------------- model and loss


def test_loss_matches_hand_computation() -> None:
    d_pos = torch.tensor([1.0, 0.5])
    d_neg = torch.tensor([[2.0, 3.0], [0.5, 9.0]])
    weight = torch.tensor([1.0, 3.0])
    mask = torch.tensor([[True, True], [True, False]])
    got = float(transition_loss(d_pos, d_neg, weight, 0.5, mask))
    # row 0: logits -1.5 | -2, -3; row 1: logits -1.0 | -0.5 (the -9 is masked out)
    l0 = 1.5 + math.log(math.exp(-1.5) + math.exp(-2.0) + math.exp(-3.0))
    l1 = 1.0 + math.log(math.exp(-1.0) + math.exp(-0.5))
    assert got == pytest.approx((1 * l0 + 3 * l1) / 4, rel=1e-6)
    # no margin, no mask: the plain softmax cross-entropy
    plain = float(transition_loss(d_pos[:1], d_neg[:1], weight[:1], 0.0))
    assert plain == pytest.approx(1.0 + math.log(math.exp(-1) + math.exp(-2) + math.exp(-3)))


def test_distance_is_min_over_heads_and_asymmetric(tt: TypeTransition) -> None:
    net = tt.module_
    a = torch.tensor([_tid(tt, "camera"), _tid(tt, "sd_card")])
    b = torch.tensor([[_tid(tt, "sd_card"), 0], [_tid(tt, "camera"), 1]])
    with torch.no_grad():
        got = net.distance(a, b).numpy()
        pred = net.complements(a).numpy()  # (2, M, d)
        emb = net.type_embedding.weight.numpy()
        table = net.distance_table().numpy()
    brute = ((emb[b.numpy()][:, :, None, :] - pred[:, None, :, :]) ** 2).sum(-1).min(-1)
    np.testing.assert_allclose(got, brute, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(table[a.numpy()[:, None], b.numpy()], brute, rtol=1e-4, atol=1e-4)
    cam, sd = int(a[0]), int(a[1])
    assert table[cam, sd] < table[sd, cam]


# --------------------------------------------------------------------------- diversify

# Hand-made model: types 0 camera, 1 sd_card, 2 bag, 3 tripod, 4 bike, 5 helmet, 6 never
# seen in training. With n_complements=2: camera -> [sd_card, bag], tripod scores above
# chance (0.2) but is not listed, bike/helmet below chance (demoted); sd_card -> [bag,
# tripod] with camera below chance; bike -> [helmet] only.
_P = np.array(
    [
        [0.0, 0.30, 0.25, 0.22, 0.13, 0.10, np.nan],
        [0.05, 0.0, 0.40, 0.35, 0.10, 0.10, np.nan],
        [0.2, 0.2, 0.0, 0.2, 0.2, 0.2, np.nan],
        [0.2, 0.2, 0.2, 0.0, 0.2, 0.2, np.nan],
        [0.1, 0.1, 0.1, 0.1, 0.0, 0.6, np.nan],
        [0.2, 0.2, 0.2, 0.2, 0.2, 0.0, np.nan],
        [np.nan] * 7,
    ],
    dtype=np.float32,
)
# items 0-9 and 14-15 are candidates below; 10 has no type; 11-13 are seeds
_ITEM_TYPE = np.array([0, 0, 1, 1, 1, 2, 4, 3, 3, 3, -1, 0, 1, 4, 6, 5], dtype=np.int32)
CAMERA_SEED, SD_SEED, BIKE_SEED = 11, 12, 13


def _handmade(**config: object) -> TypeTransition:
    cfg = {"n_complements": 2, "max_per_type": 2, "min_types": 1, **config}
    tt = TypeTransition(TypeTransitionConfig(**cfg))  # type: ignore[arg-type]
    tt.level_ = "product_type"
    tt.type_names_ = ["camera", "sd_card", "bag", "tripod", "bike", "helmet", "new"]
    tt.item_type_ = _ITEM_TYPE
    tt.known_seed_ = np.array([1, 1, 1, 1, 1, 1, 0], dtype=bool)
    tt.known_type_ = tt.known_seed_.copy()
    tt._set_scores(_P)
    assert tt.threshold_ == pytest.approx(0.2)
    return tt


# col:    0     1     2    3    4    5    6     7    8    9   10   11
_ITEMS = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, 10]])
_SCORES = np.array([[0.99, 0.98, 0.9, 0.8, 0.7, 0.6, 0.95, 0.5, 0.4, 0.3, -np.inf, 0.85]])


def test_handmade_complement_lists() -> None:
    tt = _handmade()
    assert tt.complements_[0].tolist() == [1, 2]
    assert tt.complements_[1].tolist() == [2, 3]
    assert tt.complements_[4].tolist() == [5, -1]
    assert tt.complements_[6].tolist() == [-1, -1]


def test_diversify_exact_order() -> None:
    tt = _handmade()
    out = tt.diversify_rounds(np.array([CAMERA_SEED]), _ITEMS, _SCORES, 12)
    # round 0: sd(2) bag(5); round 1: sd(3); rest by score, capped: untyped(11) tripod(7, 8);
    # held back by the cap: sd(4) tripod(9); demoted by score: camera(0, 1) bike(6); padding
    assert out.tolist() == [[2, 5, 3, 11, 7, 8, 4, 9, 0, 1, 6, -1]]
    assert out.dtype == np.int64
    # a shuffled input gives the same items in the same order
    perm = np.random.default_rng(1).permutation(_ITEMS.shape[1])
    out2 = tt.diversify_rounds(np.array([CAMERA_SEED]), _ITEMS[:, perm], _SCORES[:, perm], 12)
    assert perm[out2[0, :11]].tolist() == out[0, :11].tolist()


def test_diversify_min_types_promotes_other_types() -> None:
    tt = _handmade(min_types=3)
    out = tt.diversify_rounds(np.array([CAMERA_SEED]), _ITEMS, _SCORES, 12)
    # tripod (best other non-demoted type) joins round 0; the untyped item does not count
    assert out.tolist() == [[2, 5, 7, 3, 11, 8, 4, 9, 0, 1, 6, -1]]


def test_diversify_demotes_anchor_for_accessory_seed() -> None:
    tt = _handmade()
    out = tt.diversify_rounds(np.array([SD_SEED]), _ITEMS, _SCORES, 5)
    types = _ITEM_TYPE[_ITEMS[0, out[0]]]
    assert 0 not in types and 1 not in types  # no camera, no other SD card
    assert types[:2].tolist() == [2, 3]  # bag, tripod


def test_diversify_unknown_seed_and_unseen_types() -> None:
    tt = _handmade()
    items = np.array([[0, 1, 2, 14, 3, 4, -1]])
    scores = np.array([[0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.0]])
    # unknown seed: by score, at most 2 per type before others
    out = tt.diversify_rounds(np.array([-1]), items, scores, 7)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5, -1]]
    tt1 = _handmade(max_per_type=1)
    out = tt1.diversify_rounds(np.array([-1]), items, scores, 7)
    assert out.tolist() == [[0, 2, 3, 1, 4, 5, -1]]  # camera, sd, new; then the capped
    # bike seed: helmet is the only complement; type "new" (never seen) is not demoted
    items = np.array([[15, 14, 0, 6]])
    out = tt.diversify_rounds(np.array([BIKE_SEED]), items, np.array([[0.1, 0.2, 0.9, 0.95]]), 4)
    assert out.tolist() == [[0, 1, 3, 2]]  # helmet, new; demoted by score: bike, camera


def test_diversify_shapes_and_errors() -> None:
    tt = _handmade()
    out = tt.diversify_rounds(np.array([CAMERA_SEED]), _ITEMS[:, :3], _SCORES[:, :3], 5)
    assert out.shape == (1, 5) and (out[0, 3:] == -1).all()
    assert tt.diversify_rounds(
        np.zeros(0, np.int64), np.zeros((0, 4), np.int64), np.zeros((0, 4)), 3
    ).shape == (0, 3)
    with pytest.raises(DataError):
        tt.diversify_rounds(np.array([1, 2]), _ITEMS, _SCORES, 3)
    with pytest.raises(ConfigError, match="'k'"):
        tt.diversify_rounds(np.array([1]), _ITEMS, _SCORES, 0)
    with pytest.raises(DataError, match="'items'"):
        tt.diversify_rounds(np.array([1]), _ITEMS.astype(float), _SCORES, 3)


def _reference_checks(tt: TypeTransition, seed: int, items, scores, k: int, out) -> None:  # noqa: ANN001
    cfg = tt.config
    n = len(items)
    valid = items >= 0
    st_ = int(tt.type_of(np.array([seed]))[0])
    ct = np.where(valid, tt.type_of(items), -1)
    sc = np.where(np.isnan(scores), -np.inf, scores)
    picked = [int(c) for c in out if c >= 0]
    # shape, padding at the end, distinct real columns, count
    assert len(out) == k
    assert all(c == -1 for c in out[len(picked) :])
    assert len(set(picked)) == len(picked) and all(0 <= c < n and valid[c] for c in picked)
    assert len(picked) == min(k, int(valid.sum()))
    # tiers
    p = np.full(n, np.nan)
    both = (ct >= 0) & (st_ >= 0)
    p[both] = tt.score_table_[st_, ct[both]]
    demoted = valid & both & ((ct == st_) | (p < tt.threshold_))
    comp = set(tt.complements_[st_].tolist()) - {-1} if st_ >= 0 else set()
    left_out = [c for c in range(n) if valid[c] and c not in picked]
    if any(demoted[c] for c in picked):
        assert all(demoted[c] for c in left_out), "demoted before a non-demoted one"
    # within a type, the list follows the scores
    for t in set(ct[picked].tolist()) - {-1}:
        s = [sc[c] for c in picked if ct[c] == t]
        assert all(x >= y for x, y in zip(s, s[1:], strict=False))
    # the cap: a type over max_per_type only when nothing capped-in of another type is left
    counts = {t: int((ct[picked] == t).sum()) for t in set(ct[picked].tolist()) - {-1}}
    if any(c > cfg.max_per_type for t, c in counts.items() if not demoted[ct == t].any()):
        for c in left_out:
            if not demoted[c]:
                assert ct[c] >= 0 and counts.get(int(ct[c]), 0) >= cfg.max_per_type
    # diversity: the first round spans every available complementary type plus others up
    # to min_types
    avail = {int(t) for t in ct[valid & ~demoted] if t >= 0}
    n_comp = len(avail & comp)
    r0 = n_comp + min(max(cfg.min_types - n_comp, 0), len(avail - comp))
    assert len({int(t) for t in ct[picked] if t >= 0}) >= min(k, r0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(
            st.integers(-1, 15),
            st.lists(
                st.tuples(
                    st.integers(-1, 15),
                    st.one_of(
                        st.floats(-5, 5),
                        st.sampled_from([float("nan"), float("-inf"), 0.5]),
                    ),
                ),
                min_size=1,
                max_size=14,
            ),
        ),
        min_size=1,
        max_size=4,
    ),
    k=st.integers(1, 16),
    cap=st.integers(1, 3),
    min_types=st.integers(1, 5),
    m=st.integers(1, 3),
)
def test_diversify_properties(rows, k: int, cap: int, min_types: int, m: int) -> None:  # noqa: ANN001
    tt = _handmade(max_per_type=cap, min_types=min_types, n_complements=m)
    width = max(len(r[1]) for r in rows)
    seeds = np.array([r[0] for r in rows])
    items = np.full((len(rows), width), -1, dtype=np.int64)
    scores = np.full((len(rows), width), -np.inf)
    for i, (_, cands) in enumerate(rows):
        items[i, : len(cands)] = [c[0] for c in cands]
        scores[i, : len(cands)] = [c[1] for c in cands]
    out = tt.diversify_rounds(seeds, items, scores, k)
    assert out.shape == (len(rows), k)
    for i in range(len(rows)):
        _reference_checks(tt, int(seeds[i]), items[i], scores[i], k, out[i])


def test_diversify_on_trained_model_and_at_scale(ds: Dataset, tt: TypeTransition) -> None:
    sd_seed = _item_of(tt, "sd_card")[0]
    cams = _item_of(tt, "camera", 5)
    others = np.concatenate([_item_of(tt, n, 3) for n in ("tripod", "camera_bag", "lens")])
    items = np.concatenate([cams, others])[None, :]
    scores = np.r_[np.full(5, 10.0), np.arange(9.0)][None, :]
    out = tt.diversify_rounds(np.array([sd_seed]), items, scores, 9)
    top = tt.type_of(items[0, out[0]])
    assert _tid(tt, "camera") not in top.tolist()
    assert len(set(top[:3].tolist())) == 3
    # 10k rows x 100 candidates (its speed is measured by bench/type_transition.py)
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, ds.n_items, 10_000)
    items = rng.integers(-1, ds.n_items, (10_000, 100))
    scores = rng.random((10_000, 100)).astype(np.float32)
    out = tt.diversify_rounds(seeds, items, scores, 10)
    assert out.shape == (10_000, 10)


# --------------------------------------------------------------------------- persistence


def _outputs(tt: TypeTransition, ds: Dataset):  # noqa: ANN202
    rng = np.random.default_rng(3)
    seeds = rng.integers(-1, ds.n_items, 50)
    items = rng.integers(-1, ds.n_items, (50, 30))
    scores = rng.random((50, 30))
    return (
        tt.complement_types(np.arange(-1, tt.n_types)),
        tt.type_scores(seeds, items),
        tt.diversify_rounds(seeds, items, scores, 10),
        tt.score_table_,
    )


def test_save_load_round_trip(tmp_path: Path, ds: Dataset, tt: TypeTransition) -> None:
    d = tmp_path / "tt"
    tt.save(d)
    assert sorted(p.name for p in d.iterdir()) == [
        "type_transition.json",
        "type_transition.npz",
        "weights.pt",
    ]
    back = TypeTransition.load(d, device="cpu")
    assert back.config == tt.config and back.type_names_ == tt.type_names_
    a, b = _outputs(tt, ds), _outputs(back, ds)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[0][1], b[0][1])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    # saving again replaces the directory whole; no temporary directories are left
    back.save(d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tt"]


def test_load_errors(tmp_path: Path, tt: TypeTransition) -> None:
    d = tmp_path / "tt"
    tt.save(d)
    with pytest.raises(DataError, match="missing"):
        TypeTransition.load(tmp_path / "nowhere")
    (d / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="weights.pt"):
        TypeTransition.load(d, device="cpu")
    tt.save(d)
    doc = json.loads((d / "type_transition.json").read_text())
    doc["meta"]["config"]["embedding_size"] = 8
    (d / "type_transition.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="weights.pt"):
        TypeTransition.load(d, device="cpu")
    doc["meta"]["config"]["embedding_size"] = tt.config.embedding_size
    doc["format_version"] = 99
    (d / "type_transition.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="format version"):
        TypeTransition.load(d, device="cpu")
    (d / "type_transition.json").write_text("{")
    with pytest.raises(DataError, match="type_transition.json"):
        TypeTransition.load(d, device="cpu")
    tt.save(d)
    npz = d / "type_transition.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="type_transition.npz"):
        TypeTransition.load(d, device="cpu")
    tt.save(d)
    with np.load(npz, allow_pickle=False) as z:
        arrays = dict(z)
    np.savez(npz, item_type=arrays["item_type"], known_seed=arrays["known_seed"])
    with pytest.raises(DataError, match=r"type_transition\.npz.*known_type"):
        TypeTransition.load(d, device="cpu")
    np.savez(npz, **{**arrays, "item_type": arrays["item_type"][:-1]})
    with pytest.raises(ConfigError, match=r"type_transition\.npz: arrays do not match"):
        TypeTransition.load(d, device="cpu")
    npz.unlink()
    with pytest.raises(DataError, match="type_transition.npz"):
        TypeTransition.load(d, device="cpu")


def test_old_layout_is_refused_with_retrain(tmp_path: Path, tt: TypeTransition) -> None:
    # format version 1 wrote the same file names, its JSON without the artifact kind
    d = tmp_path / "tt"
    tt.save(d)
    doc = json.loads((d / "type_transition.json").read_text())
    (d / "type_transition.json").write_text(json.dumps({"format_version": 1, **doc["meta"]}))
    with pytest.raises(ConfigError, match="older recset.*retrain it with `recset train-neural`"):
        TypeTransition.load(d, device="cpu")


# --------------------------------------------------------------------------- config, data


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        TypeTransitionConfig(epochs=0)
    with pytest.raises(ValidationError):
        TypeTransitionConfig(level="brand")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        TypeTransitionConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="'max_per_type'"):
        TypeTransitionConfig.from_dict({"max_per_type": 0})
    cfg = TypeTransitionConfig.from_dict({"n_complements": 3})
    with pytest.raises(ValidationError):
        cfg.n_complements = 5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="TypeTransitionConfig"):
        TypeTransition({"epochs": 3})  # type: ignore[arg-type]


def test_device_resolution_is_shared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tt: TypeTransition
) -> None:
    from recset.personalization import _type_transition
    from recset.personalization._torch import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _type_transition._resolve_device("auto", "TypeTransitionConfig") == "cpu"
    assert _type_transition._resolve_device("cpu", "TypeTransitionConfig") == "cpu"
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'device' parameter of NeuralConfig is 'cuda'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="'device' parameter of TypeTransitionConfig"):
        _type_transition._resolve_device("cuda", "TypeTransitionConfig")
    with pytest.raises(ConfigError, match=r"one of \['auto', 'cpu', 'cuda'\]. Got 'tpu'"):
        _type_transition._resolve_device("tpu", "TypeTransitionConfig")
    tt.save(tmp_path / "tt")
    with pytest.raises(ConfigError, match="'device' parameter of TypeTransition.load"):
        TypeTransition.load(tmp_path / "tt", device="cuda")


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        TypeTransition().type_of(np.array([0]))
    with pytest.raises(NotFittedError):
        TypeTransition().save(Path("unused"))


def test_data_errors(syn, ds: Dataset) -> None:  # noqa: ANN001
    from recset.signals import Signals

    cat = syn.catalog.copy()
    cat["product_type"] = None
    cat["category_id"] = None
    cat["category_path"] = None
    bare = Dataset.from_frames(cat, syn.events)
    with pytest.raises(DataError, match="product_type or a category_id"):
        train_type_transition(bare, TypeTransitionConfig(device="cpu"))
    cat = syn.catalog.copy()
    cat["product_type"] = None
    no_types = Dataset.from_frames(cat, syn.events)
    with pytest.raises(DataError, match="product_type"):
        train_type_transition(no_types, TypeTransitionConfig(level="product_type", device="cpu"))
    with pytest.raises(DataError, match="another dataset"):
        train_type_transition(ds, signals=Signals(no_types))
    one = pd.DataFrame({"item_id": ["a", "b"], "product_type": ["x", "x"]})
    ev = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["a", "b"],
            "event": ["purchase", "purchase"],
            "timestamp": [1, 2],
            "order_id": ["o", "o"],
        }
    )
    with pytest.raises(DataError, match="no co-purchase"):
        train_type_transition(Dataset.from_frames(one, ev), TypeTransitionConfig(device="cpu"))


def test_category_level_and_strict_signal_fallback(syn) -> None:  # noqa: ANN001
    cat = syn.catalog.copy()
    cat["product_type"] = None
    ds = Dataset.from_frames(cat, syn.events)
    tt = train_type_transition(ds, TypeTransitionConfig(epochs=40, device="cpu", exclude="any"))
    assert tt.level_ == "category"
    assert tt.n_types == ds.n_categories
    # the strict signal drops every anchor -> accessory pair (the anchor was viewed in the
    # same session), so anchor categories fall back to directed co-purchases
    assert tt.stats_["fallback_seed_types"] > 0
    ptype = syn.catalog.set_index("item_id")["product_type"]
    cam_cat = tt.type_of(ds.items.index(ptype.index[ptype == "camera"][:1]))
    acc_cat = tt.type_of(ds.items.index(ptype.index[ptype == "sd_card"][:1]))
    types, _ = tt.complement_types(cam_cat)
    assert types[0, 0] == acc_cat[0]


def test_capped_keeps_score_order_under_the_cap() -> None:
    tt = _handmade()  # strategy "cap" is the default of diversify()
    out = tt.diversify(np.array([CAMERA_SEED]), _ITEMS, _SCORES, 12)
    # by score, at most 2 per type until the other types are used up: the third SD card (4)
    # and third tripod (9) wait; nothing is demoted for a camera seed; padding last
    assert out.tolist() == [[0, 1, 6, 2, 11, 3, 5, 7, 8, 4, 9, -1]]


def test_capped_demotes_the_reverse_of_an_asymmetric_pair() -> None:
    tt = _handmade(demote_reverse=True)
    out = tt.diversify(np.array([SD_SEED]), _ITEMS, _SCORES, 5)
    # cameras (P(camera | sd) = 0.05 below chance, P(sd | camera) = 0.30 above) go last
    assert out.tolist() == [[6, 2, 11, 3, 5]]
    full = tt.diversify(np.array([SD_SEED]), _ITEMS, _SCORES, 12)
    assert full[0, -3:].tolist() == [0, 1, -1]
    keep = _handmade().diversify(np.array([SD_SEED]), _ITEMS, _SCORES, 3)  # default: off
    assert keep.tolist() == [[0, 1, 6]]


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(-1, 15), min_size=n, max_size=n),
            st.lists(st.floats(-5, 5), min_size=n, max_size=n),
            st.integers(1, n),
            st.sampled_from([CAMERA_SEED, SD_SEED, BIKE_SEED, -1]),
        )
    )
)
def test_capped_properties(case: tuple) -> None:
    items_l, scores_l, k, seed = case
    tt = _handmade()
    items = np.array([items_l])
    scores = np.where(items >= 0, np.array([scores_l]), -np.inf)
    out = tt.diversify(np.array([seed]), items, scores, k)[0]
    real = out[out >= 0]
    assert len(set(real.tolist())) == len(real)  # no column twice
    assert (items[0, real] >= 0).all()  # never padding
    assert len(real) == min(k, int((items >= 0).sum()))  # as many as the row has
    assert (out[len(real) :] == -1).all()
