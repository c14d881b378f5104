"""The mixer: runs a category's recall mix, fuses it into one candidate list per seed, and
fills short lists from the fallback source, under one set of filters.

Every candidate keeps the score and rank it had in every source that proposed it: these are the
reasons shown to users and the ranker's features. :class:`Mixer` owns the fitted sources, the
mix of every seed (by its category), item availability and the precomputed lists;
:class:`MixStage` is the first stage of the serving pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset
from recset.errors import ConfigError
from recset.pipeline import Candidates, Request, Stage, register_stage
from recset.progress import Ticker, available_memory, release_free_memory, stage
from recset.recall._base import RecallBase, get_recall
from recset.recall._config import MixConfig, RecallConfig
from recset.recall._incremental import CountState, build_counts, unsupported
from recset.recall._lists import ListsWriter, PrecomputedLists
from recset.signals import Signals, topk_workers
from recset.storage import read_state, write_state

_log = logging.getLogger(__name__)

# seeds per precompute chunk without a memory budget, and the bounds with one. Larger chunks
# are slower per seed, not faster (the fusion's sorts and gathers leave the caches): mixing
# 60,000 seeds of a 300k-item engine on one thread took 9-10 CPU s in chunks of 500-1,000,
# 10.5-11 s in 2,048, 12-12.6 s in 5,000 and 18.7-18.9 s in 30,000 (bench notes in
# docs/benchmarks.md), so a budget only ever makes chunks smaller than _MAX_CHUNK
_CHUNK = 1024
_MIN_CHUNK = 64
_MAX_CHUNK = 1024
# a chunk's working memory over the size of its dense output (fusion temporaries: per-source
# lists, unique keys, sort orders)
_WORK_FACTOR = 4
# most (seed, candidate) entries asked of the fallback at once when filling short lists
_FILL_ENTRIES = 1 << 22
_FORMAT_VERSION = 1


class Mixer:
    """Runs recall mixes over fitted sources, and fills short lists from the fallback.

    Parameters
    ----------
    sources : mapping of str to RecallBase
        Fitted source instances by name (filters included).
    mixes : sequence of MixConfig
        ``mixes[0]`` is the default; the others are category overrides.
    seed_mix : ndarray of int32, shape (n_items,)
        Index into ``mixes`` of each item's mix (by its category).
    source_order : sequence of str
        The names along :attr:`Candidates.sources` (all recall sources of all mixes).
    fallback : str
        The source that answers unknown seeds and fills short lists.
    available : ndarray of bool, shape (n_items,)
        Items that may be served (defaults to all).
    lists : PrecomputedLists, optional
        Every seed's fused list, computed by :meth:`precompute`.
    max_memory : int, optional
        Memory budget in bytes of :meth:`precompute` (``[build] max_memory``).
    """

    def __init__(
        self,
        sources: Mapping[str, RecallBase],
        mixes: Sequence[MixConfig],
        seed_mix: NDArray[np.int32],
        source_order: Sequence[str],
        *,
        fallback: str,
        available: NDArray[np.bool_] | None = None,
        lists: PrecomputedLists | None = None,
        max_memory: int | None = None,
    ) -> None:
        self.max_memory = max_memory
        self.sources = dict(sources)
        self.mixes = list(mixes)
        self.seed_mix = np.asarray(seed_mix, dtype=np.int32)
        self.source_order = tuple(source_order)
        self._index = {s: i for i, s in enumerate(self.source_order)}
        if fallback not in self.sources:
            raise ConfigError(f"the fallback source {fallback!r} is not fitted")
        self.fallback = fallback
        n = len(self.seed_mix)
        self.available = (
            np.ones(n, dtype=bool) if available is None else np.asarray(available, dtype=bool)
        )
        if len(self.available) != n:
            raise ConfigError(
                f"'available' and 'seed_mix' must have the same length. "
                f"Got {len(self.available)} and {n} instead."
            )
        self.lists = lists
        # what an incremental build keeps (saved with the mixer, never loaded for serving)
        self.counts: CountState | None = None
        self._top_cache: _TopCache | None = None
        for mix in self.mixes:
            for name in (*mix.sources, *mix.filters):
                if name not in self.sources:
                    raise ConfigError(f"mix names source {name!r}, which is not fitted")

    @classmethod
    def from_config(
        cls,
        config: RecallConfig,
        sources: Mapping[str, RecallBase],
        seed_mix: NDArray[np.int32],
        available: NDArray[np.bool_] | None = None,
        lists: PrecomputedLists | None = None,
    ) -> Mixer:
        """The mixer of ``config``'s mixes over fitted ``sources``."""
        mixes = list(config.mixes().values())
        order: list[str] = []
        for mix in mixes:
            order += [s for s in mix.sources if s not in order]
        if config.build.fallback not in order:
            order.append(config.build.fallback)
        return cls(
            sources,
            mixes,
            seed_mix,
            order,
            fallback=config.build.fallback,
            available=available,
            lists=lists,
            max_memory=config.build.max_memory,
        )

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        config: RecallConfig,
        *,
        show_progress: bool = False,
        prefitted: Mapping[str, RecallBase] | None = None,
    ) -> Mixer:
        """Fit every source ``config`` needs on ``dataset`` (dependencies first).

        Sources in ``prefitted`` (by name; e.g. fitted on Spark by ``recset.spark``) are taken
        as they are instead of being fitted here.
        """
        signals = Signals(
            dataset,
            half_life_days=config.build.half_life_days or None,
            max_group_size=config.build.max_group_size,
            max_memory=config.build.max_memory,
        )
        specs = config.source_configs()
        if config.build.incremental:
            bad = unsupported({n: get_recall(k)(c) for n, (k, c) in specs.items()})
            if bad:
                raise ConfigError(
                    "[build] incremental = true: an incremental build cannot update the "
                    f"sources {bad}; it supports co_purchase with unit = 'basket', co_view and "
                    "popular not scoped by related categories. Leave them out of the mix or "
                    "set incremental = false."
                )
        fitted: dict[str, RecallBase] = {}
        for name in config.fit_order():
            kind, cfg = specs[name]
            if prefitted is not None and name in prefitted:
                fitted[name] = prefitted[name]
                continue
            with stage(f"fit {name}"):
                fitted[name] = get_recall(kind)(cfg).fit(dataset, signals, fitted=dict(fitted))
                # a fit's temporaries (text model, Annoy index, pair blocks) are freed by now;
                # their pages go back to the system rather than count against the budget
                release_free_memory()
        cat = dataset.catalog
        paths = np.array(
            [cat.category_path[c] if c >= 0 else None for c in cat.category], dtype=object
        )
        seed_mix = config.mix_for_categories(dataset.categories.ids(cat.category), paths)
        mixer = cls.from_config(config, fitted, seed_mix, cat.available.copy())
        if config.build.incremental:
            with stage("keep counts for incremental builds"):
                mixer.counts = build_counts(dataset, fitted, signals)
        return mixer

    def __repr__(self) -> str:
        n = self.lists.n_seeds if self.lists is not None else 0
        names = list(self.source_order)
        return f"Mixer(items={len(self.seed_mix)}, sources={names}, precomputed={n})"

    @property
    def n_items(self) -> int:
        return len(self.seed_mix)

    def variant(self, sources: Iterable[str]) -> Mixer:
        """The same fitted sources serving only ``sources`` of every mix, computed live."""
        keep = set(sources)
        unknown = keep - set(self.source_order)
        if unknown:
            raise ConfigError(
                f"The 'sources' parameter names sources this engine does not mix: "
                f"{sorted(unknown)}; allowed: {list(self.source_order)}"
            )
        mixes = [
            m.model_copy(update={"sources": tuple(s for s in m.sources if s in keep)})
            for m in self.mixes
        ]
        return Mixer(
            self.sources,
            mixes,
            self.seed_mix,
            self.source_order,
            fallback=self.fallback,
            available=self.available,
            max_memory=self.max_memory,
        )

    def mix_of(self, seeds: NDArray[np.int32]) -> NDArray[np.int32]:
        """Mix index of each seed (unknown seeds get the default mix)."""
        seeds = np.asarray(seeds)
        ok = (seeds >= 0) & (seeds < len(self.seed_mix))
        return np.where(ok, self.seed_mix[np.where(ok, seeds, 0)], 0)

    def _passes(
        self, mix: MixConfig, seeds: NDArray[np.int32], item: NDArray[np.int32]
    ) -> NDArray[np.bool_]:
        """The one set of filters: a real item, not the seed, kept by every mix filter."""
        ok = (item >= 0) & (item != seeds[:, None])
        for f in mix.filters:
            ok &= self.sources[f].keep(seeds, item)
        return ok

    def mix(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Fused top-``n`` candidates of each seed under its category's mix (computed live)."""
        seeds = np.asarray(seeds, dtype=np.int32)
        out = Candidates.empty(len(seeds), n, self.source_order)
        which = self.mix_of(seeds)
        for m in np.unique(which):
            rows = np.flatnonzero(which == m)
            part = self._mix_one(self.mixes[int(m)], seeds[rows], n)
            out.item[rows] = part.item
            out.score[rows] = part.score
            out.source_score[rows] = part.source_score  # type: ignore[index]
            out.source_rank[rows] = part.source_rank  # type: ignore[index]
        return out

    def chunk_size(
        self, width: int, max_memory: int | None = None, workers: int | None = None
    ) -> int:
        """Seeds per precompute chunk: what fits in what ``max_memory`` leaves free now.

        A chunk of ``c`` seeds holds the mix's dense output (an item, a score, and a score and
        rank per source for each of ``width`` entries) and the fusion's temporaries, counted
        as :data:`_WORK_FACTOR` times that output; every one of the ``workers`` threads
        (default :func:`~recset.signals.topk_workers`) holds one while the finished chunk
        before them is written, and half of the free budget goes to them, up to
        :data:`_MAX_CHUNK` seeds (larger chunks cost more time per seed). No budget:
        :data:`_CHUNK` seeds.
        """
        if max_memory is None:
            return _CHUNK
        workers = topk_workers() if workers is None else max(int(workers), 1)
        in_flight = workers + 1 if workers > 1 else 1  # the threads' chunks and the one written
        per_seed = width * (8 + 8 * len(self.source_order)) * _WORK_FACTOR * in_flight
        free = available_memory(max_memory) or 0
        size = int(min(max(free // 2 // per_seed, _MIN_CHUNK), _MAX_CHUNK))
        if free // 2 < per_seed * _MIN_CHUNK:
            _log.warning(
                "precompute: only %.2f GiB of the %.2f GiB memory budget is free; "
                "using chunks of %d seeds",
                free / (1 << 30),
                max_memory / (1 << 30),
                size,
            )
        return size

    def precompute(
        self,
        width: int,
        *,
        max_memory: int | None = None,
        chunk: int | None = None,
        directory: Path | None = None,
        workers: int | None = None,
        show_progress: bool = False,
    ) -> PrecomputedLists:
        """Compute the fused candidate list of every item, streamed to disk in seed chunks.

        Each chunk of seeds is mixed and appended to ``.npy`` files at once (see
        :class:`~recset.recall.ListsWriter`), so memory holds one chunk's per-source arrays,
        never every seed's; the lists are then memory-mapped from those files. The lists do
        not depend on the chunking.

        Parameters
        ----------
        width : int
            Candidates per seed.
        max_memory : int, optional
            Memory budget of the process in bytes: sets the chunk size (see
            :meth:`chunk_size`).
        chunk : int, optional
            Seeds per chunk (overrides ``max_memory``).
        directory : path, optional
            Where the list files go (default: a temporary directory, removed with the lists).
        workers : int, optional
            Chunks mixed at once on threads (default: :func:`~recset.signals.topk_workers`).
        show_progress : bool
            A live bar on a terminal (progress lines are logged either way).
        """
        n = self.n_items
        budget = max_memory if max_memory is not None else self.max_memory
        workers = topk_workers() if workers is None else max(int(workers), 1)
        release_free_memory()  # what the fit freed (its signals) is free for the chunks
        size = chunk if chunk is not None else self.chunk_size(width, budget, workers)
        if size < 1:
            raise ConfigError(f"The 'chunk' parameter must be >= 1. Got {size} instead.")
        _log.info(
            "precompute: %d seeds x %d, chunks of %d seeds on %d threads", n, width, size, workers
        )
        writer = ListsWriter(n, width, directory)
        try:
            with (
                stage("precompute lists"),
                Ticker("precompute lists", n, bar=show_progress) as tick,
            ):
                for part in self._mixed_chunks(n, size, width, workers):
                    writer.add(part)
                    tick.update(part.item.shape[0])
        except BaseException:
            writer.abort()
            raise
        self.lists = writer.close()
        return self.lists

    def update_lists(
        self,
        old: PrecomputedLists,
        seeds: NDArray[np.int32],
        *,
        rescored: Mapping[str, NDArray[np.int32]] | None = None,
        directory: Path | None = None,
        show_progress: bool = False,
    ) -> PrecomputedLists:
        """The lists :meth:`precompute` would give when only ``seeds`` can differ from ``old``:
        those rows are mixed anew, every other row is copied from ``old``, a chunk at a time
        (the new lists are written to new files: ``old`` stays as it was).

        ``rescored`` names, per source, seeds whose candidates from that source kept their
        order but not their scores: the fusion is rank-based, so only the source's scores in
        those rows' reasons are read again from it.
        """
        n = self.n_items
        width = old.item.shape[1]
        if old.n_seeds != n:
            raise ConfigError(f"the stored lists have {old.n_seeds} rows, the mixer {n} items")
        redo = np.zeros(n, dtype=bool)
        redo[np.asarray(seeds, dtype=np.int64)] = True
        rescore = {}
        for name, which in (rescored or {}).items():
            mask = np.zeros(n, dtype=bool)
            mask[np.asarray(which, dtype=np.int64)] = True
            rescore[name] = mask & ~redo
        size = self.chunk_size(width, self.max_memory)
        writer = ListsWriter(n, width, directory)
        self.lists = old
        try:
            with (
                stage("update lists"),
                Ticker("update lists", n, bar=show_progress) as tick,
            ):
                for start in range(0, n, size):
                    s = np.arange(start, min(start + size, n), dtype=np.int32)
                    part = self.candidates(s, width)
                    for name, mask in rescore.items():
                        self._rescore(part, s, np.flatnonzero(mask[s]), name)
                    r = np.flatnonzero(redo[s])
                    if len(r):
                        fresh = self.mix(s[r], width)
                        for f in ("item", "score", "source_score", "source_rank"):
                            getattr(part, f)[r] = getattr(fresh, f)
                    writer.add(part)
                    tick.update(len(s))
        except BaseException:
            writer.abort()
            raise
        self.lists = writer.close()
        return self.lists

    def _rescore(
        self, part: Candidates, seeds: NDArray[np.int32], rows: NDArray[np.intp], name: str
    ) -> None:
        """Read the scores of source ``name`` again for ``rows`` of ``part``, in place: each
        reason's score is the source's score at the reason's rank (the order is unchanged)."""
        if not len(rows):
            return
        j = self._index[name]
        rank = part.source_rank[rows, :, j]  # type: ignore[index]
        has = rank >= 0
        if not has.any():
            return
        fresh = self.sources[name].recall_many(seeds[rows], int(rank.max()) + 1)
        r, p = np.nonzero(has)
        part.source_score[rows[r], p, j] = fresh.score[r, rank[r, p]]  # type: ignore[index]

    def _mixed_chunks(self, n: int, size: int, width: int, workers: int) -> Iterator[Candidates]:
        """``mix`` of consecutive seed chunks, in order; up to ``workers`` chunks are mixed at
        once on threads (the sources only read their fitted arrays, and numpy releases the
        GIL in its sorts and gathers), so memory holds at most ``workers`` chunks."""
        starts = range(0, n, size)

        def one(start: int) -> Candidates:
            return self.mix(np.arange(start, min(start + size, n), dtype=np.int32), width)

        if workers <= 1 or len(starts) <= 1:
            for start in starts:
                yield one(start)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[Candidates]] = deque()
            for start in starts:
                pending.append(pool.submit(one, start))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def candidates(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Fused candidates (with per-source reasons) of dense seeds: precomputed or live.

        Seeds beyond the precomputed lists, or all seeds when nothing is precomputed, go
        through the mixer on the fly; unknown seeds (-1) get empty rows.
        """
        seeds = np.asarray(seeds, dtype=np.int32)
        lists = self.lists
        if lists is None or n > lists.item.shape[1]:
            return self.mix(seeds, n)
        out = Candidates.empty(len(seeds), n, self.source_order)
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
            out.source_score[row_of[m], pos[m], src[m]] = lists.src_score[entry][m]  # type: ignore[index]
            out.source_rank[row_of[m], pos[m], src[m]] = lists.src_rank[entry][m]  # type: ignore[index]
        live = np.flatnonzero(~pre & (seeds >= 0))
        if len(live):
            part = self.mix(seeds[live], n)
            for f in ("item", "score", "source_score", "source_rank"):
                getattr(out, f)[live] = getattr(part, f)
        return out

    def _mix_one(self, mix: MixConfig, seeds: NDArray[np.int32], n: int) -> Candidates:
        n_seeds = len(seeds)
        n_src = len(self.source_order)
        items, scores, src, ranks, order_of = [], [], [], [], []
        for j, name in enumerate(mix.sources):
            c = self.sources[name].recall_many(seeds, mix.limit(name, n))
            w = c.item.shape[1]
            items.append(c.item)
            scores.append(c.score)
            src.append(np.full((n_seeds, w), self._index[name], np.int16))
            ranks.append(np.broadcast_to(np.arange(w, dtype=np.int32), (n_seeds, w)))
            order_of.append(np.full((n_seeds, w), j, np.int16))
        if not items:
            return Candidates.empty(n_seeds, n, self.source_order)
        item = np.concatenate(items, axis=1)
        valid = self._passes(mix, seeds, item)
        r_idx = np.repeat(np.arange(n_seeds, dtype=np.int64), item.shape[1])
        sel = valid.ravel()
        r_idx = r_idx[sel]
        it = item.ravel()[sel].astype(np.int64)
        sc = np.concatenate(scores, axis=1).ravel()[sel]
        s_idx = np.concatenate(src, axis=1).ravel()[sel]
        rk = np.concatenate(ranks, axis=1).ravel()[sel]
        pos = np.concatenate(order_of, axis=1).ravel()[sel]
        width = int(it.max()) + 1 if len(it) else 1
        uniq, inv = np.unique(r_idx * width + it, return_inverse=True)
        u = len(uniq)
        u_score = np.full((u, n_src), np.nan, np.float32)
        u_rank = np.full((u, n_src), -1, np.int32)
        u_score[inv, s_idx] = sc
        u_rank[inv, s_idx] = rk
        rrf = _rrf(mix, self.source_order, u_rank)
        if mix.fusion == "sequential":
            first_src = np.full(u, np.iinfo(np.int64).max)
            np.minimum.at(first_src, inv, pos.astype(np.int64) * (1 << 20) + rk)
            key = -first_src.astype(np.float64)
        else:
            key = rrf
        u_row = uniq // width
        u_item = (uniq % width).astype(np.int32)
        # uniq is sorted by (row, item) and lexsort is stable: ties in key keep the lower item
        order = np.lexsort((-key, u_row))
        u_row_s = u_row[order]
        counts = np.bincount(u_row_s, minlength=n_seeds)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        p = np.arange(len(order)) - starts[u_row_s]
        keep = p < n
        out = Candidates.empty(n_seeds, n, self.source_order)
        o = order[keep]
        rr, pp = u_row_s[keep], p[keep]
        out.item[rr, pp] = u_item[o]
        if mix.fusion == "sequential":
            # the order is by source precedence, not by RRF: score the fused list's own
            # reciprocal rank so that scores fall along the row like the order does
            out.score[rr, pp] = (1.0 / (mix.rrf_k + pp + 1.0)).astype(np.float32)
        else:
            out.score[rr, pp] = rrf[o].astype(np.float32)
        out.source_score[rr, pp] = u_score[o]
        out.source_rank[rr, pp] = u_rank[o]
        return out

    def cache_top(self, max_bytes: int) -> None:
        """Keep the answers of :meth:`top` for recently asked seeds, up to ``max_bytes``
        (least recently used first out; 0 turns the cache off).

        A seed's answer depends only on this mixer's fitted state, its lists and
        ``available``, so a service (``recset serve``) asked for the same seeds again skips
        the mix and the fallback fill. The cache empties itself when ``lists`` or
        ``available`` is replaced (an incremental update, a new availability); changing
        ``available`` in place is not seen: assign a new array instead.
        """
        self._top_cache = _TopCache(int(max_bytes)) if max_bytes > 0 else None

    def top(self, seeds: NDArray[np.int32], k: int) -> Candidates:
        """The mix's own top-``k``: available, not the seed, filled by the fallback source."""
        seeds = np.asarray(seeds, dtype=np.int32)
        cache = self._top_cache
        if cache is not None:
            return cache.rows(seeds, k, (id(self.lists), id(self.available)), self._top)
        return self._top(seeds, k)

    def _top(self, seeds: NDArray[np.int32], k: int) -> Candidates:
        # a margin over k for unavailable items; the fallback fills what is still short
        pre_width = self.lists.item.shape[1] if self.lists is not None else k
        width = max(k, min(pre_width, 2 * k + 10))
        mixed = self.candidates(seeds, width)
        item = mixed.item
        keep = (item >= 0) & self.available[np.maximum(item, 0)] & (item != seeds[:, None])
        n_keep = keep.sum(axis=1)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(seeds))[:, None]
        kept = keep[rows, order]
        out = Candidates(
            item=np.where(kept, item[rows, order], -1).astype(np.int32),
            score=np.where(kept, mixed.score[rows, order], -np.inf).astype(np.float32),
            source_score=np.where(
                kept[:, :, None],
                mixed.source_score[rows, order],  # type: ignore[index]
                np.nan,
            ).astype(np.float32),
            source_rank=np.where(
                kept[:, :, None],
                mixed.source_rank[rows, order],  # type: ignore[index]
                -1,
            ).astype(np.int32),
            sources=mixed.sources,
        )
        if (n_keep < k).any():
            self._fill(seeds, out, k)
        return out

    def _fill(self, seeds: NDArray[np.int32], out: Candidates, k: int) -> None:
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
        out : Candidates
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
        out: Candidates,
        k: int,
        rows: NDArray[np.intp],
    ) -> None:
        """Fill ``rows`` of ``out`` from the fallback's lists for ``query`` (see :meth:`_fill`).

        ``seeds`` give the filters, the mix and the item to leave out; ``query`` the seeds the
        fallback is asked about. Lists are asked for in doubling widths, for the rows still
        short only, until the fallback returns fewer items than asked (its list is exhausted).
        """
        source = self.sources[self.fallback]
        n_items = self.n_items
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
                cand = source.recall_many(query[rows[a:b]], width)
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
        out: Candidates,
        k: int,
        rows: NDArray[np.intp],
        cand: Candidates,
        floor: NDArray[np.float64],
    ) -> None:
        """Write the valid items of ``cand`` after the current items of ``out[rows]``.

        One vectorised pass over the batch: ``cand`` and ``floor`` have one row per entry of
        ``rows``, ``seeds`` are those rows' seeds; rows are filled up to ``k``, in place.
        """
        name = self.fallback
        s_idx = self.source_order.index(name)
        weight = np.array([m.weight(name) for m in self.mixes], dtype=np.float64)
        rrf_k = np.array([m.rrf_k for m in self.mixes], dtype=np.float64)
        item = cand.item
        ok = np.zeros(item.shape, dtype=bool)
        # the seed's mix filters (compatibility, substitutes, ...), one mix at a time
        which = self.mix_of(seeds)
        for m in np.unique(which).tolist():
            sel = np.flatnonzero(which == m)
            ok[sel] = self._passes(self.mixes[m], seeds[sel], item[sel])
        ok &= self.available[np.maximum(item, 0)]
        # not already in the row: (row, item) keys, sorted by sorting each row (the -1 padding
        # keys fall between rows), looked up with one searchsorted over the batch
        have = out.item[rows]
        n_have = (have >= 0).sum(axis=1)
        span = np.int64(self.n_items) + 1
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
        out.source_score[target, p, s_idx] = cand.score[r, rank]  # type: ignore[index]
        out.source_rank[target, p, s_idx] = rank.astype(np.int32)  # type: ignore[index]

    def precomputed(
        self, seed: int, k: int, exclude: NDArray[np.int32]
    ) -> list[tuple[int, float, list[tuple[int, float, int]]]] | None:
        """The serving hot path: ``k`` servable items of a precomputed row, else None.

        Each entry is ``(item, score, [(source index, source score, source rank), ...])``;
        unavailable and ``exclude``d items are skipped; None when the row has fewer than
        ``k`` such items, or the seed has no precomputed row.
        """
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
        return self._row_entries(seed, pos)

    def _row_entries(
        self, seed: int, pos: NDArray[np.intp]
    ) -> list[tuple[int, float, list[tuple[int, float, int]]]]:
        lists = self.lists
        if lists is None:
            return []
        r_pos, r_src, r_score, r_rank = lists.reasons(seed)
        why: dict[int, list[tuple[int, float, int]]] = {}
        wanted = set(pos.tolist())
        for p, s_, v, r in zip(
            r_pos.tolist(), r_src.tolist(), r_score.tolist(), r_rank.tolist(), strict=True
        ):
            if p in wanted:
                why.setdefault(p, []).append((s_, v, r))
        items, scores = lists.item[seed], lists.score[seed]
        return [(int(items[p]), float(scores[p]), why.get(p, [])) for p in pos.tolist()]

    def iter_rows(
        self, *, show_progress: bool = False
    ) -> Iterator[tuple[int, list[tuple[int, float, list[tuple[int, float, int]]]]]]:
        """Every precomputed row as ``(seed, entries)`` (see :meth:`precomputed`)."""
        from tqdm.auto import tqdm

        lists = self.lists
        if lists is None:
            return
        for seed in tqdm(range(lists.n_seeds), desc="lists", disable=not show_progress):
            yield seed, self._row_entries(seed, np.flatnonzero(lists.item[seed] >= 0))

    # -- persistence -----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write every fitted source, the per-item state and the precomputed lists."""
        write_state(
            directory,
            "mixer",
            _FORMAT_VERSION,
            meta={"sources": {n: type(s).name for n, s in self.sources.items()}},
            arrays={"available": self.available, "seed_mix": self.seed_mix},
        )
        for name, src in self.sources.items():
            src.save(directory / "sources" / _safe_dir(name))
        if self.lists is not None:
            self.lists.save(directory / "lists")
        if self.counts is not None:
            self.counts.save(directory / "counts")

    @classmethod
    def load(cls, directory: Path, config: RecallConfig) -> Mixer:
        """Read a mixer written by :meth:`save` (the precomputed lists memory-mapped)."""
        state = read_state(directory, "mixer", _FORMAT_VERSION)
        kinds: dict[str, Any] = state.meta.get("sources") or {}
        sources = {
            n: get_recall(kind).load(directory / "sources" / _safe_dir(n))
            for n, kind in kinds.items()
        }
        lists_dir = directory / "lists"
        lists = PrecomputedLists.load(lists_dir) if lists_dir.exists() else None
        return cls.from_config(
            config,
            sources,
            state.array("seed_mix", directory).astype(np.int32),
            state.array("available", directory).astype(bool),
            lists,
        )


class _TopCache:
    """Bounded LRU of :meth:`Mixer.top` rows by (seed, k); thread-safe; hands out copies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = self.misses = 0
        self._rows: OrderedDict[tuple[int, int], tuple[NDArray[Any], ...]] = OrderedDict()
        self._state: tuple[int, int] | None = None
        self._sources: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def rows(
        self,
        seeds: NDArray[np.int32],
        k: int,
        state: tuple[int, int],
        compute: Any,
    ) -> Candidates:
        if not len(seeds):
            return compute(seeds, k)  # type: ignore[no-any-return]
        keys = [(int(s), int(k)) for s in seeds.tolist()]
        with self._lock:
            if state != self._state:  # other lists or availability: nothing cached holds
                self._rows.clear()
                self.nbytes, self._state = 0, state
            found = [self._rows.get(key) for key in keys]
            for key, row in zip(keys, found, strict=True):
                if row is not None:
                    self._rows.move_to_end(key)
        miss = [i for i, row in enumerate(found) if row is None]
        self.hits += len(keys) - len(miss)
        self.misses += len(miss)
        if not miss:
            sources = self._sources
        else:
            part = compute(seeds[miss], k)
            sources = self._sources = part.sources
            fresh = []
            for j, i in enumerate(miss):
                row = (part.item[j], part.score[j], part.source_score[j], part.source_rank[j])
                found[i] = row = tuple(np.array(a) for a in row)  # owned, not views
                fresh.append((keys[i], row))
            with self._lock:
                if state == self._state:
                    for key, row in fresh:
                        if key not in self._rows:
                            self._rows[key] = row
                            self.nbytes += sum(a.nbytes for a in row)
                    while self.nbytes > self.max_bytes and self._rows:
                        _, old = self._rows.popitem(last=False)
                        self.nbytes -= sum(a.nbytes for a in old)
        # np.stack copies: a stage that edits its candidates in place never edits the cache
        return Candidates(*(np.stack([row[f] for row in found]) for f in range(4)), sources)


def _safe_dir(name: str) -> str:
    """A directory name for a source name (never a path: no separators, no dot-dot)."""
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", name) and ".." not in name:
        return name
    return "src-" + hashlib.sha256(name.encode()).hexdigest()[:16]


@register_stage("recall")
class MixStage(Stage):
    """The first stage: each seed's fused recall list, filtered, filled up to the width."""

    def __init__(self, mixer: Mixer) -> None:
        self.mixer = mixer

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> MixStage:
        return cls(parts["mixer"])

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        return self.mixer.top(request.seeds, max(candidates.width, request.k))

    def __repr__(self) -> str:
        return f"MixStage({self.mixer!r})"


def _rrf(
    mix: MixConfig, source_order: Sequence[str], u_rank: NDArray[np.int32]
) -> NDArray[np.float64]:
    """Each row's reciprocal-rank fusion score: the sum over sources of
    ``weight / (rrf_k + rank + 1)`` (0 where the source has no rank, -1).

    The terms come from a table of every (source, rank) (ranks are below the mix's list
    widths), gathered in one pass instead of computed per entry; the same float64 values
    summed in the same order as the per-entry formula.
    """
    n_src = len(source_order)
    if u_rank.size == 0:
        return np.zeros(u_rank.shape[0], np.float64)
    weights = np.array([mix.weight(s) for s in source_order], dtype=np.float64)
    top = int(u_rank.max()) + 1
    ranks = np.arange(top, dtype=np.int32)
    table = np.zeros((n_src, top + 1), np.float64)  # column 0: absent (rank -1)
    table[:, 1:] = weights[:, None] / (mix.rrf_k + ranks[None, :] + 1.0)
    index = u_rank + (np.arange(n_src, dtype=np.int32) * (top + 1) + 1)[None, :]
    return table.ravel()[index].sum(axis=1)
