"""Similarity and top-k rows on Spark, with the in-process float32 arithmetic and tie-break.

The in-process pair sources score ``count[a, b] * left[a] * right[b]`` in float32, capped at
1 (``recset.recall._cooccurrence.pair_topk`` / ``asymmetric_cosine`` / ``ochiai``), and keep
each row's best ``k``, ties to the lower column id (``recset.signals.topk_rows``). Spark's
float columns are IEEE float32 too, and a float32 square root or quotient computed in double
and rounded once is the same number, so the rows are equal. Only a general ``alpha`` (not
0.5 nor 1) goes through ``pow``, where Java and C may differ in the last bit of a double.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from recset.spark._session import quiet_pandas

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def _F():  # noqa: ANN202, N802
    from pyspark.sql import functions

    return functions


def _power(occ: Column, exponent: float) -> Column:
    """``occ ** exponent`` as numpy computes it for float64 (0 and -1 special)."""
    F = _F()
    if exponent == 0:
        return F.lit(1.0)
    if exponent == -1:
        return F.lit(1.0) / occ
    return F.pow(occ, F.lit(float(exponent)))


def factors(occ: DataFrame, alpha: float, *, inv_sqrt: bool) -> DataFrame:
    """``(unit, left, right)`` float32 factors of the similarity from ``(unit, occ)``.

    ``inv_sqrt``: ``1 / sqrt(occ)`` on both sides in float32 (Ochiai as the in-process code
    computes it); else ``occ ** -alpha`` and ``occ ** -(1 - alpha)`` in float64, rounded to
    float32. Units that never occur get 0.
    """
    F = _F()
    pos = F.col("occ") > 0
    occ64 = F.col("occ").cast("double")
    if inv_sqrt:
        inv = (F.lit(1.0) / F.sqrt(occ64).cast("float").cast("double")).cast("float")
        left = right = F.when(pos, inv).otherwise(F.lit(0.0).cast("float"))
    else:
        zero = F.lit(0.0).cast("float")
        left = F.when(pos, _power(occ64, -alpha).cast("float")).otherwise(zero)
        right = F.when(pos, _power(occ64, -(1.0 - alpha)).cast("float")).otherwise(zero)
    return occ.select("unit", left.alias("left"), right.alias("right"))


def similarity(
    counts: DataFrame,
    occ: DataFrame,
    *,
    alpha: float,
    inv_sqrt: bool,
    min_support: float,
    min_value: float,
    broadcast: bool = False,
) -> DataFrame:
    """``(a, b, sim)``: ``min((count * left[a]) * right[b], 1)`` in float32 for the pairs
    ``(a, b, count)`` with ``count >= min_support`` (when > 0) and ``sim >= min_value``.

    ``broadcast``: the per-unit factors are small enough to send to every task, so the
    pairs are not shuffled for the two joins (they keep their partitioning by ``a``, which
    the top-k window reads)."""
    F = _F()
    f = factors(occ, alpha, inv_sqrt=inv_sqrt)

    c = counts
    if min_support > 0:
        c = c.where(F.col("count") >= F.lit(float(min_support)).cast("float"))
    fa = f.select(F.col("unit").alias("a"), "left")
    fb = f.select(F.col("unit").alias("b"), "right")
    if broadcast:
        fa, fb = F.broadcast(fa), F.broadcast(fb)
    sim = F.least((F.col("count") * F.col("left")) * F.col("right"), F.lit(1.0).cast("float"))
    return (
        c.join(fa, "a")
        .join(fb, "b")
        .select("a", "b", sim.alias("sim"))
        .where(F.col("sim") >= F.lit(float(min_value)).cast("float"))
    )


def topk(pairs: DataFrame, k: int) -> DataFrame:
    """``(a, b, sim, rank)``: the ``k`` best ``b`` of every ``a`` (rank 1..k), ties to the
    lower ``b``, as ``recset.signals.topk_rows``."""
    from pyspark.sql import Window

    F = _F()
    w = Window.partitionBy("a").orderBy(F.col("sim").desc(), F.col("b").asc())
    return pairs.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= k)


def collect_topk(
    rows: DataFrame, n_rows: int, k: int
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The top-k rows on the driver: ``(idx, val)`` of shape ``(n_rows, k)``, padded with -1
    / -inf (the in-process layout). Only these ``<= n_rows * k`` rows leave Spark."""
    with quiet_pandas():
        df = rows.select("a", "b", "sim", "rank").toPandas()
    idx = np.full((n_rows, k), -1, dtype=np.int32)
    val = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if len(df):
        a = df["a"].to_numpy(dtype=np.int64)
        r = df["rank"].to_numpy(dtype=np.int64) - 1
        idx[a, r] = df["b"].to_numpy(dtype=np.int32)
        val[a, r] = df["sim"].to_numpy(dtype=np.float32)
    return idx, val
