"""The ranker-feature registry: plug-in features, lookups, and FeatureSpace save / load."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np
import pytest
import scipy.sparse as sparse

from recset.data import PURCHASE, Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.errors import ConfigError
from recset.ranking import (
    BASE_FEATURES,
    FEATURES,
    USER_HISTORY,
    FeatureBatch,
    FeatureSpace,
    FitContext,
    RankerFeature,
    default_features,
    feature_names,
    get_feature,
    ranking_candidates,
    register_feature,
)
from recset.signals import pair_lookup

TOY = "toy_user_cand"

# the column order of the built-ins before the registry: a reorder changes trained models
_COLUMN_ORDER = (
    "n_sources",
    "fused_score",
    "fused_rank",
    "cand_pop",
    "cand_pop_log",
    "cand_pop_in_category",
    "cand_trend",
    "cand_repeat_rate",
    "seed_pop_log",
    "category_relatedness",
    "same_brand",
    "same_category",
    "same_type",
    "price_ratio_log",
    "text_similarity",
    "compatible",
    "cand_age_days",
    "user_bought_cand",
    "user_days_since_cand",
    "user_trips_since_cand",
    "user_cand_trip_share",
    "user_category_share",
    "user_brand_share",
    "user_aspect_share",
    "user_n_purchases_log",
    "user_n_trips_log",
    "hist_copurchase",
    "cand_first_share",
)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=300, seed=11))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def engine(ds: Dataset) -> Engine:
    return Engine.build(ds, precompute=False)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made in the test are undone afterwards."""
    with FEATURES.isolated():  # built-ins and installed plug-ins are kept
        yield


@pytest.fixture
def toy(clean_registry: None) -> type[RankerFeature]:
    @register_feature(TOY)
    class ToyUserCand(RankerFeature):
        """2 * candidate + the user's purchases; NaN for an unknown user."""

        _state = ("double_", "user_n_")

        def fit(self, data: FitContext) -> Self:
            self.double_ = 2.0 * np.arange(data.n_items)
            self.user_n_ = data.user_n  # shared with user_n_purchases_log: stored once
            return self

        def transform(self, batch: FeatureBatch) -> np.ndarray:
            return np.where(batch.u_ok, self.double_[batch.c] + self.user_n_[batch.uu], np.nan)

    return ToyUserCand


def _fit(ds: Dataset, engine: Engine, **kw: object) -> FeatureSpace:
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((ds.n_items, 3)).astype(np.float32)
    n_cat = ds.n_categories
    rel = sparse.random(n_cat, n_cat, density=0.4, random_state=2, format="csr")
    return FeatureSpace.fit(ds, engine.source_names, embeddings=emb, category_relatedness=rel, **kw)


def _batch(ds: Dataset, engine: Engine, feats: FeatureSpace) -> tuple:
    rng = np.random.default_rng(3)
    seeds = rng.integers(0, ds.n_items, 20).astype(np.int32)
    users = rng.integers(0, ds.n_users, 20).astype(np.int32)
    users[:3] = -1
    mixed = ranking_candidates(
        engine.mixer.top(seeds, 12), feats, seeds, users, engine.mixer.available
    )
    return seeds, users, mixed


def test_builtin_column_order_is_unchanged() -> None:
    assert BASE_FEATURES == _COLUMN_ORDER
    assert feature_names(("a", "b")) == ["a__score", "a__rank", "b__score", "b__rank"] + list(
        _COLUMN_ORDER
    )
    assert all(get_feature(n).name == n for n in BASE_FEATURES)


def test_plugin_feature_is_computed_saved_and_loaded(
    ds: Dataset, engine: Engine, toy: type[RankerFeature], tmp_path: Path
) -> None:
    assert TOY not in default_features()  # plug-ins are not defaults
    feats = _fit(ds, engine, user_candidates=5, extra_features=(TOY,))
    assert feats.names == feature_names(feats.sources) + [TOY]
    assert feats.sources[-1] == USER_HISTORY
    seeds, users, mixed = _batch(ds, engine, feats)
    X = feats.transform(seeds, users, mixed)
    u = np.repeat(users, mixed.item.shape[1])
    cand = mixed.item.ravel()
    user_n = np.bincount(ds.events.user[ds.events.event == PURCHASE], minlength=ds.n_users)
    ok = (cand >= 0) & (u >= 0)
    want = 2.0 * cand[ok] + user_n[u[ok]]
    assert np.array_equal(X[ok, -1], want.astype(np.float32))
    assert np.isnan(X[(cand >= 0) & (u < 0), -1]).all()
    feats.save(tmp_path / "f")
    meta = json.loads((tmp_path / "f" / "ranker_features.json").read_text())
    assert meta["meta"]["features"][-1] == TOY
    assert meta["meta"]["aliases"][f"{TOY}.user_n_"] == "user_n_purchases_log.user_n_"
    again = FeatureSpace.load(tmp_path / "f")
    assert isinstance(again.features[-1], toy)
    assert again.names == feats.names
    assert np.array_equal(again.transform(seeds, users, mixed), X, equal_nan=True)


def test_unloadable_plugin_after_unregistering(ds: Dataset, engine: Engine, tmp_path: Path) -> None:
    with FEATURES.isolated():

        @register_feature(TOY)
        class Toy(RankerFeature):
            def transform(self, batch: FeatureBatch) -> np.ndarray:
                return batch.nan()

        feats = _fit(ds, engine, extra_features=(TOY,))
        feats.save(tmp_path / "f")
    # the plug-in is gone
    with pytest.raises(ConfigError, match=rf"{TOY}.*does not register.*recset train-ranker"):
        FeatureSpace.load(tmp_path / "f")


def test_duplicate_registration_raises(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_feature("cand_pop")
        class Other(RankerFeature):
            def transform(self, batch: FeatureBatch) -> np.ndarray:
                return batch.nan()

    with pytest.raises(ValueError, match="must match"):
        register_feature("Bad__Name")
    assert get_feature("cand_pop").__name__ == "CandPop"


def test_unknown_feature_lists_known_names(ds: Dataset, engine: Engine) -> None:
    with pytest.raises(ConfigError, match=r"unknown ranker feature 'nope'.*cand_pop"):
        get_feature("nope")
    with pytest.raises(ConfigError, match="known features"):
        FeatureSpace.fit(ds, engine.source_names, extra_features=("nope",))
    with pytest.raises(ConfigError, match="twice"):
        FeatureSpace.fit(ds, engine.source_names, extra_features=("cand_pop",))


def test_save_load_round_trip(ds: Dataset, engine: Engine, tmp_path: Path) -> None:
    feats = _fit(ds, engine, user_candidates=5)
    seeds, users, mixed = _batch(ds, engine, feats)
    X = feats.transform(seeds, users, mixed)
    feats.save(tmp_path / "f")
    again = FeatureSpace.load(tmp_path / "f")
    assert again.sources == feats.sources and again.names == feats.names
    assert np.array_equal(again.user_top, feats.user_top)
    assert np.array_equal(again.user_top_count, feats.user_top_count)
    assert np.array_equal(again.transform(seeds, users, mixed), X, equal_nan=True)
    items = mixed.item[:, :6]
    assert np.array_equal(again.bought(users, items), feats.bought(users, items))
    # the purchase table, read by several features, is stored once and shared again
    with np.load(tmp_path / "f" / "ranker_features.npz") as z:
        stored = set(z.files)
    assert sum(k.endswith(".ui_keys_") or k.endswith(".ui_keys") for k in stored) == 1
    keys = {id(f.ui_keys_) for f in again.features if hasattr(f, "ui_keys_")}
    assert len(keys) == 1 and id(again.ui_keys) in keys
    again.save(tmp_path / "g")  # a loaded space saves to the same arrays
    with np.load(tmp_path / "g" / "ranker_features.npz") as z:
        assert set(z.files) == stored


def test_damaged_or_foreign_feature_directory_is_refused(
    ds: Dataset, engine: Engine, tmp_path: Path
) -> None:
    feats = _fit(ds, engine)
    d = tmp_path / "f"
    feats.save(d)
    doc_path = d / "ranker_features.json"
    doc = json.loads(doc_path.read_text())
    # an array missing (e.g. a feature whose state grew since the file was written)
    with np.load(d / "ranker_features.npz") as z:
        kept = {k: z[k] for k in z.files if k != "user_aspect_share.ut_share_"}
    np.savez(d / "ranker_features.npz", allow_pickle=False, **kept)
    doc["arrays"] = sorted(kept)
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"ut_share_.*recset train-ranker"):
        FeatureSpace.load(d)
    # a feature this recset does not register
    feats.save(d)
    doc = json.loads(doc_path.read_text())
    doc["meta"]["features"][0] = "renamed_feature"
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"renamed_feature.*recset train-ranker"):
        FeatureSpace.load(d)
    # another format version
    feats.save(d)
    doc = json.loads(doc_path.read_text())
    doc["format_version"] = 0
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"version 0.*recset train-ranker"):
        FeatureSpace.load(d)
    # nothing there at all
    with pytest.raises(ConfigError, match=r"missing.*recset train-ranker"):
        FeatureSpace.load(tmp_path / "none")


def test_mismatched_sources_are_refused(ds: Dataset, engine: Engine) -> None:
    feats = _fit(ds, engine, user_candidates=5)
    mixed = engine.mixer.top(np.array([1, 2], np.int32), 5)  # no user_history source
    with pytest.raises(ValueError, match="the features expect"):
        feats.transform(np.array([1, 2]), np.array([0, 1]), mixed)


def test_pair_lookup() -> None:
    keys = np.array([3, 7, 10], np.int64)
    vals = np.array([0.5, 1.5, 2.5])
    got = pair_lookup(keys, vals, np.array([7, 0, 10, 11, 3], np.int64))
    assert np.array_equal(got, [1.5, np.nan, 2.5, np.nan, 0.5], equal_nan=True)
    empty = pair_lookup(np.zeros(0, np.int64), np.zeros(0), np.array([1, 2], np.int64))
    assert np.isnan(empty).all()


def test_without_personal_features(ds: Dataset, engine: Engine, toy: type[RankerFeature]) -> None:
    feats = _fit(ds, engine, user_candidates=5, personal_features=False)
    assert USER_HISTORY not in feats.sources  # user_candidates is ignored
    dropped = [n for n in BASE_FEATURES if n not in feats.feature_list]
    assert dropped == [n for n in BASE_FEATURES if n.startswith("user_")] + ["hist_copurchase"]
    assert not any(f.personal for f in feats.features)
    seeds, users, mixed = _batch(ds, engine, feats)
    X = feats.transform(seeds, users, mixed)
    anonymous = feats.transform(seeds, np.full_like(users, -1), mixed)
    np.testing.assert_array_equal(X, anonymous)  # nothing read from the user
    assert _fit(ds, engine, personal_features=True).feature_list == BASE_FEATURES
    toy.personal = True
    with pytest.raises(ConfigError, match=rf"\['{TOY}'\] read the user"):
        _fit(ds, engine, extra_features=(TOY,), personal_features=False)


def test_group_keys_agree_when_the_last_category_and_brand_have_no_item(engine: Engine) -> None:
    """Fit and transform key (user, category) and (category, category) pairs with the same
    multiplier even when the vocabulary is longer than the largest code in use."""
    syn = generate(SyntheticConfig(n_items=300, seed=11))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    cat, br = ds.catalog.category, ds.catalog.brand
    cat[cat == ds.n_categories - 1] = 0  # the vocabulary keeps a category no item has
    br[br == len(ds.brands) - 1] = 0
    assert cat.max() + 1 < ds.n_categories and br.max() + 1 < len(ds.brands)
    n_cat = ds.n_categories
    rel = sparse.random(n_cat, n_cat, density=0.4, random_state=2, format="csr")
    feats = FeatureSpace.fit(ds, engine.source_names, category_relatedness=rel)
    seeds, users, mixed = _batch(ds, engine, feats)
    X = feats.transform(seeds, users, mixed)
    col = {n: X[:, feats.names.index(n)] for n in feats.names}
    ev = ds.events
    buy = ev.event == PURCHASE
    dense = rel.toarray()
    for r, (s, u) in enumerate(zip(seeds, users, strict=True)):
        mine = ev.item[buy & (ev.user == u)]
        for j, c in enumerate(mixed.item[r]):
            if c < 0:
                continue
            i = r * mixed.item.shape[1] + j
            want_rel = dense[cat[s], cat[c]] if cat[s] >= 0 and cat[c] >= 0 else np.nan
            got_rel = col["category_relatedness"][i]
            assert (np.isnan(got_rel) and (np.isnan(want_rel) or want_rel == 0)) or np.isclose(
                got_rel, want_rel
            ), (r, j)
            if u >= 0 and len(mine) and cat[c] >= 0:
                share = (cat[mine] == cat[c]).mean()
                assert np.isclose(col["user_category_share"][i], share), (r, j)
            if u >= 0 and len(mine) and br[c] >= 0:
                share = (br[mine] == br[c]).mean()
                assert np.isclose(col["user_brand_share"][i], share), (r, j)


_ITEM_ONLY = (
    "cand_pop",
    "cand_pop_log",
    "cand_pop_in_category",
    "cand_trend",
    "cand_repeat_rate",
    "cand_age_days",
    "cand_first_share",
)


def _columns_one_by_one(feats: FeatureSpace, seeds, users, mixed) -> np.ndarray:  # noqa: ANN001
    """The feature matrix with every column computed by its own ``transform``."""
    batch = FeatureBatch(seeds, users, mixed, n_items=feats.n_items, n_users=feats.n_users)
    X = np.column_stack([np.asarray(c.transform(batch)) for c in feats.columns])
    X = X.astype(np.float32)
    X[~batch.valid] = np.nan
    return X


def test_item_table_holds_the_item_only_columns(
    ds: Dataset, engine: Engine, tmp_path: Path
) -> None:
    feats = _fit(ds, engine, user_candidates=5)
    names = [feats.names[j] for j in feats.item_columns]
    assert names == list(_ITEM_ONLY)  # seed_pop_log (the seed's popularity) is not one
    assert feats.item_table.shape == (ds.n_items, len(_ITEM_ONLY))
    assert feats.item_table.dtype == np.float32 and feats.item_table.flags.c_contiguous
    items = np.arange(ds.n_items)
    for k, name in enumerate(names):
        want = np.asarray(feats.feature(name).item_values(), np.float32)
        np.testing.assert_array_equal(feats.item_table[:, k], want)
    assert np.isnan(feats.item_table[:, names.index("cand_first_share")]).any()
    assert not np.array_equal(feats.item_table[:, 0], feats.item_table[items % 7, 0])
    seeds, users, mixed = _batch(ds, engine, feats)
    seeds[:2] = [-1, ds.n_items + 5]  # unknown seeds
    X = feats.transform(seeds, users, mixed)
    ref = _columns_one_by_one(feats, seeds, users, mixed)
    assert np.array_equal(X.view(np.uint32), ref.view(np.uint32))  # bit for bit
    # built again at load (never saved), from the loaded features: the same table
    feats.save(tmp_path / "f")
    with np.load(tmp_path / "f" / "ranker_features.npz") as z:
        assert not any("item_table" in k for k in z.files)
    again = FeatureSpace.load(tmp_path / "f")
    assert again.item_columns == feats.item_columns
    assert np.array_equal(again.item_table.view(np.uint32), feats.item_table.view(np.uint32))
    got = again.transform(seeds, users, mixed)
    assert np.array_equal(got.view(np.uint32), X.view(np.uint32))


def test_plugin_item_values_join_the_table(
    ds: Dataset, engine: Engine, clean_registry: None
) -> None:
    @register_feature("toy_cand_double")
    class ToyCandDouble(RankerFeature):
        """2 * the candidate's index, declared item-only."""

        def transform(self, batch: FeatureBatch) -> np.ndarray:
            return 2.0 * batch.c

        def item_values(self) -> np.ndarray:
            return 2.0 * np.arange(self.n_items_)

        def fit(self, data: FitContext) -> Self:
            self.n_items_ = data.n_items
            return self

    feats = _fit(ds, engine, extra_features=("toy_cand_double",))
    j = feats.names.index("toy_cand_double")
    assert j in feats.item_columns
    seeds, users, mixed = _batch(ds, engine, feats)
    X = feats.transform(seeds, users, mixed)
    ok = mixed.item.ravel() >= 0
    np.testing.assert_array_equal(X[ok, j], 2.0 * mixed.item.ravel()[ok])
    assert np.isnan(X[~ok, j]).all()

    ToyCandDouble.item_values = lambda self: np.zeros(3)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"'toy_cand_double'.*shape \(3,\).*one value per item"):
        _fit(ds, engine, extra_features=("toy_cand_double",))


def test_aspect_share_padded_tokens_equal_the_token_lists(
    ds: Dataset, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recset.ranking import _builtin_features

    def without_tokens_of_every_fifth_item(feats: FeatureSpace) -> FeatureSpace:
        f = feats.feature("user_aspect_share")
        counts = np.diff(f.item_tok_indptr_)
        counts[::5] = 0
        keep = np.repeat(np.arange(len(counts)) % 5 != 0, np.diff(f.item_tok_indptr_))
        f.item_tok_ = f.item_tok_[keep]
        f.item_tok_indptr_ = np.concatenate([[0], np.cumsum(counts)])
        return feats

    padded = without_tokens_of_every_fifth_item(_fit(ds, engine, user_candidates=5))
    counts = np.diff(padded.feature("user_aspect_share").item_tok_indptr_)
    assert counts.min() == 0 and counts.max() >= 2  # items without tokens and with several
    seeds, users, mixed = _batch(ds, engine, padded)
    X = padded.transform(seeds, users, mixed)
    assert padded.feature("user_aspect_share")._padded is not None
    monkeypatch.setattr(_builtin_features, "_PADDED_TOKENS", 1)  # too few: the token lists
    lists = without_tokens_of_every_fifth_item(_fit(ds, engine, user_candidates=5))
    assert lists.feature("user_aspect_share")._padded is None
    j = padded.names.index("user_aspect_share")
    col = lists.transform(seeds, users, mixed)[:, j]
    assert np.isfinite(col).sum() > 10 and (col > 0).any()
    item = mixed.item.ravel()
    known = np.repeat(users >= 0, mixed.item.shape[1])
    no_tokens = known & (item >= 0) & (item % 5 == 0)
    assert no_tokens.any() and np.isnan(col[no_tokens]).all()
    assert np.array_equal(X[:, j].view(np.uint32), col.view(np.uint32))
