"""Fit the behavioural pair sources on Spark: signals and top-k rows from the canonical Parquet.

The driver holds the validated :class:`~recset.data.Dataset` (its id maps, catalog and the
in-process stages that follow need it) and collects only each unit's top-k rows; the pair
counts and similarities stay in Spark. ``co_purchase`` (by basket or by user), ``co_view``
and ``co_purchase_only`` are computed there; ``popular`` from per-item event counts and
``related_categories`` from category x category co-buyer counts counted there (what the
driver collects: a row per item, a row per category pair); every other source (content:
text embeddings, GNN, complementary_of_similar, compatibility; bought_after) is fitted in
process by the caller, and the log says which.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from recset.data import EVENT_TYPES, Dataset
from recset.recall import PairRecall, RecallBase, RecallConfig, get_recall
from recset.recall.co_purchase import CoPurchaseRecall
from recset.recall.co_purchase_only import CoPurchaseOnlyRecall
from recset.recall.co_view import CoViewRecall
from recset.recall.popular import EVENTS, PopularRecall
from recset.recall.related_categories import RelatedCategories
from recset.signals import Signals
from recset.spark import _signals as S
from recset.spark._session import quiet_pandas
from recset.spark._topk import collect_topk, similarity, topk

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_log = logging.getLogger(__name__)

#: The source types whose fit runs on Spark: the pair sources (their top-k rows), and the
#: sources fitted from counts made there.
SPARK_SOURCES = (
    "co_purchase",
    "co_view",
    "co_purchase_only",
    "popular",
    "related_categories",
)
_PAIR_TYPES = (CoPurchaseRecall, CoViewRecall, CoPurchaseOnlyRecall)


def _units_frame(spark: SparkSession, unit_of_item: np.ndarray, n_units: int) -> DataFrame | None:
    if n_units == len(unit_of_item) and np.array_equal(unit_of_item, np.arange(n_units)):
        return None
    items = np.arange(len(unit_of_item), dtype=np.int32)
    frame = pd.DataFrame({"item": items, "unit": unit_of_item.astype(np.int32)})
    with quiet_pandas():
        return S.small(spark.createDataFrame(frame), len(frame))


class SparkSignals:
    """The Spark counterparts of :class:`~recset.signals.Signals` over one events frame,
    each computed once and kept (``persist``) while sources read it."""

    def __init__(
        self,
        spark: SparkSession,
        events: DataFrame,
        *,
        half_life_days: float | None,
        max_group_size: int,
    ) -> None:
        self.spark = spark
        self.events = events
        self.half_life_days = half_life_days or None
        self.max_group_size = max_group_size
        self.ref = S.ref_time(events)
        self._groups: dict[str, tuple[DataFrame, DataFrame]] = {}
        self._cache: dict[str, DataFrame] = {}

    def groups(self, kind: S.GroupKind) -> tuple[DataFrame, DataFrame]:
        if kind not in self._groups:
            entries, weights = S.groups(
                self.events,
                kind,
                ref=self.ref,
                half_life_days=self.half_life_days,
                max_group_size=self.max_group_size,
            )
            self._groups[kind] = (entries.persist(), weights.persist())
        return self._groups[kind]

    def _kept(self, name: str, make) -> DataFrame:  # noqa: ANN001
        if name not in self._cache:
            self._cache[name] = make().persist()
        return self._cache[name]

    @property
    def co_purchase_directed(self) -> DataFrame:
        return self._kept("directed", lambda: S.co_purchase_directed(*self.groups("basket")))

    @property
    def co_view(self) -> DataFrame:
        e, w = self.groups("view_session")
        return self._kept("co_view", lambda: S.cooccurrence(S.pooled(e, None), w))

    @property
    def purchase_after_view(self) -> DataFrame:
        return self._kept(
            "pav",
            lambda: S.purchase_after_view(
                self.events, ref=self.ref, half_life_days=self.half_life_days
            ),
        )

    @property
    def co_purchase_only(self) -> DataFrame:
        pav = self.purchase_after_view
        return S.only(self.co_purchase_directed, self.co_view, pav, S.transposed(pav))

    @property
    def co_purchase_only_substitution(self) -> DataFrame:
        co_view, pav = S.substitution_views(self.events)
        return S.only(self.co_purchase_directed, co_view, pav, S.transposed(pav))

    def occurrences(self, kind: S.GroupKind) -> DataFrame:
        e, w = self.groups(kind)
        return S.occurrences(S.pooled(e, None), w)

    def unpersist(self) -> None:
        for e, w in self._groups.values():
            e.unpersist()
            w.unpersist()
        for df in self._cache.values():
            df.unpersist()


def fit_on_spark(
    source: PairRecall, dataset: Dataset, sig: SparkSignals, signals: Signals
) -> PairRecall:
    """Fit one pair source (co_purchase, co_view or co_purchase_only) from Spark's top-k rows."""
    cfg = source.config
    unit, n_units = source.units(dataset)
    kind = type(source)
    kept: list[DataFrame] = []
    if kind in (CoPurchaseRecall, CoViewRecall):
        if kind is CoViewRecall:
            gkind: S.GroupKind = "view_session"
        else:
            gkind = "basket" if source.config.unit == "basket" else "user_purchase"  # type: ignore[attr-defined]
        entries, weights = sig.groups(gkind)
        units_of = _units_frame(sig.spark, unit, n_units)
        units = S.pooled(entries, units_of)
        if units_of is not None:  # read twice (counts and occurrences): pooled once
            units = units.persist()
            kept.append(units)
        counts = S.cooccurrence(units, weights)
        occ = S.occurrences(units, weights)
        inv_sqrt = source.alpha == 0.5
    elif kind is CoPurchaseOnlyRecall:
        counts = (
            sig.co_purchase_only_substitution
            if source.config.exclude == "substitution"  # type: ignore[attr-defined]
            else sig.co_purchase_only
        )
        occ = sig.occurrences("basket")
        inv_sqrt = cfg.similarity == "ochiai"
    else:
        raise TypeError(f"{kind.__name__} is not fitted on Spark (types: {SPARK_SOURCES})")
    occ = occ.persist()  # read on both sides of the similarity
    kept.append(occ)
    try:
        sim = similarity(
            counts,
            occ,
            alpha=source.alpha,
            inv_sqrt=inv_sqrt,
            min_support=cfg.min_support,
            min_value=source.min_value,
            broadcast=n_units <= S.BROADCAST_ROWS,
        )
        idx, val = collect_topk(topk(sim, cfg.max_candidates), n_units, cfg.max_candidates)
    finally:
        for frame in kept:
            frame.unpersist()
    return source.fit_topk(dataset, idx, val, signals)


def fit_popular(
    source: PopularRecall,
    dataset: Dataset,
    sig: SparkSignals,
    fitted: dict[str, RecallBase],
) -> PopularRecall:
    """``popular`` from its per-item (decayed, with its own half-life) event counts,
    counted on Spark: one row per item reaches the driver."""
    hl = source.config.half_life_days or None
    codes = [EVENT_TYPES.index(e) for e in EVENTS]
    rows = S.item_event_counts(sig.events, codes, ref=sig.ref, half_life_days=hl)
    with quiet_pandas():
        p = rows.toPandas()
    item = p["item"].to_numpy(np.int64)
    counts = {}
    for i, e in enumerate(EVENTS):
        c = np.zeros(dataset.n_items, dtype=np.float32)
        c[item] = p[f"c{i}"].to_numpy(np.float32)
        counts[e] = c
    return source.fit_counts(dataset, counts, fitted=fitted)


def fit_related_categories(
    source: RelatedCategories, dataset: Dataset, sig: SparkSignals
) -> RelatedCategories:
    """``related_categories`` from the category x category co-buyer counts and the
    purchases per category, counted on Spark (a row per category pair reaches the
    driver)."""
    n = dataset.n_categories
    frame = pd.DataFrame(
        {
            "item": np.arange(dataset.n_items, dtype=np.int32),
            "category": dataset.catalog.category.astype(np.int32),
        }
    )
    with quiet_pandas():
        cats = S.small(sig.spark.createDataFrame(frame), len(frame))
        both = S.co_buyers(S.user_category(sig.events, cats)).toPandas()
        bought = S.category_purchases(sig.events, cats).toPandas()
    a, b = both["a"].to_numpy(np.int64), both["b"].to_numpy(np.int64)
    count = both["count"].to_numpy(np.float32)
    m = sp.csr_matrix((count, (a, b)), shape=(n, n), dtype=np.float32)
    m.sort_indices()
    buyers = np.zeros(n, dtype=np.float64)
    diag = a == b
    buyers[a[diag]] = count[diag]
    purchases = np.zeros(n, dtype=np.int64)
    purchases[bought["category"].to_numpy(np.int64)] = bought["purchases"].to_numpy(np.int64)
    return source.fit_counts(dataset, m, buyers, purchases, n_users=dataset.n_users)


def _spark_fit(
    source: RecallBase,
    dataset: Dataset,
    sig: SparkSignals,
    signals: Signals,
    out: dict[str, RecallBase],
    configured: set[str],
) -> RecallBase | None:
    """``source`` fitted on Spark, or None when it is fitted in process (its exact type is
    not one Spark computes: a subclass (a plugin) may count differently; or a ``popular``
    scoped by a ``related_categories`` source fitted in process, after it)."""
    kind = type(source)
    if kind in _PAIR_TYPES:
        return fit_on_spark(source, dataset, sig, signals)  # type: ignore[arg-type]
    if kind is RelatedCategories:
        return fit_related_categories(source, dataset, sig)  # type: ignore[arg-type]
    if kind is PopularRecall:
        scope = source.config.scope  # type: ignore[attr-defined]
        here = any(getattr(s, "name", None) == "related_categories" for s in out.values())
        if scope == "related_categories" and "related_categories" in configured and not here:
            return None
        return fit_popular(source, dataset, sig, out)  # type: ignore[arg-type]
    return None


def fit_behaviour_sources(
    spark: SparkSession, data: str | Path, dataset: Dataset, config: RecallConfig
) -> dict[str, RecallBase]:
    """The sources of ``config`` that run on Spark (:data:`SPARK_SOURCES`), fitted there
    from ``data/events.parquet``; pass them to ``Engine.build(..., prefitted=...)``, which
    fits the rest in process.

    ``dataset`` is ``data`` loaded and validated by the driver (its item ids number the
    Spark rows). The fitted sources equal an in-process fit (same candidates, same order).
    """
    b = config.build
    signals = Signals(
        dataset,
        half_life_days=b.half_life_days or None,
        max_group_size=b.max_group_size,
        max_memory=b.max_memory,
    )
    events = S.read_events(spark, data, dataset).persist()
    sig = SparkSignals(
        spark, events, half_life_days=b.half_life_days or None, max_group_size=b.max_group_size
    )
    specs = config.source_configs()
    configured = {kind for kind, _ in specs.values()}
    out: dict[str, RecallBase] = {}
    local: list[str] = []
    try:
        for name in config.fit_order():
            kind, cfg = specs[name]
            source = get_recall(kind)(cfg)
            t0 = time.perf_counter()
            fitted = _spark_fit(source, dataset, sig, signals, out, configured)
            if fitted is None:
                local.append(name)
                continue
            out[name] = fitted
            _log.info("fit %s on Spark in %.1f s", name, time.perf_counter() - t0)
    finally:
        sig.unpersist()
        events.unpersist()
    if local:
        _log.info(
            "fitted in process, on this machine (content and the sources Spark does not "
            "compute): %s",
            ", ".join(local),
        )
    return out


def write_events(dataset: Dataset, path: str | Path) -> None:
    """``dataset``'s events as a canonical ``events.parquet`` (external ids, epoch seconds):
    a part of a dataset (a backtest's training window) for :func:`fit_behaviour_sources`."""
    ev = dataset.events
    names = np.asarray(EVENT_TYPES, dtype=object)[ev.event]
    table = pa.table(
        {
            "user_id": pa.array(dataset.users.ids(ev.user), pa.string()),
            "item_id": pa.array(dataset.items.ids(ev.item), pa.string()),
            "event": pa.array(names, pa.string()),
            "timestamp": pa.array(ev.timestamp, pa.int64()),
            "session_id": pa.array(dataset.sessions_map.ids(ev.session), pa.string()),
            "order_id": pa.array(dataset.orders_map.ids(ev.order), pa.string()),
        }
    )
    pq.write_table(table, str(Path(path) / "events.parquet"))


def fit_dataset(
    spark: SparkSession, dataset: Dataset, config: RecallConfig
) -> dict[str, RecallBase]:
    """:func:`fit_behaviour_sources` for a dataset in memory (e.g. a backtest's training
    part): its events are written to a temporary Parquet file that Spark reads."""
    with tempfile.TemporaryDirectory(prefix="recset-spark-") as tmp:
        write_events(dataset, tmp)
        return fit_behaviour_sources(spark, tmp, dataset, config)
