"""Incremental builds: the counts an engine keeps, and adding new events to them.

A build with ``[build] incremental = true`` keeps, beside its fitted sources, what the
behavioural sources' scores are made of (:class:`CountState`): per pair source the full unit x
unit co-occurrence counts (before ``min_support``) and each unit's occurrences, per popularity
source the per-item count of each event type, the per-item view and purchase totals that pick
each unit's representative item, and hashes of the order and session ids counted.

:func:`append_counts` adds a batch of new events: every stored count is decayed to the new
reference time (the last event of the union; decay is exponential, so ``c(T') = c(T) *
0.5 ** ((T' - T) / half_life)``) and the new groups' counts, weighted at that time, are added.
Only the rows whose candidates can change are recomputed:

- a unit in a new basket/session (its counts and occurrence change);
- with a similarity that divides by the candidate's occurrence (``alpha < 1``: Ochiai,
  asymmetric cosine), every row holding such a unit;
- a row with a count that decay moved across ``min_support``;
- every row holding a unit whose representative item changed.

Scores of the other rows are unchanged: a common decay factor cancels in every similarity.
Popularity lists are refitted from the updated counts (one pass over the items), and the
seeds whose popular list changed are re-mixed with the others.

Supported sources are ``co_purchase`` (``unit = "basket"``), ``co_view`` and ``popular`` (not
scoped by related categories); :func:`unsupported` names the others, which a build with
``incremental = true`` refuses. New baskets and sessions must be new: an appended event whose
``order_id`` or ``session_id`` was already counted is refused (its basket would change size,
and a full build is the honest answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import Dataset, IdMap
from recset.errors import DataError
from recset.recall._base import RecallBase
from recset.recall._config import RecallConfig
from recset.recall._cooccurrence import (
    PairRecall,
    cooccurrence_counts,
    representatives,
    rows_topk,
    similarity_scales,
)
from recset.recall.co_purchase import CoPurchaseRecall
from recset.recall.co_view import CoViewRecall
from recset.recall.popular import EVENTS, PopularRecall
from recset.signals import Signals, csr_gather
from recset.storage import read_state, write_state

_log = logging.getLogger(__name__)

KIND = "counts"
_FORMAT_VERSION = 1
_DAY = 86_400.0


#: Counts a pair source's groups among the appended events: ``(name, source, ref_time) ->
#: (unit x unit counts with a zero diagonal, occurrences per unit)``, the groups weighted at
#: ``ref_time`` (:func:`~recset.recall._cooccurrence.cooccurrence_counts` of the new groups).
#: In process by default; ``recset.spark`` counts them on Spark.
PairCounter = Callable[[str, PairRecall, int], tuple[sp.csr_matrix, NDArray[np.float32]]]


def unsupported(sources: Mapping[str, RecallBase]) -> list[str]:
    """``"name (type)"`` of every fitted source an incremental build cannot update."""
    bad = []
    for name, src in sources.items():
        kind = type(src)
        if kind is CoPurchaseRecall and src.config.unit == "basket":  # type: ignore[attr-defined]
            continue
        if kind is CoViewRecall:
            continue
        if kind is PopularRecall and src.config.scope != "related_categories":  # type: ignore[attr-defined]
            continue
        bad.append(f"{name} ({src.name})")
    return bad


def decay_factor(half_life_days: float | None, start: int, end: int) -> float:
    """What a count decayed to time ``start`` is multiplied by to be decayed to ``end``."""
    if not half_life_days:
        return 1.0
    return float(0.5 ** (max(end - start, 0) / _DAY / half_life_days))


def id_hashes(ids: IdMap) -> NDArray[np.uint64]:
    """Sorted 64-bit hashes of an id map's values (order or session ids)."""
    values = np.asarray(ids.values, dtype=object)
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.sort(pd.util.hash_array(values.astype(str).astype(object)))


@dataclass
class CountState:
    """What an incremental build keeps: ``ref_time`` (epoch seconds the decayed counts are
    measured at) and named arrays (see the module docstring)."""

    ref_time: int
    arrays: dict[str, NDArray[np.generic]] = field(default_factory=dict)

    def matrix(self, name: str, n: int) -> sp.csr_matrix:
        a = self.arrays
        return sp.csr_matrix(
            (a[f"{name}.data"], a[f"{name}.indices"], a[f"{name}.indptr"]), shape=(n, n)
        )

    def set_matrix(self, name: str, m: sp.csr_matrix) -> None:
        m = m.tocsr()
        m.sort_indices()
        self.arrays[f"{name}.data"] = m.data.astype(np.float32)
        self.arrays[f"{name}.indices"] = m.indices.astype(np.int32)
        self.arrays[f"{name}.indptr"] = m.indptr.astype(np.int64)

    def save(self, directory: Path) -> None:
        write_state(
            directory,
            KIND,
            _FORMAT_VERSION,
            meta={"ref_time": self.ref_time, "arrays": sorted(self.arrays)},
            arrays=self.arrays,
        )

    @classmethod
    def load(cls, directory: Path) -> CountState:
        state = read_state(directory, KIND, _FORMAT_VERSION)
        names = state.meta.get("arrays") or []
        return cls(int(state.meta["ref_time"]), {n: state.array(n, directory) for n in names})


def _pair_groups(src: PairRecall, signals: Signals) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
    groups = src._groups(signals, src.unit_of_item_, len(src.rep_))
    if groups is None:  # unsupported() lets only group-count sources through
        raise DataError(f"source {src.name!r} keeps no group counts")
    return groups


def build_counts(
    dataset: Dataset, sources: Mapping[str, RecallBase], signals: Signals
) -> CountState:
    """The counts of a full build on ``dataset`` (its sources already fitted)."""
    state = CountState(int(dataset.time_range[1]))
    a = state.arrays
    a["order_keys"] = id_hashes(dataset.orders_map)
    a["session_keys"] = id_hashes(dataset.sessions_map)
    a["item_views"] = np.asarray(signals.item_views, dtype=np.float32)
    a["item_purchases"] = np.asarray(signals.item_purchases, dtype=np.float32)
    for name, src in sources.items():
        if isinstance(src, PairRecall):
            counts, occ = cooccurrence_counts(*_pair_groups(src, signals))
            state.set_matrix(name, counts)
            a[f"{name}.occ"] = occ.astype(np.float32)
        elif isinstance(src, PopularRecall):
            hl = src.config.half_life_days or None
            for e in EVENTS:
                a[f"{name}.{e}"] = dataset.item_counts(e, half_life_days=hl)
    return state


@dataclass
class AppendResult:
    """The updated sources and counts; the seeds whose lists must be mixed anew (a source
    gives them other candidates), and per source the seeds whose candidates from it kept
    their order but not their scores (the mixes are rank-based: only the reasons change)."""

    sources: dict[str, RecallBase]
    state: CountState
    seeds: NDArray[np.int32]
    rescored: dict[str, NDArray[np.int32]]
    rows_recomputed: dict[str, int]


def _check_new_groups(state: CountState, new: Dataset, where: str) -> None:
    for kind, ids in (("order_id", new.orders_map), ("session_id", new.sessions_map)):
        keys = id_hashes(ids)
        stored = state.arrays["order_keys" if kind == "order_id" else "session_keys"]
        clash = np.isin(keys, stored)
        if clash.any():
            values = np.asarray(ids.values, dtype=object)
            hashed = pd.util.hash_array(values.astype(str).astype(object))
            first = values[np.isin(hashed, stored)][:5].tolist()
            raise DataError(
                f"{where}: {int(clash.sum())} {kind} values were already counted by the engine "
                f"(first: {first}); appended events must hold whole new orders and sessions "
                "(a basket that grows changes its pairs): run a full build instead"
            )


def _splice(
    src: PairRecall, rows: NDArray[np.int64], idx: NDArray[np.int32], val: NDArray[np.float32]
) -> None:
    """Replace the CSR candidate rows ``rows`` of a pair source with ``idx``/``val``."""
    n = len(src.indptr_) - 1
    counts = np.diff(src.indptr_)
    valid = idx >= 0
    new_counts = counts.copy()
    new_counts[rows] = valid.sum(axis=1)
    indptr = np.r_[0, np.cumsum(new_counts)].astype(np.int64)
    kept = np.ones(n, dtype=bool)
    kept[rows] = False
    kept_rows = np.flatnonzero(kept)
    nb = np.empty(int(indptr[-1]), dtype=np.int32)
    sc = np.empty(int(indptr[-1]), dtype=np.float32)
    old_at, new_at = csr_gather(src.indptr_, kept_rows), csr_gather(indptr, kept_rows)
    nb[new_at] = src.neighbors_[old_at]
    sc[new_at] = src.scores_[old_at]
    fresh = csr_gather(indptr, rows)
    nb[fresh] = idx[valid]
    sc[fresh] = val[valid]
    src.indptr_, src.neighbors_, src.scores_ = indptr, nb, sc


def _update_pair(
    name: str,
    src: PairRecall,
    state: CountState,
    new_state: CountState,
    signals: Signals,
    factor: float,
    totals: tuple[NDArray[np.float32], NDArray[np.float32]],
    available: NDArray[np.bool_],
    count_pairs: PairCounter | None,
    ref: int,
) -> tuple[PairRecall, NDArray[np.bool_], NDArray[np.bool_]]:
    """The source updated with the new groups; which units' rows were recomputed, and which
    rows hold other candidate items now (the others changed their scores only)."""
    n_units = len(src.rep_)
    old = state.matrix(name, n_units)
    occ_old = state.arrays[f"{name}.occ"]
    if count_pairs is None:
        new_counts, new_occ = cooccurrence_counts(*_pair_groups(src, signals))
    else:
        new_counts, new_occ = count_pairs(name, src, ref)
        if new_counts.shape != (n_units, n_units) or new_occ.shape != (n_units,):
            raise DataError(
                f"source {name!r}: the new counts have shape {new_counts.shape} / "
                f"{new_occ.shape}, not ({n_units}, {n_units}) / ({n_units},)"
            )
    scaled = old.copy()
    scaled.data = (scaled.data * np.float32(factor)).astype(np.float32)
    counts = (scaled + new_counts).tocsr().astype(np.float32)
    counts.sort_indices()
    occ = (occ_old * np.float32(factor) + new_occ).astype(np.float32)
    cfg = src.config
    alpha = {"ochiai": 0.5, "confidence": 1.0}.get(cfg.similarity, cfg.alpha)
    redo = new_occ > 0
    if alpha < 1.0:  # the candidate's occurrence divides: every row holding a changed unit
        redo |= np.asarray(counts @ redo.astype(np.float32)).ravel() > 0
    if cfg.min_support > 0 and factor != 1.0:
        crossed = (old.data >= cfg.min_support) != (scaled.data >= cfg.min_support)
        redo[np.repeat(np.arange(n_units), np.diff(old.indptr))[crossed]] = True
    views, purchases = totals
    out = type(src)(cfg)
    out.unit_of_item_ = src.unit_of_item_
    out.rep_ = representatives(src.unit_of_item_, n_units, views, purchases, available)
    out.indptr_, out.neighbors_, out.scores_ = src.indptr_, src.neighbors_, src.scores_
    rows = np.flatnonzero(redo).astype(np.int64)
    if len(rows):
        left, right = similarity_scales(occ, alpha)
        idx, val = rows_topk(
            counts[rows],
            rows,
            left,
            right,
            cfg.max_candidates,
            min_support=cfg.min_support,
            min_value=max(cfg.min_similarity, 1e-12),
        )
        _splice(out, rows, idx, val)
    # the rows whose candidate items (not only their scores) changed: a recomputed row with
    # other neighbours, or a row holding a unit served by another representative item now
    items = np.zeros(n_units, dtype=bool)
    items[rows] = _rows_differ(src.indptr_, src.neighbors_, out.indptr_, out.neighbors_, rows)
    moved = out.rep_ != src.rep_
    if moved.any():
        holds = moved[out.neighbors_]
        row_of = np.repeat(np.arange(n_units), np.diff(out.indptr_))
        items[row_of[holds]] = True
    new_state.set_matrix(name, counts)
    new_state.arrays[f"{name}.occ"] = occ
    return out, redo, items


def _rows_differ(
    indptr_a: NDArray[np.int64],
    nb_a: NDArray[np.int32],
    indptr_b: NDArray[np.int64],
    nb_b: NDArray[np.int32],
    rows: NDArray[np.int64],
) -> NDArray[np.bool_]:
    """For each of ``rows``: do the two CSR neighbour lists differ?"""
    len_a, len_b = np.diff(indptr_a)[rows], np.diff(indptr_b)[rows]
    differ = len_a != len_b
    same = rows[~differ]
    a, b = nb_a[csr_gather(indptr_a, same)], nb_b[csr_gather(indptr_b, same)]
    which = np.repeat(np.arange(len(same)), len_a[~differ])
    bad = np.bincount(which[a != b], minlength=len(same)).astype(bool)
    differ[np.flatnonzero(~differ)] = bad
    return differ


def append_counts(
    state: CountState,
    sources: Mapping[str, RecallBase],
    new: Dataset,
    config: RecallConfig,
    *,
    available: NDArray[np.bool_],
    mixed: Collection[str] | None = None,
    where: str = "appended events",
    count_pairs: PairCounter | None = None,
) -> AppendResult:
    """Add the events of ``new`` (same catalog and item ids as the build) to ``state``.

    Returns the updated sources (new objects; ``sources`` is not changed), the new counts,
    and the seeds whose mixed lists may differ from the stored ones: those of the sources
    named in ``mixed`` (the mixes' sources and filters; default all). A source that is only
    the fallback fills lists when they are served, so its changes re-mix nothing.

    ``count_pairs`` counts the new groups' pairs of each pair source (default: in process
    from ``new``; ``recset.spark.SparkPairCounter`` on Spark). The merge into the stored
    counts and the recomputed rows run in process either way: the stored counts are the
    engine version's arrays, and the rows recomputed are those of the units the new events
    touch.
    """
    bad = unsupported(sources)
    if bad:
        raise DataError(
            f"the engine mixes sources an incremental build cannot update: {bad}; run a full "
            "build (incremental builds support co_purchase with unit = 'basket', co_view and "
            "popular not scoped by related categories)"
        )
    _check_new_groups(state, new, where)
    ref = max(state.ref_time, int(new.time_range[1]))
    hl = config.build.half_life_days or None
    factor = decay_factor(hl, state.ref_time, ref)
    signals = Signals(
        new, half_life_days=hl, max_group_size=config.build.max_group_size, ref_time=ref
    )
    out = CountState(ref)
    a = out.arrays
    a["order_keys"] = np.union1d(state.arrays["order_keys"], id_hashes(new.orders_map))
    a["session_keys"] = np.union1d(state.arrays["session_keys"], id_hashes(new.sessions_map))
    f32 = np.float32(factor)
    views = (state.arrays["item_views"] * f32 + signals.item_views).astype(np.float32)
    purchases = (state.arrays["item_purchases"] * f32 + signals.item_purchases).astype(np.float32)
    a["item_views"], a["item_purchases"] = views, purchases
    n_items = new.n_items
    in_mix = set(sources) if mixed is None else set(mixed)
    redo_items = np.zeros(n_items, dtype=bool)
    rescored_items: dict[str, NDArray[np.bool_]] = {}
    updated: dict[str, RecallBase] = {}
    recomputed: dict[str, int] = {}
    for name, src in sources.items():
        if isinstance(src, PairRecall):
            fresh, redo, other = _update_pair(
                name,
                src,
                state,
                out,
                signals,
                factor,
                (views, purchases),
                available,
                count_pairs,
                ref,
            )
            if name in in_mix:
                redo_items |= other[src.unit_of_item_]
            rescored_items[name] = (redo & ~other)[src.unit_of_item_]
            recomputed[name] = int(redo.sum())
        elif isinstance(src, PopularRecall):
            hl_pop = src.config.half_life_days or None
            f_pop = np.float32(decay_factor(hl_pop, state.ref_time, ref))
            counts = {}
            for e in EVENTS:
                add = new.item_counts(e, half_life_days=hl_pop, now=ref)
                counts[e] = (state.arrays[f"{name}.{e}"] * f_pop + add).astype(np.float32)
                a[f"{name}.{e}"] = counts[e]
            fresh = type(src)(src.config).fit_counts(new, counts, fitted=updated)
            other = (fresh.lists_ != src.lists_).any(axis=1)
            rescored = (fresh.scores_ != src.scores_).any(axis=1) & ~other
            cat = np.where(src.item_category_ >= 0, src.item_category_, len(other) - 1)
            if name in in_mix:
                redo_items |= other[cat]
            rescored_items[name] = rescored[cat]
            recomputed[name] = int((other | rescored).sum())
        else:  # unreachable: unsupported() refused it
            fresh = src
        updated[name] = fresh
    seeds = np.flatnonzero(redo_items).astype(np.int32)
    rescored_seeds = {
        n: np.flatnonzero(m & ~redo_items).astype(np.int32)
        for n, m in rescored_items.items()
        if n in in_mix
    }
    _log.info(
        "append: %d new events, decay factor %.6f, %d of %d seeds to re-mix; rows recomputed "
        "per source: %s",
        len(new.events.item),
        factor,
        len(seeds),
        n_items,
        recomputed,
    )
    return AppendResult(updated, out, seeds, rescored_seeds, recomputed)
