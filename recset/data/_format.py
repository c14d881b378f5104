"""The canonical dataset format: column specs, writing, and validated reading.

A dataset is a directory holding ``catalog.parquet`` and ``events.parquet`` (or ``.csv``
files with the same columns). docs/data-format.md is the public description of this
contract; keep the two in step.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from recset.errors import ConfigError, DataError
from recset.progress import release_free_memory

if TYPE_CHECKING:
    import pyarrow as pa

_log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase")
"""Allowed values of ``events.event``; the code of an event is its position here."""

CATALOG_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "title": "string",
    "category_id": "string",
    "category_path": "string",
    "product_id": "string",
    "product_type": "string",
    "brand": "string",
    "price": "float64",
    "available": "bool",
    "aspects": "string",
}
"""Catalog columns and their types; only ``item_id`` is required."""

EVENT_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "item_id": "string",
    "event": "string",
    "timestamp": "int64",
    "session_id": "string",
    "order_id": "string",
}
"""Event columns; ``session_id`` and ``order_id`` are optional (null allowed)."""

REQUIRED_EVENT_COLUMNS = ("user_id", "item_id", "event", "timestamp")

ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "catalog": ("item_id", "category_id", "product_id", "product_type", "brand"),
    "events": ("user_id", "item_id", "session_id", "order_id"),
}
"""Columns holding ids: read as strings, never through a float (``12`` stays ``"12"``)."""

MIN_TIMESTAMP = 0
"""Default earliest plausible event time (epoch seconds): 1970-01-01."""

FUTURE_SLACK = 86_400
"""Default latest plausible event time: now plus this many seconds (clock and time zones)."""

_UNITS = (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))

OnBadRows = Literal["error", "skip"]

MAX_REPORTED_ERRORS = 10


@dataclass(frozen=True)
class RowError:
    """One rejected row: the file, its 1-based data row number (header excluded) and why."""

    file: str
    row: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: {self.message}"


@dataclass
class LoadReport:
    """What validation found: rows read and kept per file, and the rejected rows."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    quarantine: list[Path] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return sum(self.rows_read.values()) - sum(self.rows_kept.values())

    def summary(self) -> str:
        parts = [
            f"{name}: {self.rows_kept.get(name, 0):,} of {n:,} rows kept"
            for name, n in self.rows_read.items()
        ]
        text = "; ".join(parts)
        if self.quarantine:
            text += "; bad rows written to " + ", ".join(str(p) for p in self.quarantine)
        return text


def _atomic_write(path: Path, write: object) -> None:
    """Write through ``write(tmp_path)`` to a temporary name beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_str(col: pd.Series) -> pd.Series:
    """Nullable strings (pandas ``string`` dtype): nulls stay ``<NA>``, other values str().

    A float column of whole numbers (an integer id column that held a null, read through
    pandas) becomes ``"12"``, not ``"12.0"``.
    """
    if isinstance(col.dtype, pd.StringDtype):
        return col
    if pd.api.types.is_float_dtype(col):
        v = col.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < 2.0**53)
        if whole[~np.isnan(v)].all():
            return col.astype("Int64").astype("string")
    return col.astype("string")


def default_time_range() -> tuple[int, int]:
    """The default plausible event times: 1970-01-01 to now plus one day (epoch seconds)."""
    return MIN_TIMESTAMP, int(time.time()) + FUTURE_SLACK


def _iso(t: float) -> str:
    return str(pd.Timestamp(int(t), unit="s", tz="UTC").date())


def normalize_catalog(catalog: pd.DataFrame) -> pd.DataFrame:
    """Return ``catalog`` with every canonical column present, in canonical order and types.

    Missing optional columns are added as nulls (``available`` defaults to true). Columns
    that are not part of the format are dropped with a log message.
    """
    df = catalog.copy()
    extra = [c for c in df.columns if c not in CATALOG_COLUMNS]
    if extra:
        _log.info("catalog: ignoring columns not in the format: %s", extra)
    for col, dtype in CATALOG_COLUMNS.items():
        if col not in df.columns:
            df[col] = True if col == "available" else None
        if dtype == "string":
            df[col] = _as_str(df[col])
    df["price"] = pd.to_numeric(df["price"], errors="coerce").astype("float64")
    df["available"] = df["available"].astype("boolean").fillna(True).astype(bool)
    return df[list(CATALOG_COLUMNS)].reset_index(drop=True)


def normalize_events(events: pd.DataFrame) -> pd.DataFrame:
    """Return ``events`` with canonical columns; ``timestamp`` as int64 epoch seconds."""
    df = events.copy()
    for col in EVENT_COLUMNS:
        if col not in df.columns:
            df[col] = None
    ts = df["timestamp"]
    if not pd.api.types.is_integer_dtype(ts) or ts.isna().any():
        secs = _parse_timestamps(ts)
        bad = ~np.isfinite(secs) | (np.abs(secs) >= 2.0**62)
        if bad.any():
            raise DataError(
                "events: timestamp has unparseable or out-of-range values; validate before "
                f"writing (first: {ts[bad].head(3).tolist()})"
            )
        ts = pd.Series(secs.astype(np.int64), index=df.index)
    df["timestamp"] = ts.astype("int64")
    for col in ("user_id", "item_id", "event", "session_id", "order_id"):
        df[col] = _as_str(df[col])
    return df[list(EVENT_COLUMNS)].reset_index(drop=True)


# microsecond timestamps hold epoch seconds up to about year 294,000
_MAX_US_SECONDS = (2**63 - 1) // 1_000_000


def events_for_parquet(events: pd.DataFrame) -> pd.DataFrame:
    """Canonical events with ``timestamp`` (int64 epoch seconds) as a UTC microsecond
    timestamp, the type :func:`write_dataset` stores.

    Parquet's microsecond timestamp is what Spark and most engines read natively; pandas'
    default nanosecond one needs Spark's legacy flag. Reading accepts both, and integer
    seconds (the format's files before microsecond timestamps).
    """
    secs = events["timestamp"].to_numpy(dtype=np.int64)
    out_of_range = np.abs(secs) > _MAX_US_SECONDS
    if out_of_range.any():
        raise DataError(
            "events: timestamp values beyond a microsecond Parquet timestamp's range "
            f"(|t| <= {_MAX_US_SECONDS} epoch seconds); first: {secs[out_of_range][:3].tolist()}"
        )
    ts = pd.Series(secs * 1_000_000, index=events.index).astype("datetime64[us]")
    return events.assign(timestamp=ts.dt.tz_localize("UTC"))


def write_events_parquet(events: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write events as Parquet with microsecond timestamps (see :func:`events_for_parquet`)."""
    ev = events
    if not isinstance(ev["timestamp"].dtype, pd.DatetimeTZDtype):
        ev = events_for_parquet(ev)
    ev.to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=False)


def write_dataset(
    catalog: pd.DataFrame,
    events: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write a dataset directory in the canonical format (Parquet), atomically per file.

    Parameters
    ----------
    catalog, events : DataFrame
        Frames with the canonical columns (missing optional columns are added as nulls).
    out_dir : path
        Created if missing. Existing ``catalog.parquet`` / ``events.parquet`` are replaced
        only once the new file is completely written.
    extra_files : mapping of file name to text, optional
        Further files to write beside the data (e.g. the generator's ``truth.json``).
    """
    out = Path(out_dir)
    cat = normalize_catalog(catalog)
    ev = events_for_parquet(normalize_events(events))
    _atomic_write(out / "catalog.parquet", lambda p: cat.to_parquet(p, index=False))
    _atomic_write(out / "events.parquet", lambda p: write_events_parquet(ev, p))
    for name, text in (extra_files or {}).items():
        _atomic_write(out / name, lambda p, t=text: Path(p).write_text(t, encoding="utf-8"))
    return out


def _parse_timestamps(values: pd.Series) -> NDArray[np.float64]:
    """Epoch seconds as float64 (NaN: unparseable or not whole seconds) from ints, numeric
    strings, datetimes or ISO 8601 strings.

    Floats keep values far outside int64 (``"1e30"``, ``1e19``) as they are, so the range
    check can name them instead of a cast wrapping them around; every plausible time is far
    below 2**53, where float64 holds whole seconds exactly.
    """
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(values):
        return _datetime_seconds(values)
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.floor(v) == v, v, np.nan)
    as_str = _as_str(values.astype(object)).str.strip()
    out = np.full(len(values), np.nan)
    numeric = pd.to_numeric(as_str, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.floor(numeric) == numeric  # False for NaN; inf stays inf (out of range)
    out[whole] = numeric[whole]
    rest = (as_str.notna() & (as_str != "")).fillna(False).to_numpy(dtype=bool) & np.isnan(numeric)
    if rest.any():
        dt = pd.to_datetime(as_str[rest], errors="coerce", utc=True, format="ISO8601")
        out[np.flatnonzero(rest)] = _datetime_seconds(dt)
    return out


def _datetime_seconds(values: pd.Series) -> NDArray[np.float64]:
    """Whole epoch seconds of a datetime column (naive means UTC), NaN for NaT."""
    dt = values
    if getattr(dt.dt, "tz", None) is not None:
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    raw = dt.to_numpy(dtype="datetime64[s]")
    out = raw.astype(np.int64).astype(np.float64)
    out[np.isnat(raw)] = np.nan
    return out


def _find_file(directory: Path, stem: str) -> Path:
    for suffix in (".parquet", ".csv"):
        p = directory / f"{stem}{suffix}"
        if p.exists():
            return p
    raise DataError(
        f"{directory}: no {stem}.parquet or {stem}.csv found; a dataset directory holds "
        "catalog.parquet and events.parquet (or .csv files with the same columns)"
    )


def _read_parquet_ids_as_text(path: Path, id_columns: tuple[str, ...]) -> pd.DataFrame:
    """A Parquet file as a frame, its id columns cast to strings inside Arrow.

    pandas would turn an integer column holding a null into float64 (``12`` -> ``12.0``);
    Arrow's cast gives ``"12"`` for integers and whole floats alike.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cast = False
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if name in id_columns and not pa.types.is_string(col.type):
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            table = table.set_column(i, name, col.cast(pa.string()))
            cast = True
    if cast:  # pandas metadata would restore the old dtype of a cast column
        table = table.replace_schema_metadata(None)
        index = [n for n in table.column_names if n.startswith("__index_level_")]
        table = table.drop_columns(index)
    return table.to_pandas()


def _read_table(path: Path, id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    try:
        if path.suffix == ".csv":
            # every column as text: ids never pass through a float; NUL bytes and odd
            # encodings are the parser's to refuse
            # a row with more fields than the header is an error, not a shifted index
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                df = pd.read_csv(
                    path, dtype=str, keep_default_na=False, na_values=[""], index_col=False
                )
        else:
            df = _read_parquet_ids_as_text(path, id_columns)
    except Exception as exc:  # pyarrow and pandas raise many types here
        raise DataError(f"{path}: cannot be read as {path.suffix[1:]}: {exc}") from exc
    if df.empty:
        raise DataError(f"{path}: the file holds no rows")
    return df


def _blank(col: pd.Series) -> pd.Series:
    """True where a value is null or an empty/whitespace string."""
    if not (pd.api.types.is_string_dtype(col) or pd.api.types.is_object_dtype(col)):
        return col.isna()
    s = _as_str(col.astype(object) if pd.api.types.is_object_dtype(col) else col)
    return (s.isna() | s.str.strip().eq("")).fillna(True).astype(bool)


def _parse_bool(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(values, bad mask) for a boolean column that may arrive as text; null means true."""
    if pd.api.types.is_bool_dtype(col):
        return col.fillna(True).astype(bool), pd.Series(False, index=col.index)
    mapping = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    text = _as_str(col.astype(object)).str.strip().str.lower()
    null = (text.isna() | text.eq("")).fillna(True).astype(bool)
    parsed = text.map(mapping, na_action="ignore")
    bad = ~null & parsed.isna()
    return parsed.where(~(null | bad), True).astype(bool), bad


def _is_json_object(v: object) -> bool:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return True
    try:
        return isinstance(json.loads(str(v)), dict)
    except (ValueError, TypeError):
        return False


class _Checker:
    """Collects row errors for one file; a row may have several, it is dropped once."""

    def __init__(self, file: Path, n: int) -> None:
        self.file = file
        self.bad = np.zeros(n, dtype=bool)
        self.errors: list[tuple[int, str]] = []

    def flag(
        self, mask: pd.Series | np.ndarray, message: str, values: pd.Series | None = None
    ) -> None:
        """Mark rows; ``message`` may hold ``{v!r}``, filled from ``values`` for bad rows only."""
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return
        rows = np.flatnonzero(m)
        if values is not None:
            bad_values = values.to_numpy(dtype=object)[rows]
            self.errors.extend(
                (int(r), message.format(v=None if pd.isna(v) else v))
                for r, v in zip(rows, bad_values, strict=True)
            )
        else:
            self.errors.extend((int(r), message) for r in rows)
        self.bad |= m

    def row_errors(self) -> list[RowError]:
        return [RowError(str(self.file), r + 1, msg) for r, msg in sorted(self.errors)]


def _good_rows(df: pd.DataFrame, checker: _Checker) -> pd.DataFrame:
    """The rows of ``df`` the checker did not flag (``df`` itself, not a copy, when none is)."""
    return df[~checker.bad] if checker.bad.any() else df


def _write_quarantine(df: pd.DataFrame, checker: _Checker, directory: Path, stem: str) -> Path:
    reasons: dict[int, list[str]] = {}
    for r, msg in checker.errors:
        reasons.setdefault(r, []).append(msg)
    rows = np.flatnonzero(checker.bad)
    bad = df.iloc[rows].astype(object).copy()
    bad.insert(0, "error", ["; ".join(reasons[r]) for r in rows])
    bad.insert(0, "row", rows + 1)
    bad.insert(0, "file", str(checker.file))
    path = directory / f"{stem}.bad-rows.csv"
    _atomic_write(path, lambda p: bad.to_csv(p, index=False))
    return path


def _check_time_range(time_range: tuple[int | None, int | None] | None) -> tuple[int, int]:
    lo, hi = default_time_range()
    if time_range is None:
        return lo, hi
    if not isinstance(time_range, tuple | list) or len(time_range) != 2:
        raise ConfigError(
            "The 'time_range' parameter must be a (first, last) pair of epoch seconds (None: "
            f"the default). Got {time_range!r} instead."
        )
    first, last = time_range
    for name, v in (("first", first), ("last", last)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | np.integer)):
            raise ConfigError(
                f"The {name} bound of 'time_range' must be an int (epoch seconds) or None. "
                f"Got {v!r} instead."
            )
    lo = lo if first is None else int(first)
    hi = hi if last is None else int(last)
    if lo > hi:
        raise ConfigError(f"The 'time_range' parameter is empty: {lo} > {hi}.")
    return lo, hi


def _check_text(checker: _Checker, df: pd.DataFrame, reject_chars: str, why: str) -> None:
    """Flag text values holding any of ``reject_chars`` (e.g. NUL, which PostgreSQL refuses)."""
    if not reject_chars:
        return
    for col in df.columns:
        if not (pd.api.types.is_string_dtype(df[col]) or pd.api.types.is_object_dtype(df[col])):
            continue
        text = _as_str(df[col].astype(object))
        hit = np.zeros(len(df), dtype=bool)
        for c in reject_chars:
            hit |= text.str.contains(c, regex=False).fillna(False).to_numpy(dtype=bool)
        names = ", ".join(f"U+{ord(c):04X}" for c in reject_chars)
        checker.flag(hit, f"{col} {{v!r}} holds a character ({names}) that {why}", df[col])


def arrow_strings(values: pd.Series) -> pa.ChunkedArray:
    """A column as Arrow strings (``_as_str`` first), without a copy when it already is one."""
    import pyarrow as pa

    arr = _as_str(values).array
    if hasattr(arr, "__arrow_array__"):
        out = arr.__arrow_array__()
        return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])
    return pa.chunked_array([pa.array(arr.to_numpy(dtype=object, na_value=None), pa.string())])


def _member(values: pd.Series, known: pd.Series) -> NDArray[np.bool_]:
    """``values.isin(known)`` as text (nulls are never members), hashed inside Arrow.

    Neither pandas' Arrow-string ``isin`` (which walks ``known`` in Python: seconds for 100k
    catalog ids) nor a Python string per value (1.7 GiB for 30M events).
    """
    import pyarrow.compute as pc

    vals = arrow_strings(values)
    known_arr = arrow_strings(known).combine_chunks().cast(vals.type)
    hit = pc.is_in(vals, value_set=known_arr, skip_nulls=True)
    return np.asarray(hit.to_numpy(), dtype=bool)


def _check_events(
    ev_path: Path, item_ids: pd.Series, lo: int, hi: int, catalog_name: str = "the catalog"
) -> tuple[pd.DataFrame, pd.DataFrame, _Checker]:
    """Read and check an events file: (raw rows, rows with parsed timestamps, checker)."""
    raw_ev = _read_table(ev_path, ID_COLUMNS["events"]).reset_index(drop=True)
    missing = [c for c in REQUIRED_EVENT_COLUMNS if c not in raw_ev.columns]
    if missing:
        raise DataError(
            f"{ev_path}: missing required columns {missing}; found {list(raw_ev.columns)}"
        )
    ec = _Checker(ev_path, len(raw_ev))
    ev = raw_ev.copy()
    ec.flag(_blank(ev["user_id"]), "missing user_id")
    item_blank = _blank(ev["item_id"])
    ec.flag(item_blank, "missing item_id")
    bad_kind = ~_as_str(ev["event"]).isin(EVENT_TYPES).fillna(False).astype(bool)
    ec.flag(bad_kind, f"unknown event {{v!r}}; expected one of {list(EVENT_TYPES)}", ev["event"])
    secs = _parse_timestamps(ev["timestamp"])
    unparsed = np.isnan(secs)
    ec.flag(
        unparsed,
        "unparseable timestamp {v!r}; expected whole epoch seconds or an ISO 8601 date",
        ev["timestamp"],
    )
    with np.errstate(invalid="ignore"):
        outside = ~unparsed & ((secs < lo) | (secs > hi))
    where = f"outside the plausible range {_iso(lo)} .. {_iso(hi)} ({lo}..{hi} epoch seconds)"
    hinted = np.zeros(len(ev), dtype=bool)
    for unit, scale in _UNITS:
        with np.errstate(invalid="ignore"):
            scaled = secs / scale
            # only past 1973-03 (1e8 s): a year-3000 date in seconds is not 1971 in ms
            fits = outside & ~hinted & (scaled >= max(lo, 1e8)) & (scaled <= hi)
        hint = f"; it looks like {unit}: divide by {scale:,.0f} to get seconds"
        ec.flag(fits, f"timestamp {{v!r}} is {where}{hint}", ev["timestamp"])
        hinted |= fits
    ec.flag(outside & ~hinted, f"timestamp {{v!r}} is {where}", ev["timestamp"])
    # plain int64 (bad rows, dropped later, hold 0): no mask, no copy when normalized
    ev["timestamp"] = np.where(unparsed | outside, 0, secs).astype(np.int64)
    del secs, unparsed, outside, hinted
    absent = ~item_blank & ~_member(ev["item_id"], item_ids)
    ec.flag(absent, f"item_id {{v!r}} is not in {catalog_name}", ev["item_id"])
    return raw_ev, ev, ec


def read_validated(
    path: str | os.PathLike[str],
    *,
    on_bad_rows: OnBadRows = "error",
    quarantine_dir: str | os.PathLike[str] | None = None,
    time_range: tuple[int | None, int | None] | None = None,
    reject_chars: str = "",
    reject_reason: str = "the store cannot hold",
) -> tuple[pd.DataFrame, pd.DataFrame, LoadReport]:
    """Read and validate a canonical dataset directory.

    Returns the clean catalog and events (canonical columns and types; ``timestamp`` in
    epoch seconds) and a :class:`LoadReport`.

    With ``on_bad_rows="error"`` (the default) any bad row raises :class:`DataError` with
    the first errors (file, 1-based row, reason) and the total count. With ``"skip"`` the bad
    rows are written with their reasons to ``<quarantine_dir>/{catalog,events}.bad-rows.csv``
    (``quarantine_dir`` is required then) and the rest is returned. Each run replaces the
    quarantine files of the last: a file with no bad rows this time is removed.

    Parameters
    ----------
    time_range : (int or None, int or None), optional
        The plausible event times, inclusive, in epoch seconds (``None`` for a bound: its
        default, 1970-01-01 and now plus one day). Rows outside are bad rows; when a value
        fits the range in milliseconds, microseconds or nanoseconds the message says so.
    reject_chars : str
        Characters no text value of the catalog may hold (``"\\x00"`` for PostgreSQL, whose
        text columns refuse NUL); such rows are bad rows, found before any fitting.
    reject_reason : str
        The end of those rows' message ("... holds a character (U+0000) that <reason>").
    """
    if on_bad_rows not in ("error", "skip"):
        raise ConfigError(f"on_bad_rows must be 'error' or 'skip'. Got {on_bad_rows!r} instead.")
    if on_bad_rows == "skip" and quarantine_dir is None:
        raise ConfigError("on_bad_rows='skip' needs a quarantine_dir for the bad rows")
    lo, hi = _check_time_range(time_range)
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a dataset directory (it does not exist or is a file)")
    report = LoadReport()
    # the raw frames are kept only for a quarantine file: else they go once checked
    checkers: list[tuple[_Checker, pd.DataFrame | None, str]] = []

    cat_path = _find_file(directory, "catalog")
    raw_cat = _read_table(cat_path, ID_COLUMNS["catalog"]).reset_index(drop=True)
    if "item_id" not in raw_cat.columns:
        raise DataError(
            f"{cat_path}: missing required column 'item_id'; found {list(raw_cat.columns)}"
        )
    cc = _Checker(cat_path, len(raw_cat))
    cc.flag(_blank(raw_cat["item_id"]), "missing item_id")
    dup = _as_str(raw_cat["item_id"]).duplicated(keep="first") & ~_blank(raw_cat["item_id"])
    cc.flag(dup, "duplicate item_id (first occurrence kept)")
    cat = raw_cat.copy()
    if "price" in cat.columns:
        price = pd.to_numeric(cat["price"].astype(object), errors="coerce").astype("float64")
        cc.flag(price.isna() & ~_blank(cat["price"]), "price is not a number")
        cc.flag(np.isinf(price), "price {v!r} is not finite", cat["price"])
        cc.flag(price < 0, "price {v!r} is negative", cat["price"])
        cat["price"] = price
    if "available" in cat.columns:
        cat["available"], bad_avail = _parse_bool(cat["available"])
        cc.flag(bad_avail, "available is not a boolean (true/false/1/0)")
    if "aspects" in cat.columns:
        present = ~_blank(cat["aspects"])
        ok = pd.Series(True, index=cat.index)
        ok[present] = cat.loc[present, "aspects"].map(_is_json_object)
        cc.flag(~ok, "aspects is not a JSON object")
    _check_text(cc, raw_cat, reject_chars, reject_reason)
    report.rows_read[cat_path.name] = len(raw_cat)
    checkers.append((cc, raw_cat if on_bad_rows == "skip" and cc.bad.any() else None, "catalog"))
    del raw_cat
    cat = normalize_catalog(_good_rows(cat, cc))
    report.rows_kept[cat_path.name] = len(cat)

    ev_path = _find_file(directory, "events")
    raw_ev, ev, ec = _check_events(ev_path, cat["item_id"], lo, hi)
    report.rows_read[ev_path.name] = len(raw_ev)
    checkers.append((ec, raw_ev if on_bad_rows == "skip" and ec.bad.any() else None, "events"))
    del raw_ev
    ev = _good_rows(ev, ec)
    release_free_memory()  # the parsing's temporaries, before the frames are indexed
    report.rows_kept[ev_path.name] = len(ev)

    for checker, _, _ in checkers:
        report.errors.extend(checker.row_errors())
    total = sum(int(c.bad.sum()) for c, _, _ in checkers)
    if quarantine_dir is not None:
        # this run's quarantine replaces the last one's: no stale file survives a later run
        qdir = Path(quarantine_dir)
        for checker, raw, stem in checkers:
            if raw is not None:
                report.quarantine.append(_write_quarantine(raw, checker, qdir, stem))
            else:
                (qdir / f"{stem}.bad-rows.csv").unlink(missing_ok=True)
    if report.errors:
        if on_bad_rows == "error":
            first = "\n  ".join(str(e) for e in report.errors[:MAX_REPORTED_ERRORS])
            raise DataError(
                f"{directory}: {total:,} bad rows ({len(report.errors):,} problems); "
                f"first ones:\n  {first}\n"
                "Fix them, or pass --on-bad-rows skip to quarantine them and go on."
            )
        _log.warning("skipped %d bad rows: %s", total, report.summary())
    if ev.empty:
        raise DataError(f"{ev_path}: no valid events remain after validation")
    return cat, normalize_events(ev), report


def read_events(
    path: str | os.PathLike[str],
    item_ids: pd.Series,
    *,
    time_range: tuple[int | None, int | None] | None = None,
    catalog_name: str = "the catalog",
) -> pd.DataFrame:
    """Read and validate canonical events alone (``events.parquet`` / ``.csv``, or a
    directory holding one) against known ``item_ids``, by the rules of
    :func:`read_validated`; any bad row raises :class:`DataError` naming file, row and reason.

    Returns the events in canonical columns (``timestamp`` in epoch seconds).
    """
    lo, hi = _check_time_range(time_range)
    p = Path(path)
    ev_path = _find_file(p, "events") if p.is_dir() else p
    if not ev_path.is_file() or ev_path.suffix not in (".parquet", ".csv"):
        raise DataError(
            f"{ev_path}: not an events file; expected events.parquet or events.csv (or a "
            "directory holding one)"
        )
    _, ev, ec = _check_events(ev_path, item_ids, lo, hi, catalog_name)
    errors = ec.row_errors()
    if errors:
        first = "\n  ".join(str(e) for e in errors[:MAX_REPORTED_ERRORS])
        raise DataError(
            f"{ev_path}: {int(ec.bad.sum()):,} bad rows ({len(errors):,} problems); "
            f"first ones:\n  {first}"
        )
    return normalize_events(ev)
