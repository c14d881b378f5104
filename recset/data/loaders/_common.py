"""Helpers shared by the built-in loaders: the result type, file and column checks."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recset.errors import DataError

_log = logging.getLogger(__name__)


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
    promotions : DataFrame or None
        The promotion calendar's canonical columns (:mod:`recset.data._promotions`), when the
        source has one.
    """

    catalog: pd.DataFrame
    events: pd.DataFrame
    notes: dict[str, int | str] = field(default_factory=dict)
    promotions: pd.DataFrame | None = None

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
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
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
    try:
        return pd.read_parquet(path, columns=list(columns))
    except Exception as exc:  # a damaged page or footer shows only when the data is read
        raise DataError(f"{path}: cannot be read as Parquet: {exc}") from exc


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
