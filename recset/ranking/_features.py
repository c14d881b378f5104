"""The ranker's feature space: per-source columns, then the registered features.

:class:`FeatureSpace` is fitted on a training :class:`~recset.data.Dataset` and turns the
mixer's candidates (``item``, ``score``, ``source_score``, ``source_rank``, ``sources``) into
a feature matrix. Its columns are the per-source score and rank of each source, then the
built-in features of :mod:`recset.ranking._builtin_features` in their registration order
(:data:`BASE_FEATURES`), then any plug-in features asked for by name. Missing values are
NaN, never 0: LightGBM learns what absence means.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import MAX_ASPECT_TOKENS, Dataset, Promotions, aspect_tokens, promotion_steps
from recset.errors import ConfigError, StorageError
from recset.pipeline import Candidates
from recset.ranking import (
    _builtin_features,  # noqa: F401  (registers the built-in features)
    _calendar_features,  # noqa: F401  (opt-in: the promotion calendar)
    _discover_features,  # noqa: F401  (after them: history features)
)
from recset.ranking._feature_base import (
    FeatureBatch,
    FitContext,
    RankerFeature,
    default_features,
    get_feature,
)
from recset.signals import pair_lookup
from recset.storage import read_state, write_state

__all__ = [
    "BASE_FEATURES",
    "MAX_ASPECT_TOKENS",
    "USER_HISTORY",
    "FeatureSpace",
    "SourceRank",
    "SourceScore",
    "aspect_tokens",
    "feature_names",
]

_log = logging.getLogger(__name__)

USER_HISTORY = "user_history"
"""Pseudo-source of the candidates taken from the user's own purchase history."""

FEATURES_KIND = "ranker_features"
"""The :func:`~recset.storage.write_state` kind of a saved :class:`FeatureSpace`."""

FEATURES_FORMAT = 1
"""Format version of a saved :class:`FeatureSpace` (bump when the layout changes)."""

_SPACE = "_space"
"""Owner prefix of the feature space's own arrays in a saved state (not a feature name)."""

_RETRAIN = "retrain the ranker with `recset train-ranker`"

BASE_FEATURES: tuple[str, ...] = default_features()
"""The built-in features, in column order (after the per-source columns)."""


def feature_names(sources: Sequence[str], features: Sequence[str] | None = None) -> list[str]:
    """The column names for a mix with these sources: per-source score and rank first, then
    ``features`` (default: the built-ins, :data:`BASE_FEATURES`)."""
    per_source = [f"{s}__{kind}" for s in sources for kind in ("score", "rank")]
    return per_source + list(BASE_FEATURES if features is None else features)


class SourceScore:
    """The score a source gave the candidate (NaN where it did not propose it)."""

    def __init__(self, source: str, position: int) -> None:
        self.source, self.position = source, position
        self.name = f"{source}__score"

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return batch.source_score[:, self.position].astype(np.float64)


class SourceRank:
    """The candidate's rank in a source (NaN where it did not propose it)."""

    def __init__(self, source: str, position: int) -> None:
        self.source, self.position = source, position
        self.name = f"{source}__rank"

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        rank = batch.source_rank[:, self.position].astype(np.float64)
        rank[rank < 0] = np.nan
        return rank


def _user_top(data: FitContext, k: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Each user's ``k`` most-bought items (count, then recency) and their purchase counts."""
    n_items, n_users = data.n_items, data.n_users
    if k > 0 and len(data.ui_keys):
        t0, t1 = data.dataset.time_range
        recency = (data.ui_last - t0) / max(t1 - t0, 1)
        hist = sp.csr_matrix(
            (data.ui_count + 0.5 * recency, (data.ui_keys // n_items, data.ui_keys % n_items)),
            shape=(n_users, n_items),
        )
        from recset.signals import topk_rows

        user_top, top_val = topk_rows(hist, k, min_value=1e-12)
        user_top_count = np.floor(np.where(user_top >= 0, top_val, 0)).astype(np.float32)
        return user_top.astype(np.int32), user_top_count
    return np.full((n_users, 0), -1, np.int32), np.zeros((n_users, 0), np.float32)


class FeatureSpace:
    """Fitted ranker features: the per-source columns, then one column per feature object.

    Build with :meth:`fit`; persist with :meth:`save` / :meth:`load` (a
    :func:`~recset.storage.write_state` directory, no pickle).

    Attributes
    ----------
    sources : tuple of str
        The sources whose candidates the features read (``user_history`` last when the
        users' histories are kept).
    features : tuple of RankerFeature
        The fitted features, in column order (after the per-source columns).
    n_items, n_users : int
        Sizes of the fitted data.
    user_top, user_top_count : ndarray, shape (n_users, k)
        Each user's most-bought items (padded with -1) and their purchase counts.
    item_table : ndarray of float32, shape (n_items, len(item_columns))
        The columns of the features that read the candidate alone
        (:meth:`RankerFeature.item_values`: popularity, trend, repeat rate, age, ...), one
        contiguous row per item, built from the fitted (or loaded) features, never saved.
    item_columns : tuple of int
        Their positions in the feature matrix.
    """

    _state = ("user_top", "user_top_count", "ui_keys", "ui_count")

    def __init__(
        self,
        sources: Sequence[str],
        features: Sequence[RankerFeature],
        *,
        n_items: int,
        n_users: int,
        user_top: NDArray[np.int32],
        user_top_count: NDArray[np.float32],
        ui_keys: NDArray[np.int64],
        ui_count: NDArray[np.float64],
    ) -> None:
        self.sources = tuple(sources)
        self.features = tuple(features)
        self.n_items, self.n_users = int(n_items), int(n_users)
        self.user_top, self.user_top_count = user_top, user_top_count
        self.ui_keys, self.ui_count = ui_keys, ui_count
        self.columns: tuple[Any, ...] = (
            *(
                col
                for j, src in enumerate(self.sources)
                for col in (SourceScore(src, j), SourceRank(src, j))
            ),
            *self.features,
        )
        self._item_table()

    def _item_table(self) -> None:
        """Stack the item-only columns (:meth:`RankerFeature.item_values`) into
        :attr:`item_table`, so that a call reads them with one gather (one stretch of memory
        per candidate, not one array per feature); the others stay per call."""
        n_src = 2 * len(self.sources)
        rows: list[int] = []
        values: list[NDArray[Any]] = []
        per_call: list[tuple[int, RankerFeature]] = []
        for j, feat in enumerate(self.features, start=n_src):
            v = feat.item_values()
            if v is None:
                per_call.append((j, feat))
                continue
            v = np.asarray(v)
            if v.shape != (self.n_items,):
                raise ValueError(
                    f"ranker feature {feat.name!r}: item_values() returned shape {v.shape}, "
                    f"expected ({self.n_items},) (one value per item)"
                )
            rows.append(j)
            values.append(v)
        self.item_columns: tuple[int, ...] = tuple(rows)
        # float32 as in the feature matrix: the same cast the per-call path applies
        self.item_table: NDArray[np.float32] = np.ascontiguousarray(
            np.stack(values, axis=1) if values else np.zeros((self.n_items, 0)),
            dtype=np.float32,
        )
        self._per_call = tuple(per_call)

    def __repr__(self) -> str:
        return f"FeatureSpace(sources={self.sources}, features={[f.name for f in self.features]})"

    @property
    def names(self) -> list[str]:
        """The column names: per-source score and rank, then the features."""
        return [col.name for col in self.columns]

    @property
    def feature_list(self) -> tuple[str, ...]:
        """Names of the features (without the per-source columns)."""
        return tuple(f.name for f in self.features)

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        sources: tuple[str, ...],
        *,
        embeddings: NDArray[np.float32] | None = None,
        category_relatedness: sp.csr_matrix | None = None,
        compat_codes: tuple[NDArray[np.int32], NDArray[np.int32]] | None = None,
        trend_half_life_days: float = 14.0,
        user_candidates: int = 0,
        extra_features: Sequence[str] = (),
        personal_features: bool = True,
    ) -> FeatureSpace:
        """Fit every built-in feature (and the ``extra_features`` plug-ins) on ``dataset``.

        With ``user_candidates > 0`` each user's most-bought items (count, then recency) are
        kept too: :func:`ranking_candidates` adds them to the mix's candidates as the
        pseudo-source ``user_history`` (repeat purchases dominate grocery baskets).

        Parameters
        ----------
        dataset : Dataset
            The training data.
        sources : tuple of str
            The mix's sources, in order.
        embeddings : ndarray of float32, shape (n_items, d), optional
            Text vectors (catalog only, so they may be shared across splits).
        category_relatedness : scipy.sparse matrix, shape (n_categories, n_categories)
        compat_codes : (seed_codes, cand_codes), each of shape (n_rules, n_items)
            The compatibility source's codes.
        trend_half_life_days : float
        user_candidates : int
            The users' most-bought items kept (0: none, and no ``user_history`` source).
        extra_features : sequence of str
            Registered plug-in features appended after the built-ins (``ConfigError`` for an
            unknown or repeated name).
        personal_features : bool
            False leaves out every feature that reads the query's user
            (:attr:`RankerFeature.personal`: the ``user_*`` features, ``hist_copurchase``), a
            plug-in named in ``extra_features`` too (``ConfigError``), and the
            ``user_history`` candidates (``user_candidates`` is ignored).
        """
        names = (*BASE_FEATURES, *extra_features)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"ranker features {repeated} are asked for twice")
        classes = [get_feature(n) for n in names]
        if not personal_features:
            asked = [c.name for c in classes if c.personal and c.name in extra_features]
            if asked:
                raise ConfigError(
                    f"ranker extra_features {asked} read the user, but personal_features is off"
                )
            classes = [c for c in classes if not c.personal]
            user_candidates = 0
        data = FitContext(
            dataset,
            embeddings=embeddings,
            category_relatedness=category_relatedness,
            compat_codes=compat_codes,
            trend_half_life_days=trend_half_life_days,
        )
        features = [feat_cls().fit(data) for feat_cls in classes]
        user_top, user_top_count = _user_top(data, user_candidates)
        if user_candidates > 0:
            sources = (*tuple(sources), USER_HISTORY)
        return cls(
            sources,
            features,
            n_items=data.n_items,
            n_users=data.n_users,
            user_top=user_top,
            user_top_count=user_top_count,
            ui_keys=data.ui_keys,
            ui_count=data.ui_count,
        )

    def with_calendar(self, promotions: Promotions) -> tuple[FeatureSpace, tuple[str, ...]]:
        """A copy of this space whose calendar features read ``promotions`` (indexed by the
        fitted items) at the request's time, and the names of the features that changed.

        Everything learned in the fit stays (lifts, channel weights, the user and item
        statistics); the features only read the new schedule. ``ConfigError`` when no
        feature of this space reads a calendar when it serves.
        """
        bad = promotions.item[(promotions.item < 0) | (promotions.item >= self.n_items)]
        if len(bad):
            raise ValueError(
                f"promotion calendar: item index {int(bad[0])} is outside the {self.n_items:,} "
                "items the features were fitted on"
            )
        steps = promotion_steps(promotions, self.n_items)
        features: list[RankerFeature] = []
        changed: list[str] = []
        for feat in self.features:
            new = feat.with_calendar(promotions, steps, self.n_items)
            features.append(feat if new is None else new)
            if new is not None:
                changed.append(feat.name)
        if not changed:
            raise ConfigError(
                f"this ranker reads no promotion calendar (features {list(self.feature_list)}): "
                "it was trained on data without promotions.parquet, or with "
                "[ranker] promotion_features = false; retrain it on data with a calendar"
            )
        space = FeatureSpace(
            self.sources,
            features,
            n_items=self.n_items,
            n_users=self.n_users,
            user_top=self.user_top,
            user_top_count=self.user_top_count,
            ui_keys=self.ui_keys,
            ui_count=self.ui_count,
        )
        return space, tuple(changed)

    def feature(self, name: str) -> RankerFeature | None:
        """The fitted feature called ``name`` (None when this space does not compute it)."""
        return next((f for f in self.features if f.name == name), None)

    def bought(self, users: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Whether each user (B,) bought each item (B, N) in the fitted data; False for -1."""
        users = np.asarray(users, dtype=np.int64)
        ok = (users >= 0) & (users < self.n_users)
        key = np.where(ok, users, 0)[:, None] * self.n_items + np.maximum(items, 0)
        count = pair_lookup(self.ui_keys, self.ui_count, key.ravel()).reshape(key.shape)
        return ~np.isnan(count) & ok[:, None] & (items >= 0)

    def transform(
        self,
        seeds: NDArray[np.int32],
        users: NDArray[np.int32],
        mixed: Candidates,
        when: NDArray[np.int64] | None = None,
        *,
        columns: NDArray[np.bool_] | None = None,
    ) -> NDArray[np.float32]:
        """Features of every (seed, candidate) slot: shape (n_seeds * n, n_features).

        Rows follow ``mixed.item`` in C order; padded slots (item -1) get all-NaN rows (drop
        them with ``mixed.item.ravel() >= 0``). ``users`` is -1 where the user is unknown;
        ``when`` (one time per seed, epoch seconds; ``None``: now) is read by the
        time-dependent features only. ``columns`` (one flag per column) leaves the
        per-call features whose flag is False uncomputed (NaN): what a model that never
        splits on them scores the same without (:meth:`Ranker.used_columns`).
        """
        if tuple(mixed.sources) != self.sources:
            raise ValueError(
                f"candidates come from sources {mixed.sources}, the features expect {self.sources}"
            )
        batch = FeatureBatch(
            seeds, users, mixed, n_items=self.n_items, n_users=self.n_users, when=when
        )
        # filled column by column into a (n_features, n_slots) array, so that every column
        # is one contiguous write; returned as its transpose (a Fortran-ordered view)
        XT = np.empty((len(self.columns), len(batch)), dtype=np.float32)
        # the per-source columns in two writes (what SourceScore / SourceRank give)
        n_src = 2 * len(self.sources)
        XT[0:n_src:2] = batch.source_score.T
        rank = batch.source_rank.T
        XT[1:n_src:2] = np.where(rank < 0, np.float32(np.nan), rank)
        if self.item_columns:  # the item-only features: one gather of the per-item table
            XT[self.item_columns, :] = np.take(self.item_table, batch.c, axis=0).T
        for j, col in self._per_call:
            if columns is not None and not columns[j]:
                XT[j] = np.nan
                continue
            values = np.asarray(col.transform(batch))
            if values.shape != (len(batch),):
                raise ValueError(
                    f"ranker feature {col.name!r} returned shape {values.shape}, "
                    f"expected ({len(batch)},)"
                )
            XT[j] = values
        X = XT.T
        X[~batch.valid] = np.nan
        return X

    # -- persistence -----------------------------------------------------------------
    def _owners(self) -> list[tuple[str, Any]]:
        return [(_SPACE, self), *((f.name, f) for f in self.features)]

    def save(self, directory: Path) -> None:
        """Write the fitted state into ``directory`` (``ranker_features.json`` / ``.npz``).

        Each feature's ``_state`` arrays are stored as ``"{feature}.{attr}"``; an array that
        several features share (the same object) is stored once and the others are recorded
        as aliases of it in the metadata.
        """
        arrays: dict[str, NDArray[Any]] = {}
        aliases: dict[str, str] = {}
        first_key: dict[int, str] = {}
        for owner, obj in self._owners():
            state = (
                obj.state()
                if isinstance(obj, RankerFeature)
                else {a: getattr(obj, a) for a in obj._state}
            )
            for attr, arr in state.items():
                key = f"{owner}.{attr}"
                if id(arr) in first_key:
                    aliases[key] = first_key[id(arr)]
                else:
                    first_key[id(arr)] = key
                    arrays[key] = np.asarray(arr)
        meta = {
            "sources": list(self.sources),
            "features": list(self.feature_list),
            "n_items": self.n_items,
            "n_users": self.n_users,
            "aliases": aliases,
        }
        write_state(directory, FEATURES_KIND, FEATURES_FORMAT, meta=meta, arrays=arrays)
        _log.debug(
            "saved %d feature arrays (%d shared) to %s", len(arrays), len(aliases), directory
        )

    @classmethod
    def load(cls, directory: Path) -> FeatureSpace:
        """Read what :meth:`save` wrote.

        Raises
        ------
        ConfigError
            When the directory was written by another recset version (missing, another
            format, an array missing) or names a feature that is not registered (a plug-in
            that is not installed): the message says to retrain the ranker.
        """
        directory = Path(directory)
        try:
            state = read_state(directory, FEATURES_KIND, FEATURES_FORMAT)
        except StorageError as exc:
            raise ConfigError(f"{exc}; {_RETRAIN}") from None
        meta = state.meta
        try:
            sources = tuple(str(s) for s in meta["sources"])
            names = [str(n) for n in meta["features"]]
            n_items, n_users = int(meta["n_items"]), int(meta["n_users"])
            aliases = {str(k): str(v) for k, v in dict(meta.get("aliases", {})).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{directory}: unreadable feature metadata ({exc!r}); {_RETRAIN}"
            ) from None

        def array(key: str) -> NDArray[Any]:
            key = aliases.get(key, key)
            if key not in state.arrays:
                raise ConfigError(
                    f"{directory}: the saved features hold no array {key!r} (written by another "
                    f"recset version); {_RETRAIN}"
                )
            return state.arrays[key]

        features: list[RankerFeature] = []
        for name in names:
            try:
                feat_cls = get_feature(name)
            except ConfigError as exc:
                raise ConfigError(
                    f"{directory}: the ranker reads feature {name!r}, which this recset does not "
                    f"register ({exc}); install the plug-in that provides it or {_RETRAIN}"
                ) from None
            feat = feat_cls()
            for attr in feat_cls._state:
                setattr(feat, attr, array(f"{name}.{attr}"))
            features.append(feat)
        own = {a: array(f"{_SPACE}.{a}") for a in cls._state}
        return cls(sources, features, n_items=n_items, n_users=n_users, **own)
