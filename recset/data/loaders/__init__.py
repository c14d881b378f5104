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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recset.data._format import write_dataset
from recset.errors import ConfigError, DataError

_log = logging.getLogger(__name__)

__all__ = ["LOADERS", "IngestResult", "Loader", "ingest"]


@dataclass(frozen=True)
class IngestResult:
    """What a loader produced.

    Attributes
    ----------
    catalog : DataFrame
        Canonical catalog columns (see :data:`recset.data._format.CATALOG_COLUMNS`).
    events : DataFrame
        Canonical event columns (see :data:`recset.data._format.EVENT_COLUMNS`).
    notes : dict of str to int or str
        Counts of the rows read, dropped (``dropped_*``, ``catalog_dropped_*``) and changed,
        each under a key that says why, plus a few descriptive strings (e.g. ``format``).
    """

    catalog: pd.DataFrame
    events: pd.DataFrame
    notes: dict[str, int | str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per note, for logs and the CLI."""
        width = max((len(k) for k in self.notes), default=0)
        lines = []
        for key, value in self.notes.items():
            text = f"{value:,}" if isinstance(value, int) else str(value)
            lines.append(f"{key:<{width}}  {text}")
        return "\n".join(lines)


Loader = Callable[[Path], IngestResult]


# --- helpers shared by the loader modules ---------------------------------------------------


def _check_dir(src: str | os.PathLike[str], expected: Sequence[str]) -> Path:
    """Return ``src`` as a Path, or raise DataError if it is not a directory."""
    path = Path(src)
    if not path.is_dir():
        raise DataError(
            f"{path}: the source directory does not exist or is not a directory; "
            f"expected a directory holding {', '.join(expected)}"
        )
    return path


def _require_file(directory: Path, name: str, fmt: str) -> Path:
    """Return ``directory / name``, or raise DataError naming the missing file."""
    path = directory / name
    if not path.is_file():
        raise DataError(f"{path}: file not found; the {fmt!r} loader expects {name} in {directory}")
    return path


def _first_existing(directory: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def _require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Raise DataError naming the file if any of ``columns`` is missing from ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing required columns {missing}; found {list(df.columns)}")


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pandas.read_csv that turns parse failures into a DataError naming the file."""
    try:
        return pd.read_csv(path, **kwargs)  # type: ignore[call-overload, no-any-return]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {exc}") from exc


def _read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """pandas.read_parquet of ``columns``; a missing column or bad file is a DataError."""
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot be read as Parquet: {exc}") from exc
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}: missing required columns {missing}; found {names}")
    return pd.read_parquet(path, columns=list(columns))


def _id_strings(values: pd.Series) -> pd.Series:
    """Ids as a pandas ``str`` Series (nulls and blanks missing); integral floats lose ``.0``."""
    s = values
    if pd.api.types.is_float_dtype(s):
        s = s.astype("Int64")
    if pd.api.types.is_integer_dtype(s) and not s.hasnans:
        return s.astype("str")
    out = s.astype("string").str.strip()
    return out.mask(out == "").astype("str")


def _join_levels(frame: pd.DataFrame, columns: Sequence[str], sep: str = " > ") -> pd.Series:
    """Join the non-null, non-empty values of ``columns`` row by row; all null gives None."""
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    for col in columns:
        part = frame[col].astype("string").str.strip()
        part = part.where(part != "", pd.NA)
        joined = out + sep + part
        out = joined.where(out.notna() & part.notna(), out.fillna(part))
    return out.astype(object).where(out.notna(), None)


def _drop(mask: pd.Series, reason: str, notes: dict[str, int | str]) -> pd.Series:
    """Record ``mask.sum()`` under ``reason`` and return the keep-mask ``~mask``."""
    notes[reason] = int(mask.sum())
    return ~mask


# --- registry and entry point ---------------------------------------------------------------

# The loader modules import the helpers above, so they are imported after them.
from recset.data.loaders import complete_journey, instacart, taobao  # noqa: E402

LOADERS: dict[str, Loader] = {
    "complete_journey": complete_journey.load,
    "instacart": instacart.load,
    "taobao": taobao.load,
}
"""Built-in loaders by format name, as ``recset ingest --format NAME`` accepts them."""


def ingest(format: str, src: str | os.PathLike[str], out: str | os.PathLike[str]) -> IngestResult:
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
        there atomically (created if missing, replaced if present).

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
        (the message names the path and the expected file).
    """
    loader = LOADERS.get(format)
    if loader is None:
        raise ConfigError(
            f"Unknown dataset format {format!r}. Expected one of: {', '.join(sorted(LOADERS))}."
        )
    start = time.perf_counter()
    result = loader(Path(src))
    loaded = time.perf_counter()
    write_dataset(result.catalog, result.events, out)
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
