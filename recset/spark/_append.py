"""The Spark side of ``recset build --append EVENTS --engine spark``: the appended events'
pair counts.

What grows with the square of a basket or session is counting its pairs; that runs on Spark
(:func:`~recset.spark._signals.groups` / :func:`~recset.spark._signals.cooccurrence`, the
functions of the full Spark build, weighted at the union's reference time). Only the new
events' distinct pairs reach the driver. Adding them to the stored counts (a decay factor
times the engine version's count arrays, plus the new ones) and recomputing the affected
candidate rows run in process (:func:`recset.recall.append_counts`): the stored counts are
arrays of the engine version in the driver, and the rows recomputed are only those of the
units the new events touch (a day's baskets and sessions against the whole catalog).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import Dataset
from recset.errors import DataError
from recset.recall import PairCounter, PairRecall, RecallConfig
from recset.recall.co_purchase import CoPurchaseRecall
from recset.recall.co_view import CoViewRecall
from recset.spark import _signals as S
from recset.spark._build import _units_frame
from recset.spark._session import quiet_pandas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_log = logging.getLogger(__name__)


def _collect_pairs(counts: DataFrame, n_units: int) -> sp.csr_matrix:
    with quiet_pandas():
        p = counts.select("a", "b", "count").toPandas()
    m = sp.csr_matrix(
        (
            p["count"].to_numpy(np.float32),
            (p["a"].to_numpy(np.int64), p["b"].to_numpy(np.int64)),
        ),
        shape=(n_units, n_units),
        dtype=np.float32,
    )
    m.sort_indices()
    return m


def _collect_occ(occ: DataFrame, n_units: int) -> NDArray[np.float32]:
    with quiet_pandas():
        p = occ.select("unit", "occ").toPandas()
    out = np.zeros(n_units, dtype=np.float32)
    out[p["unit"].to_numpy(np.int64)] = p["occ"].to_numpy(np.float32)
    return out


class SparkPairCounter:
    """``pair_counter`` of :func:`recset.engine.append_engine` on a SparkSession: counts
    each pair source's new groups (baskets, view sessions) on Spark from the appended
    events' Parquet file."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def __call__(self, new: Dataset, events: Path, config: RecallConfig) -> PairCounter:
        """The counter of the events at ``events`` (a Parquet file or a directory holding
        ``events.parquet``), which ``new`` holds validated with the engine's item ids."""
        frame = S.read_events(self.spark, events, new)
        b = config.build
        half_life, max_group = b.half_life_days or None, b.max_group_size

        def count(
            name: str, src: PairRecall, ref: int
        ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
            kind: S.GroupKind
            if type(src) is CoViewRecall:
                kind = "view_session"
            elif type(src) is CoPurchaseRecall and src.config.unit == "basket":  # type: ignore[attr-defined]
                kind = "basket"
            else:  # append_counts refuses the others before counting
                raise DataError(f"source {name!r} ({src.name}) has no Spark append counts")
            t0 = time.perf_counter()
            n_units = len(src.rep_)
            entries, weights = S.groups(
                frame, kind, ref=ref, half_life_days=half_life, max_group_size=max_group
            )
            units = S.pooled(entries, _units_frame(self.spark, src.unit_of_item_, n_units))
            counts = _collect_pairs(S.cooccurrence(units, weights), n_units)
            occ = _collect_occ(S.occurrences(units, weights), n_units)
            _log.info(
                "append: %s counted on Spark in %.1f s (%d new distinct pairs)",
                name,
                time.perf_counter() - t0,
                counts.nnz,
            )
            return counts, occ

        return count
