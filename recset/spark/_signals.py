"""The behaviour signals on Spark: pure functions DataFrame -> DataFrame, one per in-process
signal of :class:`recset.signals.Signals`, so the equality tests can pair them.

Every function reads the events frame of :func:`read_events` (columns ``user`` (string),
``item`` (int, the dense item id of the driver's :class:`~recset.data.Dataset`), ``event``
(byte: the index in :data:`recset.data.EVENT_TYPES`, as ``recset.data.VIEW``), ``ts``
(long epoch seconds), ``session`` and ``order`` (strings, null when absent)) and returns a
frame of pairs
``(a, b, value)`` or of items ``(item, value)``. Counts are sums of (decayed) float32
weights, cast to float32 at the end: without decay they equal the in-process counts exactly;
with decay they can differ in the last bit (the sums run in another order).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recset.data import EVENT_TYPES, PURCHASE, VIEW, Dataset
from recset.errors import DataError
from recset.spark._session import quiet_pandas

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

_log = logging.getLogger(__name__)

_DAY = 86_400.0

GroupKind = Literal["basket", "view_session", "user_purchase"]

#: A frame of item or unit rows (ids and per-unit factors) up to this many rows is broadcast
#: to the join with the events or pairs (a 16-byte row: 32 MB at most), so the large side
#: is not shuffled for it; larger ones are joined by a shuffle.
BROADCAST_ROWS = 2_000_000


def _F():  # noqa: ANN202, N802 - pyspark is imported only when a function runs
    from pyspark.sql import functions

    return functions


def small(frame: DataFrame, n_rows: int) -> DataFrame:
    """``frame`` marked for a broadcast join when it has at most :data:`BROADCAST_ROWS`."""
    return _F().broadcast(frame) if n_rows <= BROADCAST_ROWS else frame


def n_partitions(frame: DataFrame) -> int:
    """The session's ``spark.sql.shuffle.partitions`` (an explicit count, so adaptive
    execution keeps the partitioning that later joins on the same key reuse)."""
    return int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)


def by_first(pairs: DataFrame, agg: Column) -> DataFrame:
    """``(a, b, count)``: ``agg`` of the pair rows ``(a, b, ...)`` per pair, the rows
    hash-partitioned by ``a`` once, so the similarity and the top-k window per ``a`` that
    follow need no other shuffle of the pairs."""
    return (
        pairs.repartition(n_partitions(pairs), "a")
        .groupBy("a", "b")
        .agg(agg.cast("float").alias("count"))
    )


def _timestamp_seconds(path: Path, field: pa.Field) -> Column:
    t = field.type
    if not (pa.types.is_timestamp(t) or pa.types.is_integer(t)):
        raise DataError(
            f"{path}: column 'timestamp' is {t}; the Spark build reads Parquet timestamps or "
            "whole epoch seconds (rewrite the file with `recset ingest`, or build in process)"
        )
    F = _F()
    if pa.types.is_timestamp(t):
        if t.unit == "ns":  # read as a long of nanoseconds (spark.sql.legacy.parquet.nanosAsLong)
            return F.expr("timestamp div 1000000000")
        return F.unix_seconds(F.col("timestamp").cast("timestamp"))
    return F.col("timestamp").cast("long")


def read_events(spark: SparkSession, data: str | Path, dataset: Dataset) -> DataFrame:
    """The events of the canonical ``data/events.parquet`` (``data``: a dataset directory,
    or an events Parquet file) with the dense item ids of ``dataset`` (the same events,
    loaded and validated by the driver).

    The Spark build reads the files as they are, so ``dataset`` must have kept every row:
    a load that skipped bad rows is an error (fix the rows, or build in process).
    """
    F = _F()
    path = Path(data) / "events.parquet" if Path(data).is_dir() else Path(data)
    if not (path.is_file() and path.suffix == ".parquet"):
        raise DataError(
            f"{data}: the Spark build reads events.parquet and there is none (CSV input: "
            "convert with `recset ingest`, or build in process)"
        )
    report = dataset.load_report
    if report is not None and report.n_bad:
        raise DataError(
            f"{data}: {report.n_bad} bad rows were skipped on load ({report.summary()}); the "
            "Spark build reads the files as they are: fix those rows or build in process"
        )
    schema = pq.read_schema(path)
    if "timestamp" not in schema.names:
        raise DataError(f"{path}: no 'timestamp' column")
    ts = _timestamp_seconds(path, schema.field("timestamp"))
    frame = pd.DataFrame(
        {
            "item_id": dataset.items.ids(np.arange(dataset.n_items)).astype(str),
            "item": np.arange(dataset.n_items, dtype=np.int32),
        }
    )
    with quiet_pandas():
        items = spark.createDataFrame(frame)
    raw = spark.read.parquet(str(path))
    cols = set(raw.columns)

    def opt(name: str) -> Column:
        return F.col(name).cast("string") if name in cols else F.lit(None).cast("string")

    code = F.lit(-1)
    for i, name in enumerate(EVENT_TYPES):  # the in-process codes (VIEW, ADD_TO_CART, ...)
        code = F.when(F.col("event") == name, F.lit(i)).otherwise(code)
    code = code.cast("byte")
    ev = raw.select(
        F.col("user_id").cast("string").alias("user"),
        F.col("item_id").cast("string").alias("item_id"),
        code.alias("event"),
        ts.alias("ts"),
        opt("session_id").alias("session"),
        opt("order_id").alias("order"),
    )
    return ev.join(small(items, dataset.n_items), "item_id").drop("item_id")


def weight(ts: Column, ref_time: int, half_life_days: float | None) -> Column:
    """``0.5 ** (age_days / half_life_days)`` as float32 (1 without decay), the in-process
    ``Signals._weights``."""
    F = _F()
    if not half_life_days:
        return F.lit(1.0).cast("float")
    age = F.greatest(F.lit(ref_time) - ts, F.lit(0)).cast("double") / F.lit(_DAY)
    return F.pow(F.lit(0.5), age / F.lit(float(half_life_days))).cast("float")


def ref_time(events: DataFrame) -> int:
    """The last event time (epoch seconds), the reference of every decay."""
    F = _F()
    return int(events.agg(F.max("ts")).first()[0])


def groups(
    events: DataFrame,
    kind: GroupKind,
    *,
    ref: int,
    half_life_days: float | None,
    max_group_size: int,
) -> tuple[DataFrame, DataFrame]:
    """The groups of ``kind`` as entries ``(g, item, t)`` (first time of each item in the
    group) and ``(g, w, size)`` (group weight and number of distinct items).

    As in ``Signals.group_matrix``: baskets (purchases by order) and view sessions weigh
    ``weight(first time of the group)``, 0 above ``max_group_size`` items; a user's
    purchases (``user_purchase``) weigh 1 whatever their number.
    """
    F = _F()
    if kind == "basket":
        sel, key = (F.col("event") == PURCHASE) & F.col("order").isNotNull(), "order"
    elif kind == "view_session":
        sel, key = (F.col("event") == VIEW) & F.col("session").isNotNull(), "session"
    else:
        sel, key = F.col("event") == PURCHASE, "user"
    # partitioned by group once: the group sizes, weights, unit pooling and the self-join on
    # the group that follow read these partitions without another shuffle
    picked = events.where(sel).select(F.col(key).alias("g"), "item", "ts")
    entries = (
        picked.repartition(n_partitions(events), "g")
        .groupBy("g", "item")
        .agg(F.min("ts").alias("t"))
    )
    g = entries.groupBy("g").agg(F.min("t").alias("t0"), F.count("item").alias("size"))
    if kind == "user_purchase":
        w = F.lit(1.0).cast("float")
    else:
        w = F.when(
            F.col("size") <= max_group_size, weight(F.col("t0"), ref, half_life_days)
        ).otherwise(F.lit(0.0).cast("float"))
    return entries, g.select("g", w.alias("w"), "size")


def pooled(entries: DataFrame, units: DataFrame | None) -> DataFrame:
    """Entries ``(g, unit)``, items pooled into their counting units (``units``: columns
    ``item``, ``unit``, marked by :func:`small` when it is; None: every item is its own
    unit)."""
    F = _F()
    if units is None:
        return entries.select("g", F.col("item").alias("unit"))
    return entries.join(units, "item").select("g", "unit").distinct()


def occurrences(unit_entries: DataFrame, group_weights: DataFrame) -> DataFrame:
    """``(unit, occ)``: summed weight of the groups holding each unit (``G^T w``)."""
    F = _F()
    return (
        unit_entries.join(group_weights.select("g", "w"), "g")
        .groupBy("unit")
        .agg(F.sum("w").cast("float").alias("occ"))
    )


def cooccurrence(unit_entries: DataFrame, group_weights: DataFrame) -> DataFrame:
    """``(a, b, count)``: summed weight of the groups of two or more units holding both
    ``a != b`` (``G^T diag(w) G`` with a zero diagonal; zero-weight groups add nothing)."""
    F = _F()
    sizes = unit_entries.groupBy("g").agg(F.count("unit").alias("n_units"))
    usable = (
        group_weights.join(sizes, "g").where((F.col("n_units") >= 2) & (F.col("w") > 0))
    ).select("g", "w")
    e = unit_entries.join(usable, "g")
    a = e.select("g", "w", F.col("unit").alias("a"))
    b = e.select("g", F.col("unit").alias("b"))
    return by_first(a.join(b, "g").where(F.col("a") != F.col("b")), F.sum("w"))


def co_purchase_directed(entries: DataFrame, group_weights: DataFrame) -> DataFrame:
    """``(a, b, count)``: baskets where ``a`` was first bought no later than ``b`` (baskets of
    2..max_group_size items; ``Signals.co_purchase_directed``). ``entries`` / ``group_weights``
    are the ``basket`` groups of :func:`groups`."""
    F = _F()
    usable = group_weights.where((F.col("size") >= 2) & (F.col("w") > 0)).select("g", "w")
    e = entries.join(usable, "g")
    a = e.select("g", "w", F.col("item").alias("a"), F.col("t").alias("ta"))
    b = entries.select("g", F.col("item").alias("b"), F.col("t").alias("tb"))
    pairs = a.join(b, "g").where((F.col("a") != F.col("b")) & (F.col("ta") <= F.col("tb")))
    return by_first(pairs, F.sum("w"))


def purchase_after_view(events: DataFrame, *, ref: int, half_life_days: float | None) -> DataFrame:
    """``(a, b, count)``: sessions where ``a`` was viewed and a different ``b`` bought at or
    after that first view, each weighing ``weight`` of the first such purchase."""
    F = _F()
    s = events.where(F.col("session").isNotNull())
    views = (
        s.where(F.col("event") == VIEW)
        .groupBy("session", F.col("item").alias("a"))
        .agg(F.min("ts").alias("tv"))
    )
    buys = s.where(F.col("event") == PURCHASE).select(
        "session", F.col("item").alias("b"), F.col("ts").alias("tp")
    )
    first = (
        views.join(buys, "session")
        .where((F.col("a") != F.col("b")) & (F.col("tv") <= F.col("tp")))
        .groupBy("session", "a", "b")
        .agg(F.min("tp").alias("tp"))
    )
    return first.groupBy("a", "b").agg(
        F.sum(weight(F.col("tp"), ref, half_life_days)).cast("float").alias("count")
    )


def substitution_views(events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """``(co_view, view_then_buy_another)`` pairs ``(a, b, count)`` counted only over
    sessions where the views were comparisons (``Signals.substitution_views``): a session
    where both items were bought does not count their co-view; ``[a, b]`` of the second
    counts sessions where ``a`` was viewed but not bought and ``b`` was bought."""
    F = _F()
    s = events.where(F.col("session").isNotNull())
    views = s.where(F.col("event") == VIEW).select("session", "item").distinct()
    buys = s.where(F.col("event") == PURCHASE).select("session", "item").distinct()
    flagged = views.join(
        buys.withColumn("bought", F.lit(True)), ["session", "item"], "left"
    ).select("session", "item", F.coalesce("bought", F.lit(False)).alias("bought"))
    a = flagged.select("session", F.col("item").alias("a"), F.col("bought").alias("ba"))
    b = flagged.select("session", F.col("item").alias("b"), F.col("bought").alias("bb"))
    co_view = (
        a.join(b, "session")
        .where((F.col("a") != F.col("b")) & ~(F.col("ba") & F.col("bb")))
        .groupBy("a", "b")
        .agg(F.count(F.lit(1)).cast("float").alias("count"))
    )
    viewed_only = flagged.where(~F.col("bought")).select("session", F.col("item").alias("a"))
    pav = (
        viewed_only.join(buys.withColumnRenamed("item", "b"), "session")
        .where(F.col("a") != F.col("b"))
        .groupBy("a", "b")
        .agg(F.count(F.lit(1)).cast("float").alias("count"))
    )
    return co_view, pav


def only(directed: DataFrame, *exclusions: DataFrame) -> DataFrame:
    """``directed`` pairs ``(a, b, count)`` absent from every exclusion (``Signals._only``)."""
    out = directed
    for e in exclusions:
        out = out.join(e.select("a", "b"), ["a", "b"], "left_anti")
    return out


def transposed(pairs: DataFrame) -> DataFrame:
    """``(b, a, count)`` as ``(a, b, count)``."""
    F = _F()
    return pairs.select(F.col("b").alias("a"), F.col("a").alias("b"), "count")


def item_counts(
    events: DataFrame, event: int, *, ref: int, half_life_days: float | None
) -> DataFrame:
    """``(item, count)``: (decayed) number of events of one type per item (popularity;
    ``Dataset.item_counts``)."""
    F = _F()
    return (
        events.where(F.col("event") == event)
        .groupBy("item")
        .agg(F.sum(weight(F.col("ts"), ref, half_life_days)).cast("float").alias("count"))
    )


def user_category(events: DataFrame, category_of_item: DataFrame) -> DataFrame:
    """``(user, category)``: the users (external ids) who bought from each category
    (``Signals.user_category``); ``category_of_item`` has columns ``item``, ``category``."""
    F = _F()
    return (
        events.where(F.col("event") == PURCHASE)
        .select("user", "item")
        .join(category_of_item.where(F.col("category") >= 0), "item")
        .select("user", "category")
        .distinct()
    )


def co_buyers(user_category: DataFrame) -> DataFrame:
    """``(a, b, count)``: the users who bought from both categories ``a`` and ``b`` (``a ==
    b``: the buyers of ``a``), from the ``(user, category)`` rows of :func:`user_category`
    (``U^T U`` of the in-process ``related_categories``)."""
    F = _F()
    a = user_category.select("user", F.col("category").alias("a"))
    b = user_category.select("user", F.col("category").alias("b"))
    return a.join(b, "user").groupBy("a", "b").agg(F.count(F.lit(1)).alias("count"))


def category_purchases(events: DataFrame, category_of_item: DataFrame) -> DataFrame:
    """``(category, purchases)``: purchase events of the items of each category."""
    F = _F()
    return (
        events.where(F.col("event") == PURCHASE)
        .select("item")
        .join(category_of_item.where(F.col("category") >= 0), "item")
        .groupBy("category")
        .agg(F.count(F.lit(1)).alias("purchases"))
    )


def item_event_counts(
    events: DataFrame, codes: list[int], *, ref: int, half_life_days: float | None
) -> DataFrame:
    """``(item, c0, c1, ...)``: :func:`item_counts` of each event code in ``codes`` in one
    pass (0 where an item has no such event)."""
    F = _F()
    w = weight(F.col("ts"), ref, half_life_days)
    sums = [
        F.coalesce(F.sum(F.when(F.col("event") == code, w)), F.lit(0.0))
        .cast("float")
        .alias(f"c{i}")
        for i, code in enumerate(codes)
    ]
    return events.where(F.col("event").isin(codes)).groupBy("item").agg(*sums)
