"""Behaviour signals aggregated into sparse item x item (and user x category) matrices.

Everything is computed lazily on first use and cached, so a recall mix only pays for the
signals it uses. All matrices are ``scipy.sparse.csr_matrix`` of ``float32``.
"""

from __future__ import annotations

import logging
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, VIEW, Dataset, Groups
from recset.errors import ConfigError
from recset.signals._topk import row_blocks

_log = logging.getLogger(__name__)

_DAY = 86_400.0


def _zero_diagonal(m: sp.csr_matrix) -> sp.csr_matrix:
    m = m.tocsr()
    m.setdiag(0)
    m.eliminate_zeros()
    m.sort_indices()
    return m


class Signals:
    """Lazily computed behaviour signals of one :class:`~recset.data.Dataset`.

    Parameters
    ----------
    dataset : Dataset
    half_life_days : float or None
        Exponential decay of every count by the age of its basket / session / event, measured
        from the dataset's last event. ``None`` (or 0) counts everything fully.
    max_group_size : int
        Baskets and sessions with more distinct items than this are left out of pair counts:
        a 150-item stock-up trip says little about which two items go together and costs
        ``150**2`` pairs.
    max_memory : int, optional
        Memory budget of the build in bytes, which the sources' fits read to size their
        blocks (None: fixed block sizes).
    ref_time : int, optional
        The time (epoch seconds) ages are measured from; default the dataset's last event.
        An incremental build counts new events at the reference time of the union.

    Attributes (all cached)
    -----------------------
    co_purchase : csr (n_items, n_items)
        (Decayed) number of baskets holding both items; symmetric, zero diagonal.
    co_purchase_directed : csr (n_items, n_items)
        ``[a, b]``: baskets where ``a`` was added before ``b`` (same-second pairs count both
        ways). Its support equals ``co_purchase``'s.
    co_view : csr (n_items, n_items)
        Sessions in which both items were viewed; symmetric, zero diagonal.
    purchase_after_view : csr (n_items, n_items)
        ``[a, b]``: sessions where ``a`` was viewed and a different item ``b`` was bought later.
    co_purchase_only : csr (n_items, n_items)
        ``co_purchase_directed`` restricted to pairs never co-viewed and never
        purchased-after-viewed in either direction: the cleaner complementarity signal.
    item_purchases, item_views : ndarray (n_items,)
        (Decayed) event counts.
    user_category : csr (n_users, n_categories)
        1 where the user bought from the category.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        half_life_days: float | None = None,
        max_group_size: int = 100,
        max_memory: int | None = None,
        ref_time: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.max_memory = max_memory
        self.half_life_days = half_life_days or None
        self.max_group_size = max_group_size
        self._ref_time = dataset.time_range[1] if ref_time is None else int(ref_time)

    def __repr__(self) -> str:
        return f"Signals({self.dataset!r}, half_life_days={self.half_life_days})"

    # -- helpers -------------------------------------------------------------------------
    def _weights(self, timestamps: NDArray[np.int64]) -> NDArray[np.float32]:
        if self.half_life_days is None:
            return np.ones(len(timestamps), dtype=np.float32)
        age = np.maximum(self._ref_time - timestamps, 0) / _DAY
        return np.power(0.5, age / self.half_life_days).astype(np.float32)

    def _usable(self, groups: Groups) -> NDArray[np.bool_]:
        sizes = groups.sizes()
        return (sizes >= 2) & (sizes <= self.max_group_size)

    def _cooccurrence(self, groups: Groups) -> sp.csr_matrix:
        n = self.dataset.n_items
        keep = self._usable(groups)
        w = self._weights(groups.timestamp) * keep
        m = groups.matrix(n)
        weighted = sp.diags(w.astype(np.float32)) @ m
        return _zero_diagonal((m.T @ weighted).astype(np.float32))

    def group_matrix(self, kind: str) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        """A binary group x item matrix and one (decayed) weight per group.

        ``kind`` is ``"basket"`` (purchases per order), ``"view_session"`` (views per
        session) or ``"user_purchase"`` (everything a user bought; weight 1). Groups larger
        than ``max_group_size`` get weight 0 (except for ``user_purchase``).
        """
        n = self.dataset.n_items
        if kind == "user_purchase":
            m = self.dataset.interactions("purchase", binary=True)
            return m, np.ones(m.shape[0], dtype=np.float32)
        if kind == "basket":
            groups = self.baskets
        elif kind == "view_session":
            groups = self.dataset.session_events("view")
        else:
            raise ConfigError(
                "The 'kind' parameter must be one of ['basket', 'view_session', "
                f"'user_purchase']. Got {kind!r} instead."
            )
        w = self._weights(groups.timestamp) * (groups.sizes() <= self.max_group_size)
        return groups.matrix(n), w.astype(np.float32)

    def occurrences(self, kind: str) -> NDArray[np.float32]:
        """(Decayed) number of groups of ``kind`` holding each item, shape (n_items,)."""
        m, w = self.group_matrix(kind)
        return np.asarray(m.T @ w, dtype=np.float32).ravel()

    # -- signals -------------------------------------------------------------------------
    @cached_property
    def item_purchases(self) -> NDArray[np.float32]:
        return self.dataset.item_counts(
            "purchase", half_life_days=self.half_life_days, now=self._ref_time
        )

    @cached_property
    def item_views(self) -> NDArray[np.float32]:
        return self.dataset.item_counts(
            "view", half_life_days=self.half_life_days, now=self._ref_time
        )

    @cached_property
    def baskets(self) -> Groups:
        return self.dataset.baskets

    @cached_property
    def co_purchase(self) -> sp.csr_matrix:
        m = self._cooccurrence(self.baskets)
        _log.info("co_purchase: %d pairs", m.nnz)
        return m

    @cached_property
    def co_view(self) -> sp.csr_matrix:
        m = self._cooccurrence(self.dataset.session_events("view"))
        _log.info("co_view: %d pairs", m.nnz)
        return m

    @cached_property
    def co_purchase_directed(self) -> sp.csr_matrix:
        ds = self.dataset
        ev = ds.events
        sel = (ev.event == PURCHASE) & (ev.order >= 0)
        order, item, ts = ev.order[sel], ev.item[sel], ev.timestamp[sel]
        b = self.baskets
        keep = self._usable(b)
        # per basket entry: its time = first purchase time of that item in that order (events
        # are time-sorted, so np.unique's first index is the earliest)
        key = order.astype(np.int64) * ds.n_items + item
        uniq, first_idx = np.unique(key, return_index=True)
        entry_key = np.repeat(b.key.astype(np.int64), b.sizes()) * ds.n_items + b.item
        entry_time = ts[first_idx[np.searchsorted(uniq, entry_key)]]
        w_basket = self._weights(b.timestamp)
        rows: list[NDArray[np.int32]] = []
        cols: list[NDArray[np.int32]] = []
        vals: list[NDArray[np.float32]] = []
        sizes = b.sizes()
        # pairs of every usable basket, in chunks of consecutive baskets to bound memory (the
        # pairs come out in the same order whatever the chunks)
        groups = np.flatnonzero(keep)
        cost = sizes[groups].astype(np.int64) ** 2
        for lo, hi in row_blocks(cost, 20_000_000, max(len(groups), 1)):
            r, c, v = _ordered_pairs(groups[lo:hi], b.indptr, b.item, entry_time, w_basket)
            rows.append(r)
            cols.append(c)
            vals.append(v)
        n = ds.n_items
        if rows:
            m = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
            )
        else:
            m = sp.csr_matrix((n, n), dtype=np.float32)
        m.sum_duplicates()
        return _zero_diagonal(m.astype(np.float32))

    @cached_property
    def purchase_after_view(self) -> sp.csr_matrix:
        ds = self.dataset
        ev = ds.events
        n = ds.n_items
        sel = ev.session >= 0
        s, it, kind, ts = ev.session[sel], ev.item[sel], ev.event[sel], ev.timestamp[sel]
        n_s = len(ds.sessions_map)
        v = kind == VIEW
        p = kind == PURCHASE
        # first view time and last purchase time per (session, item)
        first_view = sp.csr_matrix((n_s, n), dtype=np.float64)
        if v.any():
            order = np.lexsort((ts[v], it[v], s[v]))
            sv, iv, tv = s[v][order], it[v][order], ts[v][order]
            first = np.r_[True, (sv[1:] != sv[:-1]) | (iv[1:] != iv[:-1])]
            first_view = sp.csr_matrix(
                (tv[first].astype(np.float64) + 1.0, (sv[first], iv[first])), shape=(n_s, n)
            )
        if not p.any() or first_view.nnz == 0:
            return sp.csr_matrix((n, n), dtype=np.float32)
        # pairs (viewed a, bought b) within a session, a viewed before b was bought
        sp_, ip, tp = s[p], it[p], ts[p]
        fv = first_view.tocsr()
        counts = np.diff(fv.indptr)[sp_]
        rep = np.repeat(np.arange(len(sp_)), counts)
        starts = fv.indptr[sp_]
        offs = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        a = fv.indices[starts[rep] + offs]
        a_time = fv.data[starts[rep] + offs] - 1.0
        b_item = ip[rep]
        ok = (a != b_item) & (a_time <= tp[rep])
        w = self._weights(tp[rep][ok])
        # one count per (session, a, b)
        key = (sp_[rep][ok].astype(np.int64) * n + a[ok]) * n + b_item[ok]
        _, first = np.unique(key, return_index=True)
        m = sp.csr_matrix((w[first], (a[ok][first], b_item[ok][first])), shape=(n, n))
        m.sum_duplicates()
        _log.info("purchase_after_view: %d pairs", m.nnz)
        return _zero_diagonal(m.astype(np.float32))

    @cached_property
    def co_purchase_only(self) -> sp.csr_matrix:
        """Directed co-purchases never co-viewed nor purchased-after-viewed (strict)."""
        return self._only(
            self.co_view, self.purchase_after_view, self.purchase_after_view.T.tocsr()
        )

    @cached_property
    def substitution_views(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(co-view, view-then-buy-another) counted only where the views were comparisons.

        A session where both items were bought is a bundle being assembled, not a comparison:
        its co-view of the pair does not count. ``[a, b]`` of the second matrix counts sessions
        where ``a`` was viewed but not bought and ``b`` was bought.
        """
        views, _ = self._session_matrix("view")
        buys, _ = self._session_matrix("purchase")
        both = views.multiply(buys).tocsr()
        both.data[:] = 1.0
        co_view = (views.T @ views - both.T @ both).tocsr()
        co_view.setdiag(0)
        co_view.data[co_view.data < 0] = 0
        co_view.eliminate_zeros()
        viewed_only = (views - both).tocsr()
        viewed_only.eliminate_zeros()
        pav = (viewed_only.T @ buys).tocsr()
        pav.setdiag(0)
        pav.eliminate_zeros()
        return co_view.astype(np.float32), pav.astype(np.float32)

    @cached_property
    def co_purchase_only_substitution(self) -> sp.csr_matrix:
        """Directed co-purchases whose co-views were never comparisons (see
        :attr:`substitution_views`): the default signal of ``co_purchase_only``."""
        co_view, pav = self.substitution_views
        return self._only(co_view, pav, pav.T.tocsr())

    def _session_matrix(self, event: str) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        """Binary session x item matrix of one event type, over every session."""
        ds = self.dataset
        ev = ds.events
        code = VIEW if event == "view" else PURCHASE
        sel = (ev.event == code) & (ev.session >= 0)
        m = sp.csr_matrix(
            (np.ones(int(sel.sum()), np.float32), (ev.session[sel], ev.item[sel])),
            shape=(len(ds.sessions_map), ds.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m, np.ones(m.shape[0], np.float32)

    def _only(self, *exclusions: sp.csr_matrix) -> sp.csr_matrix:
        d = self.co_purchase_directed
        excluded = sum((e != 0).astype(np.int8) for e in exclusions).tocsr()  # type: ignore[union-attr]
        if excluded.nnz == 0:
            return d
        mask = (d != 0).astype(np.int8) - (d != 0).multiply(excluded != 0).astype(np.int8)
        m = d.multiply(mask).tocsr().astype(np.float32)
        m.eliminate_zeros()
        _log.info("co_purchase_only: %d of %d directed pairs kept", m.nnz, d.nnz)
        return m

    @cached_property
    def user_category(self) -> sp.csr_matrix:
        ds = self.dataset
        cat = ds.catalog.category
        ui = ds.interactions("purchase", binary=True).tocoo()
        c = cat[ui.col]
        ok = c >= 0
        m = sp.csr_matrix(
            (np.ones(int(ok.sum()), np.float32), (ui.row[ok], c[ok])),
            shape=(ds.n_users, ds.n_categories),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def _ordered_pairs(
    groups: NDArray[np.int64],
    indptr: NDArray[np.int64],
    items: NDArray[np.int32],
    entry_time: NDArray[np.int64],
    w_group: NDArray[np.float32],
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
    """All (a, b) pairs within each group with time(a) <= time(b), a != b, weighted."""
    starts = indptr[groups]
    sizes = indptr[groups + 1] - starts
    n_pairs = sizes * sizes
    g_rep = np.repeat(np.arange(len(groups)), n_pairs)
    within = np.arange(int(n_pairs.sum())) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    s = sizes[g_rep]
    i = starts[g_rep] + within // s
    j = starts[g_rep] + within % s
    ok = (i != j) & (entry_time[i] <= entry_time[j])
    return (
        items[i[ok]].astype(np.int32),
        items[j[ok]].astype(np.int32),
        w_group[groups[g_rep[ok]]].astype(np.float32),
    )
