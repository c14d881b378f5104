"""Built-in loaders: map a published dataset's raw files onto recset's canonical format.

Each loader reads one raw layout from a directory and returns an :class:`IngestResult`:
the canonical catalog and events frames, plus ``notes`` that count every raw row read,
dropped or changed, and why. Nothing is dropped silently: for the event rows,
``rows_read - sum(notes["dropped_*"]) == events_written``; catalog rows follow the same rule
with ``catalog_rows_read``, ``catalog_dropped_*`` and ``catalog_items``.

Formats and the raw files each expects in the source directory:

- ``complete_journey`` (:mod:`.complete_journey`): ``transactions.parquet``, ``products.parquet``.
- ``instacart`` (:mod:`.instacart`): ``order_products_sample.csv`` (or Kaggle's ``orders.csv``
  plus ``order_products__prior.csv``), ``products.csv``, ``aisles.csv``, ``departments.csv``.
- ``taobao`` (:mod:`.taobao`): ``UserBehavior_head_814users.csv`` or ``UserBehavior.csv``.

:func:`ingest` runs a loader and writes the result with
:func:`recset.data._format.write_dataset`. docs/loaders.md is the user-facing description of
every mapping decision; keep it in step with the module docstrings.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from recset.data._format import write_dataset
from recset.data._promotions import write_promotions
from recset.data.loaders import complete_journey, instacart, taobao
from recset.data.loaders._common import IngestResult, Loader
from recset.errors import ConfigError, DataError

_log = logging.getLogger(__name__)

__all__ = ["LOADERS", "IngestResult", "Loader", "ingest"]
# --- registry and entry point ---------------------------------------------------------------


LOADERS: dict[str, Loader] = {
    "complete_journey": complete_journey.load,
    "instacart": instacart.load,
    "taobao": taobao.load,
}
"""Built-in loaders by format name, as ``recset ingest --format NAME`` accepts them."""


def ingest(
    format: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    force: bool = False,
) -> IngestResult:
    """Load a raw dataset with the named loader and write it in the canonical format.

    Parameters
    ----------
    format : str
        One of the keys of :data:`LOADERS` (``"complete_journey"``, ``"instacart"``,
        ``"taobao"``).
    src : path
        Directory holding the raw files as published (see each loader for the file names).
    out : path
        Output dataset directory; ``catalog.parquet`` and ``events.parquet`` are written
        there atomically (created if missing).
    force : bool
        Replace a dataset already in ``out``; without it such a directory (or ``out`` naming
        a file) is refused before anything is read.

    Returns
    -------
    IngestResult
        The frames that were written and the notes counting every dropped or changed row.

    Raises
    ------
    ConfigError
        If ``format`` is not a known loader (the message lists the allowed formats).
    DataError
        If ``src`` is not a directory, or a raw file or column the loader expects is missing
        (the message names the path and the expected file), or no event or no catalog row
        is left to write (nothing is written then).
    """
    loader = LOADERS.get(format)
    if loader is None:
        raise ConfigError(
            f"Unknown dataset format {format!r}. Expected one of: {', '.join(sorted(LOADERS))}."
        )
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: the output path exists and is not a directory")
    existing = [n for n in ("catalog.parquet", "events.parquet") if (target / n).exists()]
    if existing and not force:
        raise DataError(
            f"{target}: already holds a dataset ({', '.join(existing)}); pass force=True "
            "(--force) to replace it"
        )
    start = time.perf_counter()
    result = loader(Path(src))
    loaded = time.perf_counter()
    for what, frame in (("events", result.events), ("catalog items", result.catalog)):
        if len(frame) == 0:
            dropped = {k: v for k, v in result.notes.items() if "dropped" in k and v}
            raise DataError(
                f"{src}: the {format!r} loader found no {what} to write (dropped: {dropped}); "
                f"nothing was written to {out}"
            )
    write_dataset(result.catalog, result.events, out)
    if result.promotions is not None:
        write_promotions(result.promotions, out)
    else:  # a calendar left by an earlier ingest would not match the new data
        for stale in ("promotions.parquet", "promotions.csv"):
            (Path(out) / stale).unlink(missing_ok=True)
    _log.info(
        "ingest %s: %s -> %s: %d catalog items, %d events (load %.1fs, write %.1fs)",
        format,
        src,
        out,
        len(result.catalog),
        len(result.events),
        loaded - start,
        time.perf_counter() - loaded,
    )
    return result
