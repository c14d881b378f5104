"""The :class:`Engine`: build / save / load / recommend — the one object a host imports."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from recset.config import Config, config_from_dict
from recset.data import Dataset, IdMap, catalog_frame
from recset.errors import StorageError
from recset.recall import Candidates, RecallBase, get_recall
from recset.recall._lists import PrecomputedLists
from recset.recall.mixer import MixedCandidates, Mixer
from recset.signals import Signals

if TYPE_CHECKING:
    from recset.personalization import Personalizer, TypeTransition
    from recset.ranking import Ranker
    from recset.storage import ArtifactRecord

_log = logging.getLogger(__name__)

ENGINE_ARTIFACT = "engine"
_FORMAT_VERSION = 2
_CHUNK = 2048
# most (seed, candidate) entries asked of the fallback at once when filling short lists
_FILL_ENTRIES = 1 << 22


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a source that proposed it, its score and 0-based rank there."""

    source: str
    score: float
    rank: int


@dataclass(frozen=True)
class Recommendation:
    """One recommended item (external id), its final score and the reasons behind it."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...]


def _fit_order(specs: dict[str, tuple[str, Any]]) -> list[str]:
    """Source names ordered so that every source comes after the types it requires."""
    from recset.recall import registered_recall_sets

    known = registered_recall_sets()
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise ValueError(f"recall sources depend on each other in a cycle: {stack + (name,)}")
        kind, cfg = specs[name]
        needs = list(known[kind].requires)
        if kind == "popular" and getattr(cfg, "scope", "") == "related_categories":
            needs.append("related_categories")
        for dep in needs:
            for other, (other_kind, _) in specs.items():
                if other_kind == dep:
                    visit(other, stack + (name,))
        done.append(name)

    for name in specs:
        visit(name, ())
    return done


def _diversified(
    diversifier: TypeTransition,
    seeds: NDArray[np.int32],
    items: NDArray[np.int32],
    score: NDArray[np.floating],
    order: NDArray[np.intp],
) -> NDArray[np.intp]:
    """``order`` (B, N) rearranged by the type-transition step over the whole row."""
    sorted_items = np.take_along_axis(items, order, 1)
    sorted_score = np.take_along_axis(score, order, 1)
    cols = diversifier.diversify(seeds, sorted_items, sorted_score, order.shape[1])
    n = order.shape[1]
    ok = cols >= 0
    cols = np.take_along_axis(cols, np.argsort(~ok, axis=1, kind="stable"), 1)  # real first
    n_ok = ok.sum(axis=1, keepdims=True)
    # complete each row to a permutation with the columns it left out (padding), in order
    used = np.zeros(order.shape, dtype=bool)
    r, c = np.nonzero(cols >= 0)
    used[r, cols[r, c]] = True
    rest = np.argsort(used, axis=1, kind="stable")
    pos = np.arange(n)[None, :]
    tail = np.take_along_axis(rest, np.clip(pos - n_ok, 0, n - 1), 1)
    full = np.where(pos < n_ok, cols, tail)
    return np.take_along_axis(order, full, 1)


def _reserve_share(
    order: NDArray[np.intp],
    valid: NDArray[np.bool_],
    novel: NDArray[np.bool_],
    k: int,
    share: float,
) -> NDArray[np.intp]:
    """Reorder ranked columns so that every prefix of the top ``k`` holds novel items.

    ``order`` (B, N) are column indices best first; ``valid`` and ``novel`` (B, N) flag, in
    that ranked order, the real candidates and those the user never bought. Position ``p``
    (0-based) takes the best remaining novel candidate when fewer than
    ``floor(share * (p + 1))`` novel items are placed so far, else the best remaining one;
    so a list cut at any length ``m`` holds ``floor(share * m)`` novel items when the row
    has them. Returns (B, N) columns: the top ``k`` so chosen, then the rest in order.
    """
    n_rows, n = order.shape
    k = min(k, n)
    rows = np.arange(n_rows)
    left = valid.copy()
    novel_left = novel & valid
    taken = np.zeros((n_rows, n), dtype=bool)
    picks = np.empty((n_rows, k), dtype=np.intp)
    placed = np.zeros(n_rows, dtype=np.int64)
    for p in range(k):
        want = (placed < np.floor(share * (p + 1) + 1e-9)) & novel_left.any(axis=1)
        pool = np.where(want[:, None], novel_left, left)
        # rows with nothing left take a padded (invalid) column, the first not yet taken
        col = np.where(pool.any(axis=1), np.argmax(pool, axis=1), np.argmax(~taken, axis=1))
        picks[:, p] = col
        taken[rows, col] = True
        left[rows, col] = False
        placed += novel_left[rows, col]
        novel_left[rows, col] = False
    rest = np.argsort(taken, axis=1, kind="stable")[:, : n - k]
    return np.take_along_axis(order, np.concatenate([picks, rest], axis=1), 1)


class Engine:
    """Complementary-product recommender: recall mix, filters, precomputed lists, serving.

    Build it from a :class:`~recset.data.Dataset` with :meth:`build` (which fits every source
    and precomputes the candidate list of every catalog item), persist it with :meth:`save`
    and bring it back in a host process with :meth:`load`.

    Examples
    --------
    >>> from recset.data.synthetic import SyntheticConfig, generate
    >>> from recset.data import Dataset
    >>> syn = generate(SyntheticConfig(n_items=300, seed=1))
    >>> engine = Engine.build(Dataset.from_frames(syn.catalog, syn.events))
    >>> recs = engine.recommend(syn.catalog.item_id[0], k=3)
    >>> len(recs)
    3
    """

    def __init__(
        self,
        config: Config,
        items: IdMap,
        available: NDArray[np.bool_],
        sources: dict[str, RecallBase],
        seed_mix: NDArray[np.int32],
        lists: PrecomputedLists | None = None,
        ranker: Ranker | None = None,
    ) -> None:
        if len(available) != len(items) or len(seed_mix) != len(items):
            raise ValueError(
                f"'available' and 'seed_mix' must have length {len(items)}. "
                f"Got {len(available)} and {len(seed_mix)} instead."
            )
        if config.build.fallback not in sources:
            raise ValueError(f"the fallback source {config.build.fallback!r} is not fitted")
        self.config = config
        self.items = items
        self.available = np.asarray(available, dtype=bool)
        self.sources = sources
        mixes = list(config.mixes().values())
        order: list[str] = []
        for mix in mixes:
            order += [s for s in mix.sources if s not in order]
        if config.build.fallback not in order:
            order.append(config.build.fallback)
        self.mixer = Mixer(sources, mixes, seed_mix, order)
        self.lists = lists
        self.ranker: Ranker | None = None
        self.personalizer: Personalizer | None = None
        self.diversifier: TypeTransition | None = None
        if ranker is not None:
            self.attach_ranker(ranker)

    def __repr__(self) -> str:
        return (
            f"Engine(items={len(self.items)}, sources={list(self.mixer.source_order)}, "
            f"precomputed={self.lists.n_seeds if self.lists is not None else 0})"
        )

    @property
    def source_names(self) -> tuple[str, ...]:
        return self.mixer.source_order

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        dataset: Dataset,
        config: Config | None = None,
        *,
        precompute: bool = True,
        show_progress: bool = False,
    ) -> Engine:
        """Fit every configured source on ``dataset`` and precompute every item's list."""
        from tqdm.auto import tqdm

        config = config or config_from_dict({})
        signals = Signals(
            dataset,
            half_life_days=config.build.half_life_days or None,
            max_group_size=config.build.max_group_size,
        )
        specs = config.source_configs()
        fitted: dict[str, RecallBase] = {}
        order = _fit_order(specs)
        for name in tqdm(order, desc="fit sources", disable=not show_progress):
            kind, cfg = specs[name]
            fitted[name] = get_recall(kind)(cfg).fit(dataset, signals, fitted=dict(fitted))  # type: ignore[attr-defined]
        seed_mix = config.mix_for_categories(
            dataset.categories.ids(dataset.catalog.category),
            np.array(
                [
                    dataset.catalog.category_path[c] if c >= 0 else None
                    for c in dataset.catalog.category
                ],
                dtype=object,
            ),
        )
        engine = cls(config, dataset.items, dataset.catalog.available.copy(), fitted, seed_mix)
        if precompute:
            engine.precompute(show_progress=show_progress)
        _log.info("built %r", engine)
        return engine

    def precompute(self, *, show_progress: bool = False) -> PrecomputedLists:
        """Compute and keep the fused candidate list of every item (in batches)."""
        from tqdm.auto import tqdm

        n = len(self.items)
        width = self.config.build.candidates_per_seed
        chunks = []
        for start in tqdm(
            range(0, n, _CHUNK),
            desc="precompute lists",
            disable=not show_progress,
            unit_scale=_CHUNK,
        ):
            seeds = np.arange(start, min(start + _CHUNK, n), dtype=np.int32)
            chunks.append(self.mixer.mix(seeds, width))
        self.lists = PrecomputedLists.from_chunks(chunks)
        return self.lists

    def variant(self, sources: Iterable[str]) -> Engine:
        """The same fitted engine serving only ``sources`` of every mix, computed live.

        Used for ablations: nothing is refitted; the precomputed lists are not shared.
        """
        keep = set(sources)
        unknown = keep - set(self.source_names)
        if unknown:
            raise ValueError(
                f"The 'sources' parameter names sources this engine does not mix: "
                f"{sorted(unknown)}; allowed: {list(self.source_names)}"
            )
        new = object.__new__(Engine)
        new.config = self.config
        new.items = self.items
        new.available = self.available
        new.sources = self.sources
        mixes = [
            m.model_copy(update={"sources": tuple(s for s in m.sources if s in keep)})
            for m in self.mixer.mixes
        ]
        new.mixer = Mixer(self.sources, mixes, self.mixer.seed_mix, self.mixer.source_order)
        new.lists = None
        new.ranker = None
        new.personalizer = None
        new.diversifier = None
        return new

    def with_ranker(self, ranker: Ranker | None) -> Engine:
        """A shallow copy of this engine (same sources and lists) ranked by ``ranker``."""
        import copy

        new = copy.copy(self)
        new.attach_ranker(ranker)
        return new

    def with_stages(
        self,
        *,
        personalizer: Personalizer | None = None,
        diversifier: TypeTransition | None = None,
    ) -> Engine:
        """A shallow copy of this engine with the neural stages set (None: stage off)."""
        import copy

        new = copy.copy(self)
        new.personalizer = personalizer
        new.diversifier = diversifier
        return new

    @property
    def users(self) -> IdMap | None:
        """The user map of the personal stages (the ranker's, else the personalizer's)."""
        if self.ranker is not None:
            return self.ranker.users
        return self.personalizer.users if self.personalizer is not None else None

    def attach_ranker(self, ranker: Ranker | None) -> None:
        """Rank candidates with ``ranker`` (None: back to the mix's own order).

        The ranker's features must read this engine's sources; otherwise ``ConfigError``.
        """
        from recset.ranking._features import USER_HISTORY

        own = tuple(s for s in ranker.features.sources if s != USER_HISTORY) if ranker else ()
        if ranker is not None and own != self.source_names:
            from recset.errors import ConfigError

            raise ConfigError(
                f"the ranker reads sources {list(ranker.features.sources)}, this engine mixes "
                f"{list(self.source_names)}; retrain it with `recset train-ranker`"
            )
        self.ranker = ranker

    # -- serving ----------------------------------------------------------------------
    def candidates(self, seeds: NDArray[np.int32], n: int) -> MixedCandidates:
        """Fused candidates (with per-source reasons) of dense seeds: precomputed or live.

        Seeds beyond the precomputed lists, or all seeds when nothing is precomputed, go
        through the mixer on the fly; unknown seeds (-1) get empty rows.
        """
        seeds = np.asarray(seeds, dtype=np.int32)
        lists = self.lists
        if lists is None or n > lists.item.shape[1]:
            return self.mixer.mix(seeds, n)
        out = MixedCandidates.empty(len(seeds), n, self.source_names)
        pre = (seeds >= 0) & (seeds < lists.n_seeds)
        rows = np.flatnonzero(pre)
        if len(rows):
            s = seeds[rows]
            out.item[rows] = lists.item[s, :n]
            out.score[rows] = lists.score[s, :n]
            # every reason entry of every requested seed, gathered at once
            starts, ends = lists.ptr[s], lists.ptr[s + 1]
            counts = ends - starts
            entry = np.repeat(starts - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(
                int(counts.sum())
            )
            row_of = np.repeat(rows, counts)
            pos, src = lists.pos[entry].astype(np.int64), lists.src[entry].astype(np.int64)
            m = pos < n
            out.source_score[row_of[m], pos[m], src[m]] = lists.src_score[entry][m]
            out.source_rank[row_of[m], pos[m], src[m]] = lists.src_rank[entry][m]
        live = np.flatnonzero(~pre & (seeds >= 0))
        if len(live):
            part = self.mixer.mix(seeds[live], n)
            for f in ("item", "score", "source_score", "source_rank"):
                getattr(out, f)[live] = getattr(part, f)
        return out

    def recommend_many(
        self,
        seeds: NDArray[np.int32],
        k: int = 10,
        *,
        users: NDArray[np.int32] | None = None,
        fill: bool = True,
    ) -> MixedCandidates:
        """Top-``k`` for a batch of dense seed ids (``-1`` = unknown seed, cold-start path).

        Without a ranker: the fused list, without unavailable items and the seed itself, filled
        up to ``k`` from the fallback source (unless ``fill`` is false). With a ranker: the
        top ``ranker.config.candidates`` of that list re-scored by the ranker. Then, when set,
        the personalizer re-ranks the head of the list for the user, the type-transition
        step orders it by complementary type, and the ranker's ``explore_share`` keeps room
        for items the user never bought. ``users`` are dense ids of :attr:`users` (-1 =
        unknown user). Served scores never rise along a row.
        """
        if k < 1:
            raise ValueError(f"The 'k' parameter must be an int in [1, inf). Got {k} instead.")
        seeds = np.asarray(seeds, dtype=np.int32)
        staged = self.personalizer is not None or self.diversifier is not None
        if self.ranker is None and not staged:
            return self.mix_top(seeds, k, fill=fill)
        if users is None:
            users = np.full(len(seeds), -1, dtype=np.int32)
        users = np.asarray(users, dtype=np.int32)
        if self.ranker is not None:
            from recset.ranking._features import ranking_candidates

            n = max(k, self.ranker.config.candidates)
            mixed = ranking_candidates(self, self.ranker.features, seeds, users, n)
            X = self.ranker.features.transform(seeds, users, mixed)
            valid = mixed.item.ravel() >= 0
            flat = np.full(len(valid), -np.inf)
            if valid.any():
                flat[valid] = self.ranker.score(X[valid])  # padding is never scored
            score = flat.reshape(mixed.item.shape)
        else:
            n = max(k, self.personalizer.config.rerank_n if self.personalizer else 2 * k)
            mixed = self.mix_top(seeds, n, fill=fill)
            score = np.where(mixed.item >= 0, mixed.score, -np.inf).astype(np.float64)
        if self.personalizer is not None:
            score = self.personalizer.model.rerank(seeds, users, mixed.item, score)
        order = np.argsort(-score, axis=1, kind="stable")
        if self.diversifier is not None:
            order = _diversified(self.diversifier, seeds, mixed.item, score, order)
        share = self.ranker.config.explore_share if self.ranker is not None else 0.0
        if share > 0:
            novel = ~self.ranker.features.bought(users, np.take_along_axis(mixed.item, order, 1))  # type: ignore[union-attr]
            valid_sorted = np.isfinite(np.take_along_axis(score, order, 1))
            order = _reserve_share(order, valid_sorted, novel, k, share)
        order = order[:, :k]
        item = np.take_along_axis(mixed.item, order, 1)
        served = np.where(item >= 0, np.take_along_axis(score, order, 1), -np.inf)
        if staged or share > 0:
            # a reordered list keeps falling scores: each is capped by the ones above it
            served = np.minimum.accumulate(np.where(item >= 0, served, np.inf), axis=1)
            served = np.where(item >= 0, served, -np.inf)
        return MixedCandidates(
            item=item,
            score=served.astype(np.float32),
            source_score=np.take_along_axis(mixed.source_score, order[:, :, None], 1),
            source_rank=np.take_along_axis(mixed.source_rank, order[:, :, None], 1),
            sources=mixed.sources,
        )

    def mix_top(self, seeds: NDArray[np.int32], k: int, *, fill: bool = True) -> MixedCandidates:
        """The mix's own top-``k`` (no ranker): available, not the seed, filled by the fallback."""
        seeds = np.asarray(seeds, dtype=np.int32)
        # a margin over k for unavailable items; the fallback fills what is still short
        pre_width = self.lists.item.shape[1] if self.lists is not None else k
        width = max(k, min(pre_width, 2 * k + 10))
        mixed = self.candidates(seeds, width)
        item = mixed.item
        keep = (item >= 0) & self.available[np.maximum(item, 0)] & (item != seeds[:, None])
        n_keep = keep.sum(axis=1)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        take = lambda a: np.take_along_axis(a, order if a.ndim == 2 else order[:, :, None], 1)  # noqa: E731
        kept = np.take_along_axis(keep, order, 1)
        out = MixedCandidates(
            item=np.where(kept, take(item), -1).astype(np.int32),
            score=np.where(kept, take(mixed.score), -np.inf).astype(np.float32),
            source_score=np.where(kept[:, :, None], take(mixed.source_score), np.nan).astype(
                np.float32
            ),
            source_rank=np.where(kept[:, :, None], take(mixed.source_rank), -1).astype(np.int32),
            sources=mixed.sources,
        )
        if fill and (n_keep < k).any():
            self._fill(seeds, out, k)
        return out

    def _fill(self, seeds: NDArray[np.int32], out: MixedCandidates, k: int) -> None:
        """Fill rows shorter than ``k`` from the fallback source, in place.

        A row takes, in the fallback's order, its candidates that are available, pass the
        seed's mix filters, and are neither the seed nor already in the row. The fallback is
        asked for the seed's top ``2k + 10`` first; rows still short ask again for twice as
        many, up to the fallback's whole list for the seed; rows still short after that take
        the fallback's cold-start list (its answer for an unknown seed: for ``popular``, the
        global list) the same way. So a row stays short only when those lists together hold
        fewer than ``k`` such items, and only short rows pay for the longer lists.

        Parameters
        ----------
        seeds : ndarray of int32, shape (n_seeds,)
            Dense seed ids (-1: unknown seed).
        out : MixedCandidates
            Rows of width ``k`` whose items are packed at the start of each row, best first.
        k : int
            The length to fill rows to.

        Notes
        -----
        A filled item's score is the fallback's reciprocal-rank share of the seed's mix,
        ``weight / (rrf_k + rank + 1)``, kept below every score already in the row so that
        scores never rise along it; its reason is the fallback's score and rank (in the
        cold-start list for items taken from it).
        """
        rows = np.flatnonzero((out.item >= 0).sum(axis=1) < k)
        if not len(rows):
            return
        self._fill_from(seeds, seeds, out, k, rows)
        n = (out.item[rows] >= 0).sum(axis=1)
        # known seeds still short: the cold-start list (unknown seeds were just given it)
        rows = rows[(n < k) & (seeds[rows] >= 0)]
        if len(rows):
            self._fill_from(seeds, np.full(len(seeds), -1, np.int32), out, k, rows)

    def _fill_from(
        self,
        seeds: NDArray[np.int32],
        query: NDArray[np.int32],
        out: MixedCandidates,
        k: int,
        rows: NDArray[np.intp],
    ) -> None:
        """Fill ``rows`` of ``out`` from the fallback's lists for ``query`` (see :meth:`_fill`).

        ``seeds`` give the filters, the mix and the item to leave out; ``query`` the seeds the
        fallback is asked about. Lists are asked for in doubling widths, for the rows still
        short only, until the fallback returns fewer items than asked (its list is exhausted).
        """
        source = self.sources[self.config.build.fallback]
        n_items = len(self.items)
        # the floor is the row's last score when this stage starts: every filled score stays
        # below it, whatever the width the row ends up being filled from
        n_have = (out.item[rows] >= 0).sum(axis=1)
        floor = np.where(
            n_have > 0, out.score[rows, np.maximum(n_have - 1, 0)].astype(np.float64), np.inf
        )
        width = min(2 * k + 10, max(n_items, 1))
        while len(rows):
            more = np.zeros(len(rows), dtype=bool)
            step = max(1, _FILL_ENTRIES // width)  # bounds the memory of long lists
            for a in range(0, len(rows), step):
                b = min(a + step, len(rows))
                cand = source.recall_many(query[rows[a:b]], width)  # type: ignore[attr-defined]
                self._append(seeds[rows[a:b]], out, k, rows[a:b], cand, floor[a:b])
                more[a:b] = cand.counts() >= width  # else the list is exhausted
            if width >= n_items:
                break
            more &= (out.item[rows] >= 0).sum(axis=1) < k
            rows, floor = rows[more], floor[more]
            width = min(2 * width, n_items)

    def _append(
        self,
        seeds: NDArray[np.int32],
        out: MixedCandidates,
        k: int,
        rows: NDArray[np.intp],
        cand: Candidates,
        floor: NDArray[np.float64],
    ) -> None:
        """Write the valid items of ``cand`` after the current items of ``out[rows]``.

        One vectorised pass over the batch: ``cand`` and ``floor`` have one row per entry of
        ``rows``, ``seeds`` are those rows' seeds; rows are filled up to ``k``, in place.
        """
        name = self.config.build.fallback
        s_idx = self.source_names.index(name)
        weight = np.array([m.weight(name) for m in self.mixer.mixes], dtype=np.float64)
        rrf_k = np.array([m.rrf_k for m in self.mixer.mixes], dtype=np.float64)
        item = cand.item
        ok = (item >= 0) & (item != seeds[:, None]) & self.available[np.maximum(item, 0)]
        # the seed's mix filters (compatibility, substitutes, ...), one mix at a time
        which = self.mixer.mix_of(seeds)
        for m in np.unique(which).tolist():
            sel = np.flatnonzero(which == m)
            for f in self.mixer.mixes[m].filters:
                ok[sel] &= self.sources[f].keep(seeds[sel], item[sel])  # type: ignore[attr-defined]
        # not already in the row: (row, item) keys, sorted by sorting each row (the -1 padding
        # keys fall between rows), looked up with one searchsorted over the batch
        have = out.item[rows]
        n_have = (have >= 0).sum(axis=1)
        span = np.int64(len(self.items)) + 1
        row_key = np.arange(len(rows), dtype=np.int64)[:, None] * span
        present = (row_key + np.sort(have, axis=1)).ravel()
        r_ok, c_ok = np.nonzero(ok)
        key = r_ok * span + item[r_ok, c_ok]
        at = np.minimum(np.searchsorted(present, key), len(present) - 1)
        ok[r_ok, c_ok] = present[at] != key
        pos = n_have[:, None] + np.cumsum(ok, axis=1) - 1
        r, rank = np.nonzero(ok & (pos < k))
        if not len(r):
            return
        p = pos[r, rank]
        mix = which[r]
        rrf = weight[mix] / (rrf_k[mix] + rank + 1.0)
        f = floor[r]
        below = np.where(np.isinf(f), f, f * np.maximum(1.0 - 1e-6 * (rank + 1.0), 0.0))
        target = rows[r]
        out.item[target, p] = item[r, rank]
        out.score[target, p] = np.minimum(rrf, below).astype(np.float32)
        out.source_score[target, p, s_idx] = cand.score[r, rank]
        out.source_rank[target, p, s_idx] = rank.astype(np.int32)

    def recommend(
        self,
        seed_item: str,
        user: str | None = None,
        k: int = 10,
        exclude: Iterable[str] = (),
    ) -> list[Recommendation]:
        """Up to ``k`` complements of ``seed_item`` (external id), best first.

        An unknown seed never raises: it gets the cold-start path (the fallback source).
        ``user`` (external id) feeds the ranker's personal features when a ranker is active;
        an unknown user is served like an anonymous one.
        Items in ``exclude`` (external ids) are never returned.
        """
        if k < 1:
            raise ValueError(f"The 'k' parameter must be an int in [1, inf). Got {k} instead.")
        seed = self.items.index_one(seed_item)
        ex_idx = self.items.index(list(exclude)) if exclude else np.zeros(0, np.int32)
        ex_idx = ex_idx[ex_idx >= 0]
        user_map = self.users
        if self.ranker is None and self.personalizer is None and self.diversifier is None:
            fast = self._recommend_precomputed(seed, k, ex_idx)
            if fast is not None:
                return fast
            users = None
        else:
            u = user_map.index_one(user) if user is not None and user_map is not None else -1
            users = np.array([u], dtype=np.int32)
        batch = self.recommend_many(np.array([seed], dtype=np.int32), k + len(ex_idx), users=users)
        item = batch.item[0]
        valid = np.flatnonzero((item >= 0) & ~np.isin(item, ex_idx))[:k]
        names = batch.sources
        out = []
        for p in valid.tolist():
            ranks = batch.source_rank[0, p]
            reasons = tuple(
                Reason(names[s], float(batch.source_score[0, p, s]), int(ranks[s]))
                for s in np.flatnonzero(ranks >= 0).tolist()
            )
            out.append(
                Recommendation(self.items.id_of(int(item[p])), float(batch.score[0, p]), reasons)
            )
        return out

    def _recommend_precomputed(
        self, seed: int, k: int, exclude: NDArray[np.int32]
    ) -> list[Recommendation] | None:
        """The hot path: a precomputed row with at least ``k`` servable items, else None."""
        lists = self.lists
        if lists is None or not 0 <= seed < lists.n_seeds or k > lists.item.shape[1]:
            return None
        row = lists.item[seed]
        ok = row >= 0
        ok[ok] = self.available[row[ok]]
        if len(exclude):
            ok &= ~np.isin(row, exclude)
        pos = np.flatnonzero(ok)[:k]
        if len(pos) < k:
            return None
        r_pos, r_src, r_score, r_rank = lists.reasons(seed)
        by_pos: dict[int, list[Reason]] = {}
        names = self.source_names
        wanted = set(pos.tolist())
        for p, s_, v, r in zip(
            r_pos.tolist(), r_src.tolist(), r_score.tolist(), r_rank.tolist(), strict=True
        ):
            if p in wanted:
                by_pos.setdefault(p, []).append(Reason(names[s_], v, r))
        ids = self.items.values
        scores = lists.score[seed]
        return [
            Recommendation(str(ids[row[p]]), float(scores[p]), tuple(by_pos.get(p, ())))
            for p in pos.tolist()
        ]

    def explain(self, seed_item: str, k: int = 20) -> dict[str, Any]:
        """The seed's mix (category override or default) and its candidates with all reasons."""
        seed = self.items.index_one(seed_item)
        mix_index = int(self.mixer.mix_of(np.array([seed]))[0])
        mix_key = list(self.config.mixes())[mix_index]
        mix = self.mixer.mixes[mix_index]
        recs = self.recommend(seed_item, k=k)
        return {
            "seed": seed_item,
            "known": seed >= 0,
            "precomputed": self.lists is not None and 0 <= seed < self.lists.n_seeds,
            "mix": {"category_override": mix_key or None, **mix.model_dump(mode="json")},
            "candidates": [
                {"item_id": r.item_id, "score": r.score, "reasons": [vars(x) for x in r.reasons]}
                for r in recs
            ],
        }

    def iter_lists(
        self, *, show_progress: bool = False
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every precomputed list as ``(seed item id, [{item_id, score, sources}])`` rows."""
        from tqdm.auto import tqdm

        lists = self.lists if self.lists is not None else self.precompute()
        names = self.source_names
        ids = self.items.values
        for seed in tqdm(range(lists.n_seeds), desc="lists", disable=not show_progress):
            row = lists.item[seed]
            pos, src, sc, rk = lists.reasons(seed)
            entries = [
                {"item_id": str(ids[i]), "score": float(lists.score[seed, p]), "sources": {}}
                for p, i in enumerate(row.tolist())
                if i >= 0
            ]
            for p, s_, v, r in zip(
                pos.tolist(), src.tolist(), sc.tolist(), rk.tolist(), strict=True
            ):
                if p < len(entries):
                    entries[p]["sources"][names[s_]] = {"score": v, "rank": r}
            yield str(ids[seed]), entries

    # -- persistence ------------------------------------------------------------------
    def save(
        self,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        dataset: Dataset | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> ArtifactRecord:
        """Write the engine to a store (a directory path or a SQLAlchemy URL).

        The fitted sources and precomputed lists go to a new version of the ``engine``
        artifact (written to a temporary directory, then renamed) which becomes the active
        one; when ``dataset`` is given its catalog replaces the store's catalog in one
        transaction.
        """
        from recset.storage import Store

        with Store.open(target, artifact_dir=artifact_dir) as store:
            if dataset is not None:
                store.replace_catalog(catalog_frame(dataset))
            return store.save_artifact(
                ENGINE_ARTIFACT,
                self._write,
                params=self.config.to_dict(),
                config_hash=self.config.hash(),
                metrics={"n_items": len(self.items), **(metrics or {})},
            )

    def _write(self, directory: Path) -> None:
        meta = {
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "sources": {n: type(s).name for n, s in self.sources.items()},
        }
        (directory / "engine.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        # ids as JSON: exact for any string (numpy fixed-width strings drop trailing NULs)
        (directory / "items.json").write_text(
            json.dumps(self.items.values.tolist()), encoding="utf-8"
        )
        np.savez(
            directory / "items.npz",
            allow_pickle=False,
            available=self.available,
            seed_mix=self.mixer.seed_mix,
        )
        for name, src in self.sources.items():
            src.save(directory / "sources" / name)
        if self.lists is not None:
            self.lists.save(directory / "lists")

    @classmethod
    def load(
        cls,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        version: int | None = None,
        device: str = "auto",
        neural: bool = True,
    ) -> Engine:
        """Load the active (or a given) version of the engine from a store.

        The active ranker and (unless ``neural`` is false) neural stages (personalizer,
        type transition) are attached when the store has them; ``device`` is where the
        neural stages run.

        Item availability comes from the store's catalog when it holds one, so marking an item
        unavailable there takes effect at the next load without a rebuild. The precomputed
        lists are memory-mapped.
        """
        from recset.storage import Store

        with Store.open(target, artifact_dir=artifact_dir, create=False) as store:
            record = (
                store.artifact(ENGINE_ARTIFACT, version)
                if version is not None
                else store.active_artifact(ENGINE_ARTIFACT)
            )
            if record is None:
                raise StorageError(f"{store.url}: no active engine; run `recset build` first")
            path = store.artifact_path(record)
            catalog = store.read_catalog()
            ranker_record = store.active_artifact("ranker")
            ranker_path = store.artifact_path(ranker_record) if ranker_record else None
            stage_paths = {}
            for name in ("personalizer", "type_transition") if neural else ():
                rec = store.active_artifact(name)
                if rec is not None:
                    stage_paths[name] = store.artifact_path(rec)
        engine = cls._read(path, catalog)
        if ranker_path is None:
            _log.info("no active ranker in %s: serving the mix's order", store.url)
        else:
            from recset.ranking import Ranker

            engine.attach_ranker(Ranker.load(ranker_path, sources=engine.source_names))
        if stage_paths:
            engine._load_stages(stage_paths, device)
        return engine

    def _load_stages(self, paths: dict[str, Path], device: str) -> None:
        """Attach the active neural stages; without torch, serve without them (warned)."""
        try:
            import torch  # noqa: F401
        except ImportError:
            _log.warning(
                "the store holds neural stages %s but torch is not installed "
                "(pip install 'recset[neural]'): serving without them",
                sorted(paths),
            )
            return
        from recset.personalization import Personalizer, TypeTransition

        if "personalizer" in paths:
            self.personalizer = Personalizer.load(
                paths["personalizer"], device=device, n_items=len(self.items)
            )
        if "type_transition" in paths:
            self.diversifier = TypeTransition.load(paths["type_transition"], device=device)

    @classmethod
    def _read(cls, path: Path, catalog: object) -> Engine:
        import pandas as pd

        meta = json.loads((path / "engine.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            raise StorageError(
                f"{path}: engine format version {meta.get('format_version')}, "
                f"this recset reads {_FORMAT_VERSION}; rebuild the engine"
            )
        config = config_from_dict(meta["config"], where=str(path / "engine.json"))
        items = IdMap(json.loads((path / "items.json").read_text(encoding="utf-8")))
        with np.load(path / "items.npz", allow_pickle=False) as z:
            available = z["available"].astype(bool)
            seed_mix = z["seed_mix"].astype(np.int32)
        if isinstance(catalog, pd.DataFrame) and len(catalog):
            flags = pd.Series(catalog["available"].to_numpy(bool), index=catalog["item_id"])
            current = flags.reindex(items.values)
            available = np.where(current.isna(), available, current.fillna(True).to_numpy(bool))
        sources = {
            n: get_recall(kind).load(path / "sources" / n) for n, kind in meta["sources"].items()
        }
        lists = PrecomputedLists.load(path / "lists") if (path / "lists").exists() else None
        return cls(config, items, available, sources, seed_mix, lists)
