"""Recall sets against the generator's planted truth, and the mixer's per-category config."""

import json

import numpy as np
import pytest

from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.recall import registered_recall_sets
from recset.signals import Signals


@pytest.fixture(scope="module")
def syn():  # noqa: ANN201
    return generate(SyntheticConfig(n_items=3000, seed=11))


@pytest.fixture(scope="module")
def ds(syn) -> Dataset:  # noqa: ANN001
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def engine(ds: Dataset) -> Engine:
    return Engine.build(ds)


def _type(ds: Dataset, i: int) -> str | None:
    t = ds.catalog.product_type[i]
    return None if t < 0 else ds.product_types.id_of(int(t))


def test_related_categories_recover_planted(syn, ds: Dataset) -> None:  # noqa: ANN001
    from recset.recall.related_categories import RelatedCategories

    rc = RelatedCategories().fit(ds)
    truth = syn.truth
    precisions = []
    for c in range(ds.n_categories):
        cid = ds.categories.id_of(c)
        planted = {
            truth["type_category"][ct]
            for t in truth["categories"][cid]
            for ct in truth["complementary_types"].get(t, [])
        }
        if not planted:
            continue
        got = [ds.categories.id_of(int(x)) for x in rc.related_[c][:5] if x >= 0]
        precisions.append(sum(g in planted for g in got) / max(len(got), 1))
    assert np.mean(precisions) >= 0.8, precisions


@pytest.mark.parametrize("exclude", ["any", "substitution"])
def test_co_purchase_only_never_returns_coviewed_pairs(ds: Dataset, exclude: str) -> None:
    from recset.recall.co_purchase_only import CoPurchaseOnlyConfig, CoPurchaseOnlyRecall

    sig = Signals(ds)
    src = CoPurchaseOnlyRecall(CoPurchaseOnlyConfig(exclude=exclude)).fit(ds, sig)
    cands = src.recall_many(np.arange(ds.n_items, dtype=np.int32), 100)
    seeds = np.repeat(np.arange(ds.n_items), cands.item.shape[1])
    items = cands.item.ravel()
    ok = items >= 0
    seeds, items = seeds[ok], items[ok]
    assert len(items) > 100
    if exclude == "any":
        views = (sig.co_view, sig.purchase_after_view, sig.purchase_after_view.T.tocsr())
    else:
        co_view, pav = sig.substitution_views
        views = (co_view, pav, pav.T.tocsr())
    for m in views:
        assert not np.asarray(m[seeds, items]).any()


def test_co_purchase_only_is_directed(syn, ds: Dataset) -> None:  # noqa: ANN001
    from recset.recall.co_purchase_only import CoPurchaseOnlyRecall

    src = CoPurchaseOnlyRecall().fit(ds)
    comp = syn.truth["complementary_types"]
    forward = backward = 0
    cands = src.recall_many(np.arange(ds.n_items, dtype=np.int32), 20)
    for s in range(ds.n_items):
        st = _type(ds, s)
        for c in cands.item[s][cands.item[s] >= 0].tolist():
            ct = _type(ds, c)
            forward += ct in comp.get(st, [])
            backward += st in comp.get(ct, [])
    assert forward > 3 * max(backward, 1), (forward, backward)


def test_compatibility_filter_blocks_incompatible(ds: Dataset, engine: Engine) -> None:
    aspects = [json.loads(a) if a else {} for a in ds.catalog.aspects]
    checked = 0
    for s in range(0, ds.n_items, 3):
        seed_asp = aspects[s]
        recs = engine.recommend(ds.items.id_of(s), k=20)
        for r in recs:
            cand = aspects[ds.items.index_one(r.item_id)]
            if "model" in seed_asp and "compatible_model" in cand:
                assert cand["compatible_model"] == seed_asp["model"], (s, r.item_id)
                checked += 1
            if "compatible_model" in seed_asp and "compatible_model" in cand:
                assert cand["compatible_model"] == seed_asp["compatible_model"]
            if "compatible_model" in seed_asp and "model" in cand:
                assert cand["model"] == seed_asp["compatible_model"]
    assert checked > 50


def test_substitutes_dropped_for_anchor_seeds(syn, ds: Dataset, engine: Engine) -> None:  # noqa: ANN001
    anchors = set(syn.truth["anchor_types"])
    n = 0
    for s in range(ds.n_items):
        st = _type(ds, s)
        if st not in anchors:
            continue
        types = [
            _type(ds, ds.items.index_one(r.item_id))
            for r in engine.recommend(ds.items.id_of(s), k=10)
        ]
        assert st not in types
        n += 1
    assert n > 20


def test_unavailable_never_served_and_lists_stay_full(ds: Dataset, engine: Engine) -> None:
    unavailable = set(ds.items.ids(np.flatnonzero(~ds.catalog.available)).tolist())
    assert unavailable
    for s in range(0, ds.n_items, 7):
        recs = engine.recommend(ds.items.id_of(s), k=10)
        assert len(recs) == 10
        assert not {r.item_id for r in recs} & unavailable


def test_category_override_changes_mix_exactly(ds: Dataset) -> None:
    path = str(ds.catalog.category_path[0])
    prefix = path.split(" > ")[0]
    cfg = config_from_dict(
        {
            "categories": {
                prefix: {"sources": ["co_view", "popular"], "filters": [], "fusion": "sequential"},
                path: {"weights": {"popular": 0.0}, "sources": ["co_purchase", "popular"]},
            }
        }
    )
    e = Engine.build(ds, cfg)
    paths = ds.catalog.category_path[ds.catalog.category]
    exact = int(np.flatnonzero(ds.catalog.category == 0)[0])
    in_prefix = [
        i for i in range(ds.n_items) if paths[i].startswith(prefix + " > ") and paths[i] != path
    ]
    outside = [i for i in range(ds.n_items) if not paths[i].startswith(prefix)]
    info = e.explain(ds.items.id_of(exact))
    assert info["mix"]["category_override"] == path  # most specific wins
    assert info["mix"]["sources"] == ["co_purchase", "popular"]
    # overrides merge over the default mix, not over each other
    assert info["mix"]["fusion"] == "rrf" and info["mix"]["weights"] == {"popular": 0.0}
    for c in info["candidates"]:
        assert {r["source"] for r in c["reasons"]} <= {"co_purchase", "popular"}
    info = e.explain(ds.items.id_of(in_prefix[0]))
    assert info["mix"]["category_override"] == prefix and info["mix"]["filters"] == []
    for c in info["candidates"]:
        assert {r["source"] for r in c["reasons"]} <= {"co_view", "popular"}
    info = e.explain(ds.items.id_of(outside[0]))
    assert info["mix"]["category_override"] is None
    assert info["mix"]["sources"] == list(config_from_dict({}).mix.sources)


def test_every_candidate_keeps_every_source_reason(ds: Dataset, engine: Engine) -> None:
    seeds = np.arange(0, ds.n_items, 97, dtype=np.int32)
    mixed = engine.mixer.mix(seeds, 50)  # each source asked for its top 50 (the limit)
    checked = 0
    for j, name in enumerate(mixed.sources):
        own = engine.mixer.sources[name].recall_many(seeds, 50)
        for r in range(len(seeds)):
            ranks = {int(i): p for p, i in enumerate(own.item[r]) if i >= 0}
            for p, item in enumerate(mixed.item[r].tolist()):
                if item < 0:
                    continue
                if item in ranks:  # the source proposed it: its score and rank are kept
                    assert mixed.source_rank[r, p, j] == ranks[item]
                    assert own.score[r, ranks[item]] == pytest.approx(mixed.source_score[r, p, j])
                    checked += 1
                else:
                    assert mixed.source_rank[r, p, j] == -1
                    assert np.isnan(mixed.source_score[r, p, j])
    assert checked > 100


def test_registry_contract(ds: Dataset, engine: Engine, tmp_path) -> None:  # noqa: ANN001
    """Every registered source: fitted, padded rows, no seed, no repeats, save/load equal."""
    from recset.errors import NotFittedError

    seeds = np.r_[np.arange(0, ds.n_items, 50), -1].astype(np.int32)
    for name, cls in registered_recall_sets().items():
        with pytest.raises(NotFittedError):
            cls().recall_many(seeds, 5)
        src = engine.mixer.sources.get(name)
        if src is None:
            src = cls().fit(ds, fitted=engine.mixer.sources)
        c = src.recall_many(seeds, 15)
        assert c.item.shape == (len(seeds), 15) and c.item.dtype == np.int32
        if name == "popular":  # the fallback answers every seed, unknown ones too
            assert (c.item[-1] >= 0).all()
        else:
            assert (c.item[-1] == -1).all()  # the unknown seed
        for r in range(len(seeds)):
            real = c.item[r][c.item[r] >= 0]
            assert (c.item[r][len(real) :] == -1).all() and np.isinf(c.score[r][len(real) :]).all()
            assert seeds[r] not in real and len(np.unique(real)) == len(real)
        src.save(tmp_path / name)
        again = type(src).load(tmp_path / name)
        c2 = again.recall_many(seeds, 15)
        assert np.array_equal(c.item, c2.item) and np.allclose(c.score, c2.score)
        assert type(src.config).model_validate(src.config.model_dump()) == src.config
