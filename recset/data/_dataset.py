"""The immutable :class:`Dataset`: dense ids, catalog arrays, events, sparse views."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data._aspects import aspect_values, decode_aspects
from recset.data._format import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    LoadReport,
    OnBadRows,
    arrow_strings,
    read_validated,
)
from recset.data._ids import IdMap
from recset.data._promotions import Promotions, read_promotions
from recset.errors import ConfigError, DataError
from recset.progress import release_free_memory

EventName = Literal["view", "add_to_cart", "purchase"]

VIEW, ADD_TO_CART, PURCHASE = (EVENT_TYPES.index(e) for e in ("view", "add_to_cart", "purchase"))

_DAY = 86_400.0


def _event_code(event: str) -> int:
    try:
        return EVENT_TYPES.index(event)
    except ValueError:
        raise ConfigError(
            f"The 'event' parameter must be one of {list(EVENT_TYPES)}. Got {event!r} instead."
        ) from None


def _codes(values: pd.Series, idmap: IdMap) -> NDArray[np.int32]:
    return idmap.index(values)


def _is_sorted(values: NDArray[np.int64]) -> bool:
    return bool((values[1:] >= values[:-1]).all())


def _factorize(
    values: pd.Series, order: NDArray[np.intp] | None = None
) -> tuple[NDArray[np.int32], NDArray[np.object_]]:
    """Dense codes of an id column (``-1`` for nulls) and its distinct ids, in first-seen order.

    The same ids and codes as ``IdMap.from_values(values[order])`` and its ``index``, without
    a Python string per row: the column is dictionary-encoded inside Arrow (int32 indices,
    one Python string per distinct id; 30M events hold a few million). ``order`` (a
    permutation) takes the codes in that row order and renumbers the ids by their first
    appearance there.
    """
    import pyarrow as pa

    encoded = arrow_strings(values).dictionary_encode()
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object)
    # one dictionary for every chunk: the hash table is kept across them
    dictionary = encoded.chunk(0).dictionary
    indices = pa.chunked_array([c.indices for c in encoded.chunks], type=pa.int32())
    del encoded
    codes = np.asarray(indices.fill_null(-1).to_numpy(), dtype=np.int32)
    del indices
    ids = np.asarray(dictionary.to_numpy(zero_copy_only=False), dtype=object)
    if order is None:
        return codes, ids
    codes = codes[order]
    seen = pd.unique(codes[codes >= 0])  # old codes in their new first-seen order
    renumber = np.empty(len(ids), dtype=np.int32)
    renumber[seen] = np.arange(len(seen), dtype=np.int32)
    # nulls (-1) index a valid slot and are masked: every id may be null (renumber empty)
    new = renumber[np.maximum(codes, 0)] if len(seen) else np.zeros_like(codes)
    return np.where(codes >= 0, new, -1).astype(np.int32), ids[seen]


def _event_codes(values: pd.Series) -> NDArray[np.int8]:
    """The code of each event name (its position in ``EVENT_TYPES``; ``-1`` when unknown or
    null), looked up inside Arrow: no Python string per event."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = arrow_strings(values)
    found = pc.index_in(names, value_set=pa.array(EVENT_TYPES, type=names.type))
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int8)


def _objects(values: pd.Series) -> NDArray[np.object_]:
    """A string column as an object array with ``None`` for nulls."""
    return values.astype(object).where(values.notna(), None).to_numpy(dtype=object)


@dataclass(frozen=True)
class Catalog:
    """Item attributes as arrays indexed by dense item id (``-1`` where unknown).

    Attributes
    ----------
    category, product_type, product, brand : ndarray of int32, shape (n_items,)
        Dense ids into the matching :class:`IdMap` of the :class:`Dataset`, ``-1`` when null.
    price : ndarray of float32, shape (n_items,)
        ``nan`` when unknown.
    available : ndarray of bool, shape (n_items,)
    title : ndarray of object (str or None), shape (n_items,)
    aspects : ndarray of object (JSON text or None), shape (n_items,)
    category_path : ndarray of object, shape (n_categories,)
        The path of each dense category id.
    """

    category: NDArray[np.int32]
    product_type: NDArray[np.int32]
    product: NDArray[np.int32]
    brand: NDArray[np.int32]
    price: NDArray[np.float32]
    available: NDArray[np.bool_]
    title: NDArray[np.object_]
    aspects: NDArray[np.object_]
    category_path: NDArray[np.object_]

    def aspect(self, item: int) -> dict[str, object]:
        """The decoded aspects of one item (an empty dict when it has none)."""
        return decode_aspects(self.aspects[item])

    def aspect_values(self, key: str) -> NDArray[np.object_]:
        """The value of aspect ``key`` for every item (``None`` where absent), shape (n_items,)."""
        return aspect_values(self.aspects, key)


@dataclass(frozen=True)
class Events:
    """The event log as columns sorted by time, with dense ids.

    All arrays have shape ``(n_events,)``: ``user``, ``item`` (int32), ``event`` (int8 code
    into :data:`recset.data.EVENT_TYPES`), ``timestamp`` (int64 epoch seconds), ``session``
    and ``order`` (int32 dense ids, ``-1`` when null).
    """

    user: NDArray[np.int32]
    item: NDArray[np.int32]
    event: NDArray[np.int8]
    timestamp: NDArray[np.int64]
    session: NDArray[np.int32]
    order: NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask_or_index: NDArray[np.bool_] | NDArray[np.integer]) -> Events:
        return Events(
            user=self.user[mask_or_index],
            item=self.item[mask_or_index],
            event=self.event[mask_or_index],
            timestamp=self.timestamp[mask_or_index],
            session=self.session[mask_or_index],
            order=self.order[mask_or_index],
        )


@dataclass(frozen=True)
class Groups:
    """Items grouped by basket or session, as CSR-like ``indptr`` / ``item`` arrays.

    Group ``g`` holds ``item[indptr[g]:indptr[g+1]]`` (in time order, distinct within the
    group), bought or viewed by ``user[g]``, starting at ``timestamp[g]``. ``key[g]`` is the
    dense order or session id of the group.
    """

    key: NDArray[np.int32]
    user: NDArray[np.int32]
    timestamp: NDArray[np.int64]
    indptr: NDArray[np.int64]
    item: NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.key)

    def sizes(self) -> NDArray[np.int64]:
        return np.diff(self.indptr)

    def items_of(self, g: int) -> NDArray[np.int32]:
        return self.item[self.indptr[g] : self.indptr[g + 1]]

    def matrix(self, n_items: int) -> sp.csr_matrix:
        """Binary group x item CSR matrix, float32, shape (n_groups, n_items)."""
        data = np.ones(len(self.item), dtype=np.float32)
        return sp.csr_matrix((data, self.item, self.indptr), shape=(len(self), n_items))


def _group(events: Events, key: NDArray[np.int32]) -> Groups:
    """Group events with ``key >= 0`` by key; distinct items per group, first-seen order."""
    sel = np.flatnonzero(key >= 0)
    if sel.size == 0:
        empty = np.zeros(0, dtype=np.int32)
        return Groups(empty, empty, np.zeros(0, np.int64), np.zeros(1, np.int64), empty)
    k, ts, it = key[sel], events.timestamp[sel], events.item[sel]
    order = np.lexsort((ts, k))  # by key, then time (events are already time-sorted)
    k, ts, it, us = k[order], ts[order], it[order], events.user[sel][order]
    # keep the first occurrence of each (key, item)
    pair = pd.MultiIndex.from_arrays([k, it])
    first = ~pair.duplicated(keep="first")
    k, ts, it, us = k[first], ts[first], it[first], us[first]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    indptr = np.r_[starts, len(k)].astype(np.int64)
    return Groups(
        key=k[starts].astype(np.int32),
        user=us[starts].astype(np.int32),
        timestamp=ts[starts].astype(np.int64),
        indptr=indptr,
        item=it.astype(np.int32),
    )


def _take_columns(events: pd.DataFrame) -> dict[str, pd.Series]:
    """The canonical event columns taken out of ``events`` (emptied): the dict holds the
    only reference the frame had, so each column is freed once it is coded and dropped."""
    return {col: events.pop(col) for col in EVENT_COLUMNS}


def _code_events(
    columns: dict[str, pd.Series], items: IdMap, name: str
) -> tuple[IdMap, IdMap, IdMap, Events]:
    """The users, sessions and orders id maps and the time-sorted :class:`Events` of
    canonical event columns, popped from ``columns`` one at a time as they are coded.

    Only the integer codes are put in time order: no sorted copy of the frame, and no
    Python string per row (one per distinct id).
    """
    ts = columns.pop("timestamp").to_numpy(dtype=np.int64)
    order = None if _is_sorted(ts) else np.argsort(ts, kind="stable")
    if order is not None:
        ts = ts[order]
    item_codes, item_values = _factorize(columns.pop("item_id"), order)
    lookup = items.index(item_values)
    item_idx = np.where(item_codes >= 0, lookup[item_codes], -1).astype(np.int32)
    if (item_idx < 0).any():
        bad = item_values[lookup < 0][:5].tolist()
        if (item_codes < 0).any():
            bad = [None, *bad][:5]
        raise DataError(
            f"{name}: {(item_idx < 0).sum()} events name items absent from the catalog "
            f"(first: {bad}); validate with load_dataset()"
        )
    del item_codes
    codes = _event_codes(columns.pop("event"))
    if (codes < 0).any():
        raise DataError(f"{name}: unknown event types; expected one of {list(EVENT_TYPES)}")
    user_codes, user_values = _factorize(columns.pop("user_id"), order)
    session_codes, session_values = _factorize(columns.pop("session_id"), order)
    order_codes, order_values = _factorize(columns.pop("order_id"), order)
    events = Events(
        user=user_codes,
        item=item_idx,
        event=codes if order is None else codes[order],
        timestamp=ts,
        session=session_codes,
        order=order_codes,
    )
    return IdMap(user_values), IdMap(session_values), IdMap(order_values), events


@dataclass(frozen=True)
class Dataset:
    """An immutable catalog + event log with dense integer ids.

    External ids live only in the :class:`IdMap` attributes; everything else is dense
    ``int32`` indices. Derived structures (interaction matrices, baskets, sessions) are
    computed on first use and cached.

    Attributes
    ----------
    name : str
        A label for reports (usually the source directory name).
    users, items, categories, product_types, products, brands, sessions, orders : IdMap
    catalog : Catalog
        Item attributes indexed by dense item id.
    events : Events
        The event log sorted by time.
    promotions : Promotions or None
        The promotion calendar (``promotions.parquet`` in the dataset directory), if any;
        kept by :meth:`with_events` and the splits.

    Examples
    --------
    >>> import pandas as pd
    >>> cat = pd.DataFrame({"item_id": ["a", "b"], "category_id": ["c1", "c1"]})
    >>> ev = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"],
    ...                    "event": ["purchase", "purchase"], "timestamp": [10, 20],
    ...                    "order_id": ["o1", "o1"]})
    >>> ds = Dataset.from_frames(cat, ev)
    >>> ds.n_items, ds.n_users, len(ds.baskets)
    (2, 1, 1)
    """

    name: str
    users: IdMap
    items: IdMap
    categories: IdMap
    product_types: IdMap
    products: IdMap
    brands: IdMap
    sessions_map: IdMap
    orders_map: IdMap
    catalog: Catalog
    events: Events
    load_report: LoadReport | None = field(default=None, compare=False, repr=False)
    promotions: Promotions | None = field(default=None, compare=False, repr=False)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        catalog: pd.DataFrame,
        events: pd.DataFrame,
        *,
        name: str = "dataset",
        promotions: pd.DataFrame | None = None,
    ) -> Dataset:
        """Build from already-validated canonical frames (see :func:`load_dataset`);
        ``promotions`` is a promotion calendar (its canonical columns, times in epoch
        seconds, every item in ``catalog``)."""
        from recset.data._format import normalize_events

        ds = cls._from_columns(catalog, _take_columns(normalize_events(events)), name=name)
        if promotions is None:
            return ds
        known = ds.items.index(promotions["item_id"].astype(str))
        if (known < 0).any():
            bad = promotions["item_id"][known < 0].head(3).tolist()
            raise DataError(f"promotions: item_id not in the catalog (first ones: {bad})")
        return replace(ds, promotions=Promotions.from_frame(promotions, ds.items))

    @classmethod
    def _from_columns(
        cls, catalog: pd.DataFrame, columns: dict[str, pd.Series], *, name: str
    ) -> Dataset:
        """Build from a catalog frame and canonical event columns, which are taken out of
        ``columns`` as they are coded: what only ``columns`` refers to is freed on the way."""
        from recset.data._format import normalize_catalog

        cat = normalize_catalog(catalog)
        items = IdMap(_objects(cat["item_id"]))
        categories = IdMap.from_values(cat["category_id"])
        paths = (
            cat.dropna(subset=["category_id"])
            .drop_duplicates("category_id")
            .set_index("category_id")["category_path"]
        )
        path_of = paths.reindex(pd.Index(categories.values, dtype=object))
        category_path = np.array(
            [c if pd.isna(p) else str(p) for c, p in zip(categories.values, path_of, strict=True)],
            dtype=object,
        )
        product_types = IdMap.from_values(cat["product_type"])
        products = IdMap.from_values(cat["product_id"])
        brands = IdMap.from_values(cat["brand"])
        catalog_arrays = Catalog(
            category=_codes(cat["category_id"], categories),
            product_type=_codes(cat["product_type"], product_types),
            product=_codes(cat["product_id"], products),
            brand=_codes(cat["brand"], brands),
            price=cat["price"].to_numpy(dtype=np.float32, na_value=np.nan),
            available=cat["available"].to_numpy(dtype=bool),
            title=_objects(cat["title"]),
            aspects=_objects(cat["aspects"]),
            category_path=category_path,
        )
        users, sessions, orders, event_arrays = _code_events(columns, items, name)
        return cls(
            name=name,
            users=users,
            items=items,
            categories=categories,
            product_types=product_types,
            products=products,
            brands=brands,
            sessions_map=sessions,
            orders_map=orders,
            catalog=catalog_arrays,
            events=event_arrays,
        )

    # -- sizes ----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    @property
    def n_product_types(self) -> int:
        return len(self.product_types)

    @property
    def time_range(self) -> tuple[int, int]:
        """(first, last) event timestamp in epoch seconds."""
        ts = self.events.timestamp
        return (int(ts[0]), int(ts[-1])) if len(ts) else (0, 0)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"categories={self.n_categories}, events={len(self.events)})"
        )

    # -- sparse views --------------------------------------------------------------------
    def interactions(
        self,
        event: EventName = "purchase",
        *,
        binary: bool = False,
        half_life_days: float | None = None,
        now: int | None = None,
    ) -> sp.csr_matrix:
        """User x item matrix of one event type.

        Parameters
        ----------
        event : {"view", "add_to_cart", "purchase"}
        binary : bool
            1 where the user had any such event, instead of the (decayed) count.
        half_life_days : float, optional
            Weight each event by ``0.5 ** (age_days / half_life_days)``, age measured from
            ``now`` (default: the last event of the dataset).
        now : int, optional
            Epoch seconds that ages are measured from.

        Returns
        -------
        csr_matrix of float32, shape (n_users, n_items)
        """
        code = _event_code(event)
        sel = self.events.event == code
        weights = self._decay(sel, half_life_days, now)
        m = sp.csr_matrix(
            (weights, (self.events.user[sel], self.events.item[sel])),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def _decay(
        self, sel: NDArray[np.bool_], half_life_days: float | None, now: int | None
    ) -> NDArray[np.float32]:
        n = int(sel.sum())
        if half_life_days is None:
            return np.ones(n, dtype=np.float32)
        if half_life_days <= 0:
            raise ConfigError(
                f"The 'half_life_days' parameter must be > 0. Got {half_life_days} instead."
            )
        ref = self.time_range[1] if now is None else now
        age = np.maximum(ref - self.events.timestamp[sel], 0) / _DAY
        return np.power(0.5, age / half_life_days).astype(np.float32)

    def item_counts(
        self,
        event: EventName = "purchase",
        *,
        half_life_days: float | None = None,
        now: int | None = None,
    ) -> NDArray[np.float32]:
        """(Decayed) number of events of one type per item, shape (n_items,)."""
        sel = self.events.event == _event_code(event)
        w = self._decay(sel, half_life_days, now)
        return np.bincount(self.events.item[sel], weights=w, minlength=self.n_items).astype(
            np.float32
        )

    @cached_property
    def baskets(self) -> Groups:
        """Purchases grouped by ``order_id`` (one basket per order), in time order."""
        purchases = self.events.take(self.events.event == PURCHASE)
        return _group(purchases, purchases.order)

    @cached_property
    def sessions(self) -> Groups:
        """All events grouped by ``session_id``; items in first-seen time order."""
        return _group(self.events, self.events.session)

    def session_events(self, event: EventName) -> Groups:
        """Events of one type grouped by session (e.g. the views of each session)."""
        sub = self.events.take(self.events.event == _event_code(event))
        return _group(sub, sub.session)

    # -- splits -------------------------------------------------------------------------
    def with_events(self, mask: NDArray[np.bool_], *, name: str | None = None) -> Dataset:
        """A dataset with the same catalog and id maps and a subset of the events.

        Keeping the id maps means models fitted on one part can score the other.
        """
        if mask.shape != (len(self.events),):
            raise ConfigError(
                f"The 'mask' parameter must have shape ({len(self.events)},). "
                f"Got {mask.shape} instead."
            )
        new = replace(self, events=self.events.take(mask), name=name or self.name)
        return new

    def split_time(self, t: int) -> tuple[Dataset, Dataset]:
        """Events before ``t`` (epoch seconds) and events from ``t`` on."""
        before = self.events.timestamp < t
        return (
            self.with_events(before, name=f"{self.name}[<{t}]"),
            self.with_events(~before, name=f"{self.name}[>={t}]"),
        )

    def order_time_quantile(self, q: float) -> int:
        """The time that leaves the last ``1 - q`` share of baskets at or after it.

        Baskets are ordered by their first purchase; ``q=0.8`` puts the last 20% of orders
        in the window from the returned time on.
        """
        if not 0.0 < q < 1.0:
            raise ConfigError(f"The 'q' parameter must be in (0, 1). Got {q} instead.")
        times = np.sort(self.baskets.timestamp)
        if times.size == 0:
            raise DataError(f"{self.name}: no baskets (purchases with an order_id) to split on")
        return int(times[min(int(np.floor(q * len(times))), len(times) - 1)])


def load_dataset(
    path: str | os.PathLike[str],
    *,
    on_bad_rows: OnBadRows = "error",
    quarantine_dir: str | os.PathLike[str] | None = None,
    time_range: tuple[int | None, int | None] | None = None,
    reject_chars: str = "",
    reject_reason: str = "the store cannot hold",
) -> Dataset:
    """Read, validate and index a canonical dataset directory.

    See :func:`recset.data.read_validated` for the validation rules, ``on_bad_rows``, the
    plausible ``time_range`` and ``reject_chars``. The :class:`LoadReport` is kept as
    ``dataset.load_report``.
    """
    catalog, events, report = read_validated(
        path,
        on_bad_rows=on_bad_rows,
        quarantine_dir=quarantine_dir,
        time_range=time_range,
        reject_chars=reject_chars,
        reject_reason=reject_reason,
    )
    columns = _take_columns(events)
    del events
    ds = Dataset._from_columns(catalog, columns, name=Path(path).resolve().name)
    del catalog, columns
    release_free_memory()  # the frames' pages, else kept by Arrow's pool and malloc
    promotions = read_promotions(
        path, ds.items, report=report, quarantine_dir=quarantine_dir, on_bad_rows=on_bad_rows
    )
    return replace(ds, load_report=report, promotions=promotions)


def catalog_frame(dataset: Dataset) -> pd.DataFrame:
    """The dataset's catalog back in the canonical columns, one row per dense item id.

    The text columns are object columns holding the dataset's own strings (``None`` for
    null), not copies into new string arrays: saving a 3M-item catalog makes no second copy
    of its titles and ids.
    """
    c = dataset.catalog

    def text(values: NDArray[np.object_] | list[object]) -> pd.Series:
        return pd.Series(values, dtype=object)

    paths = np.append(c.category_path, None).astype(object)  # -1 (no category) -> None
    return pd.DataFrame(
        {
            "item_id": text(dataset.items.values.astype(object)),
            "title": text(c.title),
            "category_id": text(dataset.categories.ids(c.category)),
            "category_path": text(paths[c.category]),
            "product_id": text(dataset.products.ids(c.product)),
            "product_type": text(dataset.product_types.ids(c.product_type)),
            "brand": text(dataset.brands.ids(c.brand)),
            "price": c.price.astype(np.float64),
            "available": c.available,
            "aspects": text(c.aspects),
        }
    )
