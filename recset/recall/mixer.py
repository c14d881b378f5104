"""The mixer: runs a category's recall mix and fuses it into one candidate list per seed.

Every candidate keeps the score and rank it had in every source that proposed it: these are the
reasons shown to users and the ranker's features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from recset.recall._base import RecallBase

if TYPE_CHECKING:
    from recset.config import MixConfig

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixedCandidates:
    """Fused candidates for a batch of seeds.

    Attributes
    ----------
    item : ndarray of int32, shape (n_seeds, n)
        Candidates best first, padded with -1.
    score : ndarray of float32, shape (n_seeds, n)
        Fused score (see :class:`~recset.config.MixConfig`), non-increasing along each row,
        padded with -inf.
    source_score : ndarray of float32, shape (n_seeds, n, n_sources)
        Each source's score for the candidate, NaN where the source did not propose it.
    source_rank : ndarray of int32, shape (n_seeds, n, n_sources)
        The candidate's 0-based rank in each source's own list, -1 where absent.
    sources : tuple of str
        The source names along the last axis.
    """

    item: NDArray[np.int32]
    score: NDArray[np.float32]
    source_score: NDArray[np.float32]
    source_rank: NDArray[np.int32]
    sources: tuple[str, ...]

    @classmethod
    def empty(cls, n_seeds: int, n: int, sources: tuple[str, ...]) -> MixedCandidates:
        s = len(sources)
        return cls(
            np.full((n_seeds, n), -1, np.int32),
            np.full((n_seeds, n), -np.inf, np.float32),
            np.full((n_seeds, n, s), np.nan, np.float32),
            np.full((n_seeds, n, s), -1, np.int32),
            sources,
        )

    def n_sources_per_candidate(self) -> NDArray[np.int64]:
        return (self.source_rank >= 0).sum(axis=2)


class Mixer:
    """Runs recall mixes over fitted sources.

    Parameters
    ----------
    sources : mapping of str to RecallBase
        Fitted source instances by name (filters included).
    mixes : sequence of MixConfig
        ``mixes[0]`` is the default; the others are category overrides.
    seed_mix : ndarray of int32, shape (n_items,)
        Index into ``mixes`` of each item's mix (by its category).
    source_order : sequence of str
        The names along :attr:`MixedCandidates.sources` (all recall sources of all mixes).
    """

    def __init__(
        self,
        sources: Mapping[str, RecallBase],
        mixes: Sequence[MixConfig],
        seed_mix: NDArray[np.int32],
        source_order: Sequence[str],
    ) -> None:
        self.sources = dict(sources)
        self.mixes = list(mixes)
        self.seed_mix = np.asarray(seed_mix, dtype=np.int32)
        self.source_order = tuple(source_order)
        self._index = {s: i for i, s in enumerate(self.source_order)}
        for mix in self.mixes:
            for name in (*mix.sources, *mix.filters):
                if name not in self.sources:
                    raise ValueError(f"mix names source {name!r}, which is not fitted")

    def mix_of(self, seeds: NDArray[np.int32]) -> NDArray[np.int32]:
        """Mix index of each seed (unknown seeds get the default mix)."""
        seeds = np.asarray(seeds)
        ok = (seeds >= 0) & (seeds < len(self.seed_mix))
        return np.where(ok, self.seed_mix[np.where(ok, seeds, 0)], 0)

    def mix(self, seeds: NDArray[np.int32], n: int) -> MixedCandidates:
        """Fused top-``n`` candidates of each seed under its category's mix."""
        seeds = np.asarray(seeds, dtype=np.int32)
        out = MixedCandidates.empty(len(seeds), n, self.source_order)
        which = self.mix_of(seeds)
        for m in np.unique(which):
            rows = np.flatnonzero(which == m)
            part = self._mix_one(self.mixes[int(m)], seeds[rows], n)
            out.item[rows] = part.item
            out.score[rows] = part.score
            out.source_score[rows] = part.source_score
            out.source_rank[rows] = part.source_rank
        return out

    def _mix_one(self, mix: MixConfig, seeds: NDArray[np.int32], n: int) -> MixedCandidates:
        n_seeds = len(seeds)
        n_src = len(self.source_order)
        items, scores, src, ranks, order_of = [], [], [], [], []
        for j, name in enumerate(mix.sources):
            c = self.sources[name].recall_many(seeds, mix.limit(name, n))  # type: ignore[attr-defined]
            w = c.item.shape[1]
            items.append(c.item)
            scores.append(c.score)
            src.append(np.full((n_seeds, w), self._index[name], np.int16))
            ranks.append(np.broadcast_to(np.arange(w, dtype=np.int32), (n_seeds, w)))
            order_of.append(np.full((n_seeds, w), j, np.int16))
        if not items:
            return MixedCandidates.empty(n_seeds, n, self.source_order)
        item = np.concatenate(items, axis=1)
        valid = (item >= 0) & (item != seeds[:, None])
        for f in mix.filters:
            valid &= self.sources[f].keep(seeds, item)  # type: ignore[attr-defined]
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
        weights = np.array([mix.weight(s) for s in self.source_order], dtype=np.float64)
        present = u_rank >= 0
        # absent ranks (-1) masked before dividing: with rrf_k = 0 they would divide by 0
        rrf = np.where(present, weights / (mix.rrf_k + np.maximum(u_rank, 0) + 1.0), 0.0)
        rrf = rrf.sum(axis=1)
        if mix.fusion == "sequential":
            first_src = np.full(u, np.iinfo(np.int64).max)
            np.minimum.at(first_src, inv, pos.astype(np.int64) * (1 << 20) + rk)
            key = -first_src.astype(np.float64)
        else:
            key = rrf
        u_row = uniq // width
        u_item = (uniq % width).astype(np.int32)
        order = np.lexsort((u_item, -key, u_row))
        u_row_s = u_row[order]
        counts = np.bincount(u_row_s, minlength=n_seeds)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        p = np.arange(len(order)) - starts[u_row_s]
        keep = p < n
        out = MixedCandidates.empty(n_seeds, n, self.source_order)
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
