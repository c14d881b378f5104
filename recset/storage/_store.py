"""The recset store: catalog, precomputed recall lists, artifact registry and backtest runs.

One :class:`Store` wraps one SQLAlchemy engine (a SQLite file by default, PostgreSQL by URL)
plus a directory for artifact files. Every write that must be all-or-nothing runs in one
transaction; artifact files are written to a temporary directory and renamed into place only
together with their registry row.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from recset.errors import ConfigError, DataError, StorageError
from recset.storage._faults import fault_point
from recset.storage._lock import LockTarget, build_lock, host_tag, process_alive, process_start
from recset.storage._manifest import (
    OWNER_NAME,
    inside,
    verify_manifest,
    write_manifest,
)
from recset.storage._models import (
    CATALOG_COLUMNS,
    CATALOG_STRING_COLUMNS,
    DEFAULT_TABLE_PREFIX,
    RELEASE_STAGES,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    Tables,
    check_table_prefix,
    tables,
)
from recset.storage._remote import DATABASE, Remote, cache_root, is_remote, remote_for

_log = logging.getLogger(__name__)

SQLITE_FILENAME = "recset.sqlite"
"""File name of the SQLite database when a store is opened on a directory."""

ARTIFACTS_DIRNAME = "artifacts"
"""Default artifact directory, beside the SQLite file."""

ArtifactStatus = Literal["active", "retired", "staged"]

_CATALOG_CHUNK = 10_000
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_BUILD_ID_RE = re.compile(r"[^\s]{1,128}")
_PASSWORD_RE = re.compile(r"(://[^:/@]*:)[^@]*@")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ArtifactRecord:
    """One registered artifact version.

    Attributes
    ----------
    name : str
        Artifact name, e.g. ``"engine"`` or ``"ranker"``.
    version : int
        1, 2, ... per name, in the order the versions were saved.
    created_at : datetime
        When it was saved (timezone-aware, UTC).
    status : {"active", "retired", "staged"}
        At most one version per name is active.
    path : str
        Directory of its files, relative to :attr:`Store.artifact_dir` (``<name>/v<version>``);
        use :meth:`Store.artifact_path` for the absolute path.
    metrics, params : dict
        What was passed to :meth:`Store.save_artifact` (decoded JSON).
    config_hash : str or None
        Hash of the validated configuration the artifact was built with.
    release : str or None
        Token of the catalog saved with this version (``catalog=`` of
        :meth:`Store.save_artifact`), or None.
    manifest : str or None
        ``"sha256:<hex>"`` of the version's ``manifest.json`` (None: saved by a recset
        without manifests, loaded unchecked).
    """

    name: str
    version: int
    created_at: datetime
    status: ArtifactStatus
    path: str
    metrics: dict[str, Any]
    params: dict[str, Any]
    config_hash: str | None
    release: str | None = None
    manifest: str | None = None


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: the versions of the served artifacts a service loads together.

    Attributes
    ----------
    id : int
        1, 2, ... in the order releases were recorded.
    created_at : datetime
        When it was recorded (timezone-aware, UTC).
    status : {"active", "retired", "staged"}
        At most one release is active: the one :meth:`Engine.load` and ``recset serve`` load.
    pins : dict of str to int
        The pinned version of each artifact of :data:`RELEASE_STAGES` it holds (``engine``
        always; ``ranker``, ``personalizer``, ``type_transition`` when pinned).
    config_hash : str or None
        Hash of the configuration of its engine.
    note : str
        Why it was recorded (``"recset build"``, ``"train-ranker"``...).
    """

    id: int
    created_at: datetime
    status: ArtifactStatus
    pins: dict[str, int]
    config_hash: str | None
    note: str = ""

    @property
    def engine(self) -> int:
        """The pinned engine version."""
        return self.pins["engine"]

    def describe(self) -> str:
        """``"release 3 (engine v2, ranker v1)"``."""
        parts = ", ".join(f"{n} v{v}" for n, v in self.pins.items())
        return f"release {self.id} ({parts})"


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Store.prune` removed (release ids, ``(name, version)`` artifacts)."""

    releases: list[int]
    artifacts: list[tuple[str, int]]


@dataclass(frozen=True)
class BacktestRun:
    """One recorded backtest run (see :meth:`Store.record_backtest`).

    Timestamps are timezone-aware UTC; ``config`` and ``metrics`` are decoded JSON.
    """

    id: int
    dataset: str
    created_at: datetime
    started_at: datetime
    finished_at: datetime
    config: dict[str, Any]
    metrics: dict[str, Any]
    report_path: str | None


# --------------------------------------------------------------------------- helpers


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one.

    The bytes go to a temporary file in the same directory, which is flushed, fsynced and
    renamed over ``path`` with :func:`os.replace`. Parent directories are created.

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    data : bytes
        The full new content.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other processes may need to read it
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_default(o: object) -> Any:
    # numpy scalars and arrays show up in metrics and scores; datetimes and paths in configs.
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return o.isoformat()
    if isinstance(o, os.PathLike):
        return os.fspath(cast(os.PathLike[str], o))
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _dumps(value: object, what: str) -> str:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what} cannot be stored as JSON: {e}") from e


def _dumps_dict(value: Mapping[str, Any] | None, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise DataError(f"{what} must be a dict. Got {type(value).__name__} instead.")
    return _dumps(dict(value), what)


def _describe(e: BaseException) -> str:
    """A one-line description of a database error, without the SQL or its parameters."""
    orig = getattr(e, "orig", None)
    src = orig if orig is not None else e
    text = str(src).strip().splitlines()
    return f"{type(src).__name__}: {text[0] if text else ''}".rstrip(": ")


def _mask(raw: str) -> str:
    return _PASSWORD_RE.sub(r"\1***@", raw)


def _as_datetime(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise DataError(f"{what} must be a datetime. Got {type(value).__name__} instead.")
    return value


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise StorageError(
            "An artifact name must be 1-200 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit (it names a directory). Got {name!r} instead."
        )
    return name


def _check_build_id(build_id: object) -> str:
    if not isinstance(build_id, str) or not _BUILD_ID_RE.fullmatch(build_id):
        raise StorageError(
            f"A build_id must be a non-empty string of at most 128 characters without "
            f"whitespace. Got {build_id!r} instead."
        )
    return build_id


def _copy_field(value: object) -> str:
    """One field of PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        return repr(value)  # round-trips exactly; 'nan' and 'inf' are accepted too
    return str(value)


def _insert_rows(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk-insert ``rows`` (dicts with the same keys) inside ``conn``'s transaction.

    On psycopg2 this uses ``COPY ... FROM STDIN``: measured at about 1 s for 100k catalog
    rows against about 8 s for SQLAlchemy's batched ``INSERT ... VALUES``. Elsewhere it is a
    plain executemany (fast on SQLite).
    """
    if not rows:
        return
    if conn.dialect.driver != "psycopg2":
        conn.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    buf = io.StringIO()
    buf.writelines("\t".join([_copy_field(r[c]) for c in columns]) + "\n" for r in rows)
    buf.seek(0)
    prep = conn.dialect.identifier_preparer
    sql = (
        f"COPY {prep.format_table(table)} ({', '.join(prep.quote(c) for c in columns)}) FROM STDIN"
    )
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(sql, buf)
    except dbapi.Error as e:
        # Raise what SQLAlchemy would (IntegrityError for a duplicate key, ...).
        raise sa_exc.DBAPIError.instance(sql, None, e, dbapi.Error, dialect=conn.dialect) from e
    finally:
        cursor.close()


# --------------------------------------------------------------------------- catalog rows


def _string_values(col: pd.Series) -> list[str | None]:
    obj = col.astype(object)
    isna = obj.isna().to_numpy()
    return [None if na else str(v) for v, na in zip(obj.tolist(), isna, strict=True)]


def _aspects_values(col: pd.Series, first_row: int = 0) -> list[str | None]:
    out: list[str | None] = []
    for i, v in enumerate(col.astype(object).tolist(), start=first_row):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, Mapping):
            out.append(_dumps(dict(cast(Mapping[str, Any], v)), f"catalog row {i}: aspects"))
        elif v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(None)
        else:
            raise DataError(
                f"catalog row {i}: aspects must be JSON text, a dict or null. "
                f"Got {type(v).__name__} instead."
            )
    return out


def _available_values(col: pd.Series, first_row: int = 0) -> list[bool]:
    if pd.api.types.is_bool_dtype(col.dtype) and not col.isna().any():
        return [bool(v) for v in col.tolist()]
    out: list[bool] = []
    for i, v in enumerate(col.astype(object).tolist(), start=first_row):
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append(True)  # the catalog format's default: available unless stated
        elif isinstance(v, bool | np.bool_):
            out.append(bool(v))
        elif isinstance(v, int | np.integer) and int(v) in (0, 1):
            out.append(bool(v))
        else:
            raise DataError(
                f"catalog row {i}: available must be a bool (or null, meaning true). "
                f"Got {v!r} instead."
            )
    return out


def _catalog_row_chunks(catalog: pd.DataFrame, size: int) -> Iterator[list[dict[str, Any]]]:
    """The insert parameters of ``catalog`` (None for every null), ``size`` rows at a time.

    The frame is checked as a whole first (``item_id`` present, ``price`` numeric); only one
    chunk's row dicts exist at a time (3M catalog rows as dicts take about 2 GiB). A value
    that cannot be stored (``aspects`` or ``available`` of the wrong type) raises
    :class:`DataError` naming its row when its chunk is converted: callers insert inside a
    transaction, which the error rolls back.
    """
    if not isinstance(catalog, pd.DataFrame):
        raise DataError(f"The catalog must be a pandas DataFrame. Got {type(catalog).__name__}.")
    if "item_id" not in catalog.columns:
        raise DataError(
            f"The catalog has no 'item_id' column; columns are {list(catalog.columns)}."
        )
    extra = [c for c in catalog.columns if c not in CATALOG_COLUMNS]
    if extra:
        _log.info("replace_catalog: ignoring columns not in the catalog format: %s", extra)
    missing_ids = np.flatnonzero(catalog["item_id"].astype(object).isna().to_numpy())
    if missing_ids.size:
        raise DataError(f"catalog rows {missing_ids[:10].tolist()} have no item_id.")
    price: pd.Series | None = None
    if "price" in catalog.columns:
        try:
            price = pd.to_numeric(catalog["price"], errors="raise").astype("float64")
        except (TypeError, ValueError) as e:
            raise DataError(f"catalog column 'price' must be numeric: {e}") from e
    names = [*CATALOG_COLUMNS, "position"]
    for start in range(0, len(catalog), size):
        part = catalog.iloc[start : start + size]
        n = len(part)
        values: dict[str, list[Any]] = {}
        for name in CATALOG_STRING_COLUMNS:
            if name not in part.columns:
                values[name] = [None] * n
            elif name == "aspects":
                values[name] = _aspects_values(part[name], start)
            else:
                values[name] = _string_values(part[name])
        values["price"] = (
            [None] * n
            if price is None
            else [None if np.isnan(p) else p for p in price.iloc[start : start + size].tolist()]
        )
        values["available"] = (
            _available_values(part["available"], start)
            if "available" in part.columns
            else [True] * n
        )
        values["position"] = list(range(start, start + n))
        columns = [values[c] for c in names]
        yield [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _duplicate_ids(catalog: pd.DataFrame) -> list[str]:
    """The item ids that occur more than once in ``catalog`` (as text), in first-seen order."""
    ids = pd.Series(_string_values(catalog["item_id"]), dtype=object)
    return ids[ids.duplicated()].unique().tolist()


def _catalog_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    cols: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in CATALOG_COLUMNS]
    )
    data: dict[str, pd.Series] = {}
    for name, vals in zip(CATALOG_COLUMNS, cols, strict=True):
        if name == "price":
            data[name] = pd.Series(
                np.array([np.nan if v is None else v for v in vals], dtype="float64")
            )
        elif name == "available":
            data[name] = pd.Series(np.array([bool(v) for v in vals], dtype=bool))
        else:
            data[name] = pd.Series(list(vals), dtype=object)
    return pd.DataFrame(data)


# --------------------------------------------------------------------------- opening


def _with_available_driver(url: URL) -> URL:
    """Pick psycopg2 for a bare ``postgresql://`` URL when psycopg (3) is not installed.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, but recset's ``postgres`` extra
    installs psycopg2; a bare URL should work with either.
    """
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return url.set(drivername="postgresql+psycopg2")
    return url


def _resolve_target(
    target: str | os.PathLike[str], create: bool
) -> tuple[URL, Path | None, Path | None]:
    """Return (url, SQLite file or None, default artifact dir or None) for ``target``."""
    raw = os.fsdecode(os.fspath(target))
    if "://" in raw:
        try:
            url = make_url(raw)
        except sa_exc.ArgumentError as e:
            raise StorageError(f"{_mask(raw)!r} is not a valid SQLAlchemy URL: {e}") from e
        if url.get_backend_name() != "sqlite":
            return _with_available_driver(url), None, None
        db = url.database
        if not db or db == ":memory:" or db.startswith("file:"):
            return url, None, None
        file = Path(db).expanduser().resolve()
        return url.set(database=str(file)), file, file.parent / ARTIFACTS_DIRNAME
    directory = Path(raw).expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise StorageError(
            f"Cannot open a recset store at {directory}: it is a file. Pass a directory or a "
            "SQLAlchemy URL (e.g. sqlite:///path/recset.sqlite or postgresql://host/db)."
        )
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    file = directory / SQLITE_FILENAME
    return URL.create("sqlite", database=str(file)), file, directory / ARTIFACTS_DIRNAME


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets a serving process read while a build writes; NORMAL is safe under WAL.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _create_engine(url: URL, masked: str) -> Engine:
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend != "sqlite":
        # A host process keeps the store open for days; drop connections the server closed.
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as e:
        raise StorageError(f"Cannot open the recset store at {masked}: {e}") from e
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


_STORE_ID_KEY = "store_id"


def _migrate_1_to_2(conn: Connection, t: Tables) -> None:
    """Schema 1 -> 2: the catalog_release table and the release/manifest artifact columns."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(t.artifact.name)}
    prep = conn.dialect.identifier_preparer
    for name in ("release", "manifest"):
        if name not in have:
            col = t.artifact.c[name]
            conn.execute(
                sa.text(
                    f"ALTER TABLE {prep.format_table(t.artifact)} ADD COLUMN {prep.quote(name)} "
                    f"{col.type.compile(dialect=conn.dialect)}"
                )
            )
    t.catalog_release.create(conn, checkfirst=True)
    conn.execute(update(t.meta).where(t.meta.c.key == SCHEMA_VERSION_KEY).values(value="2"))


def _migrate_2_to_3(conn: Connection, t: Tables) -> None:
    """Schema 2 -> 3: the release and artifact_file tables; the active versions of the served
    artifacts become release 1 (what the store served before keeps being served)."""
    t.release.create(conn, checkfirst=True)
    t.artifact_file.create(conn, checkfirst=True)
    a = t.artifact
    active = {
        str(r.name): (int(r.version), r.config_hash)
        for r in conn.execute(
            select(a.c.name, a.c.version, a.c.config_hash).where(
                a.c.status == "active", a.c.name.in_(RELEASE_STAGES)
            )
        )
    }
    if "engine" in active and conn.execute(select(func.count()).select_from(t.release)).scalar():
        active = {}  # a migration that ran before (tables existed): nothing to add
    if "engine" in active:
        conn.execute(
            insert(t.release).values(
                id=1,
                created_at=datetime.now(UTC),
                status="active",
                config_hash=active["engine"][1],
                note="the active versions when the store was migrated to schema 3",
                **{n: active[n][0] if n in active else None for n in RELEASE_STAGES},
            )
        )
    conn.execute(
        update(t.meta).where(t.meta.c.key == SCHEMA_VERSION_KEY).values(value=str(SCHEMA_VERSION))
    )


_LOCATION_KEY = "artifact_location"


def _artifact_location(
    engine: Engine, t: Tables, wanted: str | None, create: bool, has_default: bool, masked: str
) -> str | None:
    """The store's recorded artifact location (the database or an fsspec URL); records
    ``wanted`` the first time, or the database for a new store that has no default local
    directory. None: the files are in a local directory (the default one)."""
    with engine.begin() as conn:
        found = conn.execute(select(t.meta.c.value).where(t.meta.c.key == _LOCATION_KEY)).scalar()
        if found is not None:
            if wanted is not None and wanted.rstrip("/") not in (found, f"{found}:"):
                raise StorageError(
                    f"The recset store at {masked} keeps its artifacts at {found!r}, not "
                    f"{wanted!r}; open it without artifact_dir (or with {found!r})."
                )
            return str(found)
        if wanted is None:
            if has_default:
                return None
            empty = conn.execute(select(func.count()).select_from(t.artifact)).scalar() == 0
            if not (create and empty):
                raise StorageError(
                    f"Store.open({masked!r}) needs an artifact_dir: the store records no "
                    "artifact location (its files are on a filesystem: give that directory)."
                )
        location = (wanted or DATABASE).rstrip("/")
        location = DATABASE if location == f"{DATABASE}:" else location
        conn.execute(insert(t.meta).values(key=_LOCATION_KEY, value=location))
        return location


def _store_id(conn: Connection, t: Tables) -> str:
    """The store's random id (stamped on its temporary and version directories)."""
    sid = conn.execute(select(t.meta.c.value).where(t.meta.c.key == _STORE_ID_KEY)).scalar()
    if sid is None:
        sid = uuid.uuid4().hex[:16]
        conn.execute(insert(t.meta).values(key=_STORE_ID_KEY, value=sid))
    return str(sid)


def _schema_key(t: Tables) -> int:
    digest = hashlib.blake2b(f"recset-schema:{t.prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _prepare_schema(engine: Engine, t: Tables, masked: str, create: bool) -> str:
    """:func:`_prepare_once`, again after a failed creation (another process created the
    tables first: a SQLite store has no lock to serialize that)."""
    attempts = 6
    for attempt in range(attempts):
        try:
            return _prepare_once(engine, t, masked, create)
        except sa_exc.OperationalError:
            # "table ... already exists", or "database is locked" while the other process
            # switches the new file to WAL: wait a little and look again.
            if not create or attempt == attempts - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _prepare_once(engine: Engine, t: Tables, masked: str, create: bool) -> str:
    """Create the tables (if asked), check the recorded schema version (migrating a version
    1 store in place) and return the store id."""
    where = f"{masked} (table prefix {t.prefix!r})"
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes opening a new store at once would race on CREATE TABLE.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _schema_key(t)})
        if not sa.inspect(conn).has_table(t.meta.name):
            if not create:
                raise StorageError(
                    f"There is no recset store at {where}: table {t.meta.name!r} does not "
                    "exist. Build one with `recset build` (or Store.open(..., create=True))."
                )
            if conn.dialect.name == "sqlite":
                # pysqlite runs DDL outside a transaction: without this, another process
                # could see the tables before the schema version row and call it damaged.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        if not sa.inspect(conn).has_table(t.meta.name):
            t.metadata.create_all(conn)
            conn.execute(insert(t.meta).values(key=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION)))
            _log.info("created recset store at %s, schema version %d", where, SCHEMA_VERSION)
            return _store_id(conn, t)
        found = conn.execute(
            select(t.meta.c.value).where(t.meta.c.key == SCHEMA_VERSION_KEY)
        ).scalar_one_or_none()
        try:
            found_version = int(found) if found is not None else None
        except ValueError:
            found_version = None
        if found_version is None:
            raise StorageError(
                f"The recset store at {where} records no valid schema version in table "
                f"{t.meta.name!r} (found {found!r}); it was not written by recset or is damaged."
            )
        if found_version == 1:
            _migrate_1_to_2(conn, t)
            _log.info("migrated the recset store at %s from schema version 1 to 2", where)
            found_version = 2
        if found_version == 2 and SCHEMA_VERSION == 3:
            _migrate_2_to_3(conn, t)
            _log.info("migrated the recset store at %s from schema version 2 to 3", where)
            found_version = SCHEMA_VERSION
        if found_version != SCHEMA_VERSION:
            raise StorageError(
                f"The recset store at {where} has schema version {found_version}, but this "
                f"recset expects schema version {SCHEMA_VERSION}. Use a recset release that "
                "matches the store, or rebuild the store with this one."
            )
        missing = [x.name for x in t.all() if not sa.inspect(conn).has_table(x.name)]
        if missing:
            if not create:
                raise StorageError(f"The recset store at {where} lacks tables {missing}.")
            t.metadata.create_all(conn)
        return _store_id(conn, t)


# --------------------------------------------------------------------------- the store


class Store:
    """Catalog, recall lists, artifact registry and backtest runs in one database.

    Open one with :meth:`Store.open`; close it with :meth:`close` or a ``with`` block. A
    store is safe to share between threads (each call checks a connection out of the
    engine's pool).

    Attributes
    ----------
    url : str
        The database URL with any password masked.
    artifact_dir : Path
        Absolute directory holding artifact files (``<name>/v<version>/``).
    engine : sqlalchemy.engine.Engine
        The underlying engine.
    table_prefix : str
        Prefix of every table name.
    store_id : str
        A random id recorded in the store at creation; its temporary and version
        directories carry it, so leftovers of a dead build are told from another store's
        files in a shared ``artifact_dir``.

    Examples
    --------
    >>> import tempfile
    >>> with Store.open(tempfile.mkdtemp()) as store:
    ...     store.write_recall_lists("b1", [("cam", [{"item_id": "sd", "score": 0.9}])])
    ...     store.recall_list("cam", "b1")
    1
    [{'item_id': 'sd', 'score': 0.9}]
    """

    url: str
    artifact_dir: Path
    engine: Engine
    table_prefix: str
    store_id: str

    def __init__(
        self,
        engine: Engine,
        tables_: Tables,
        url: str,
        artifact_dir: Path,
        sqlite_file: Path | None = None,
        store_id: str = "",
        remote: Remote | None = None,
    ) -> None:
        # Private: use Store.open, which checks the schema.
        self.engine = engine
        self.remote = remote
        self.store_id = store_id
        self.url = url
        self.artifact_dir = artifact_dir
        self.table_prefix = tables_.prefix
        self._t = tables_
        self._closed = False
        rl = tables_.recall_list
        # Built once so that SQLAlchemy's compiled cache always hits for the hot lookup.
        self._recall_stmt = select(rl.c.candidates).where(
            rl.c.build_id == bindparam("build_id"),
            rl.c.seed_item_id == bindparam("seed_item_id"),
        )
        # SQLite fast path for recall_list: a plain read-only sqlite3 connection per thread
        # (outside the pool) and the statement compiled once. SQLAlchemy's execute path costs
        # ~100 us per call against ~15 us for the query itself.
        self._sqlite_file = sqlite_file
        self._recall_sql = (
            f'SELECT candidates FROM "{rl.name}" WHERE build_id = ? AND seed_item_id = ?'
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        create: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> Store:
        """Open (and by default create) a store.

        Parameters
        ----------
        target : str or PathLike
            A SQLAlchemy URL (anything containing ``"://"``, e.g.
            ``postgresql+psycopg2://user@host/db``) or a directory. A directory holds the
            SQLite file ``recset.sqlite`` and the artifact directory ``artifacts/``.
        artifact_dir : str or PathLike, optional
            Where artifact files go: a local directory; ``"db"``, the store's own database
            (table ``artifact_file``); or an fsspec URL (``file://``, ``memory://``,
            ``s3://``..., the ``remote`` extra). The database and a URL are recorded in the
            store, so a later open (another machine) needs no ``artifact_dir``: versions are
            materialised into ``cache_dir`` and verified against their manifest. Default: the
            recorded location; else ``artifacts/`` beside a SQLite file; else (a new
            database store) ``"db"``.
        table_prefix : str, default "recset_"
            Prefix of every table name, so recset can share a host's database. Stores with
            different prefixes in one database are independent (give them different
            ``artifact_dir`` too). A URL may carry it as a query parameter instead
            (``postgresql://host/db?table_prefix=shop_``).
        create : bool, default True
            Create the database file, tables and artifact directory when missing. With
            ``False``, a missing store raises :class:`~recset.errors.StorageError`.
        cache_dir : str or PathLike, optional
            Local root of materialised versions when the files live in the database or at a
            URL (default ``$RECSET_CACHE_DIR``, else ``~/.cache/recset``); one
            subdirectory per store id.

        Returns
        -------
        Store

        Raises
        ------
        StorageError
            The database cannot be reached, holds no store (``create=False``), or records a
            schema version other than :data:`SCHEMA_VERSION`.
        ConfigError
            ``table_prefix`` is not a valid prefix.
        """
        url, sqlite_file, default_artifacts = _resolve_target(target, create)
        in_url = url.query.get("table_prefix")
        if in_url is not None:
            # A URL may carry the prefix (e.g. for --store on the command line).
            url = url.difference_update_query(["table_prefix"])
            in_url = in_url if isinstance(in_url, str) else in_url[-1]
            if table_prefix not in (DEFAULT_TABLE_PREFIX, in_url):
                raise ConfigError(
                    f"Store.open got table_prefix={table_prefix!r} and a URL with "
                    f"table_prefix={in_url!r}; give one."
                )
            table_prefix = in_url
        tables_ = tables(check_table_prefix(table_prefix))
        masked = url.render_as_string(hide_password=True)
        wanted = None if artifact_dir is None else os.fsdecode(os.fspath(artifact_dir))
        artifacts: Path | None = None
        if wanted is not None and not is_remote(wanted):
            artifacts = Path(wanted).expanduser().resolve()
            wanted = None
        elif wanted is None and default_artifacts is not None:
            artifacts = default_artifacts
        if sqlite_file is not None and not sqlite_file.exists():
            if not create:
                raise StorageError(
                    f"There is no recset store at {masked}: {sqlite_file} does not exist. "
                    "Build one with `recset build` (or Store.open(..., create=True))."
                )
            sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(url, masked)
        remote: Remote | None = None
        try:
            store_id = _prepare_schema(engine, tables_, masked, create)
            if wanted is not None or artifacts is None or artifacts == default_artifacts:
                has_default = artifacts is not None
                location = _artifact_location(engine, tables_, wanted, create, has_default, masked)
                if location is not None:
                    remote = remote_for(location, tables_)
                    artifacts = cache_root(cache_dir) / f"{store_id}-{tables_.prefix or 'none'}"
        except sa_exc.SQLAlchemyError as e:
            engine.dispose()
            raise StorageError(f"Cannot open the recset store at {masked}: {_describe(e)}") from e
        except BaseException:
            engine.dispose()
            raise
        if create or remote is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
        _log.debug("opened recset store at %s, artifacts in %s", masked, artifacts)
        return cls(engine, tables_, masked, artifacts, sqlite_file, store_id, remote)

    def close(self) -> None:
        """Release the database connections. Further calls raise StorageError."""
        if not self._closed:
            self._closed = True
            with self._readers_lock:
                readers, self._readers = self._readers, []
            for conn in readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Store(url={self.url!r}, table_prefix={self.table_prefix!r}, "
            f"artifact_dir={str(self.artifact_dir)!r})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"The recset store at {self.url} is closed.")

    @contextlib.contextmanager
    def _db(self, action: str) -> Iterator[None]:
        """Turn database errors raised in the block into StorageError naming ``action``."""
        self._check_open()
        try:
            yield
        except sa_exc.SQLAlchemyError as e:
            raise StorageError(
                f"{action} failed on the recset store at {self.url}: {_describe(e)}"
            ) from e

    # ------------------------------------------------------------------ catalog

    def replace_catalog(self, catalog: pd.DataFrame) -> int:
        """Replace the whole catalog with ``catalog``, in one transaction.

        Parameters
        ----------
        catalog : DataFrame
            One row per item with the canonical columns (``item_id`` required; ``title``,
            ``category_id``, ``category_path``, ``product_id``, ``product_type``, ``brand``
            strings; ``price`` float; ``available`` bool, null meaning true; ``aspects`` JSON
            text or a dict). Other columns are ignored. ``item_id`` must be unique.

        Returns
        -------
        int
            Number of items written.

        Raises
        ------
        DataError
            A value cannot be stored (missing item_id, non-numeric price, ...).
        StorageError
            The database refused the write (e.g. duplicate item_id). In every error case the
            previous catalog is left unchanged.
        """
        chunks = _catalog_row_chunks(catalog, _CATALOG_CHUNK)
        first = next(chunks, [])  # the whole-frame checks run before anything is written
        t = self._t.catalog
        try:
            with self._db("replace_catalog (the previous catalog is unchanged)"):
                with self.engine.begin() as conn:
                    conn.execute(delete(t))
                    _insert_rows(conn, t, first)
                    del first
                    for chunk in chunks:
                        _insert_rows(conn, t, chunk)
        except StorageError as e:
            if isinstance(e.__cause__, sa_exc.IntegrityError):
                dups = _duplicate_ids(catalog)
                if dups:
                    raise StorageError(f"{e} (duplicate item_id values: {dups[:10]})") from e
            raise
        _log.info("replace_catalog: wrote %d items to %s", len(catalog), self.url)
        return len(catalog)

    def read_catalog(self, release: str | None = None) -> pd.DataFrame:
        """Return the catalog in the order it was written.

        Parameters
        ----------
        release : str, optional
            Read the catalog saved with an artifact version (its :attr:`ArtifactRecord.release`)
            instead of the live one.

        Returns
        -------
        DataFrame
            The canonical columns: strings as object (``None`` for null), ``price`` float64
            (NaN for null), ``available`` bool, ``aspects`` JSON text or ``None``.
        """
        t = self._t.catalog if release is None else self._t.catalog_release
        stmt = select(*(t.c[c] for c in CATALOG_COLUMNS)).order_by(t.c.position)
        if release is not None:
            stmt = stmt.where(t.c.release == release)
        with self._db("read_catalog"), self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return _catalog_frame(rows)

    def staged_catalogs(self) -> list[str]:
        """Release tokens of saved catalogs no version refers to: a build in progress (its
        version not yet committed), or the leftovers of one that died."""
        a, cr = self._t.artifact, self._t.catalog_release
        used = select(a.c.release).where(a.c.release.is_not(None))
        stmt = select(cr.c.release).where(cr.c.release.not_in(used)).distinct()
        with self._db("staged_catalogs"), self.engine.connect() as conn:
            return sorted(str(t) for t in conn.execute(stmt).scalars())

    def _stage_catalog(self, catalog: pd.DataFrame) -> str:
        """Write ``catalog`` to catalog_release under a new release token (not yet live)."""
        chunks = _catalog_row_chunks(catalog, _CATALOG_CHUNK)
        first = next(chunks, [])  # the whole-frame checks run before anything is written
        dups = _duplicate_ids(catalog)
        if dups:
            raise DataError(f"The catalog has duplicate item_id values: {dups[:10]}")
        token = f"{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        t = self._t.catalog_release
        with self._db("save_artifact: writing the new catalog (nothing served changed)"):
            # one transaction, a chunk of row dicts at a time: a failure leaves no row
            with self.engine.begin() as conn:
                _insert_rows(conn, t, [{"release": token, **r} for r in first])
                del first
                for chunk in chunks:
                    _insert_rows(conn, t, [{"release": token, **r} for r in chunk])
        return token

    def _publish_catalog(self, conn: Connection, release: str) -> None:
        """Inside ``conn``'s transaction: make the catalog of ``release`` the live one."""
        live, saved = self._t.catalog, self._t.catalog_release
        cols = [*CATALOG_COLUMNS, "position"]
        conn.execute(delete(live))
        conn.execute(
            insert(live).from_select(
                cols, select(*(saved.c[c] for c in cols)).where(saved.c.release == release)
            )
        )

    def _release_rows(self, conn: Connection, release: str) -> int:
        t = self._t.catalog_release
        return int(
            conn.execute(select(func.count()).select_from(t).where(t.c.release == release)).scalar()
            or 0
        )

    def catalog_item(self, item_id: str) -> dict[str, Any] | None:
        """Return one catalog row as a dict of the canonical columns, or None if unknown."""
        t = self._t.catalog
        stmt = select(*(t.c[c] for c in CATALOG_COLUMNS)).where(t.c.item_id == item_id)
        with self._db("catalog_item"), self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else dict(row._mapping)

    # ------------------------------------------------------------------ recall lists

    def write_recall_lists(
        self,
        build_id: str,
        lists: Iterable[tuple[str, Sequence[Mapping[str, Any]]]],
        *,
        chunk_size: int = 5000,
    ) -> int:
        """Store the precomputed recall list of every seed of a build, in one transaction.

        Parameters
        ----------
        build_id : str
            Identifies the build; its previous lists (if any) are replaced.
        lists : iterable of (str, list of dict)
            ``(seed_item_id, candidates)`` pairs; each candidate is
            ``{"item_id": str, "score": float, "sources": {name: {"score": float,
            "rank": int}}}``. Consumed lazily, so a generator keeps memory flat.
        chunk_size : int, default 5000
            Rows per bulk insert.

        Returns
        -------
        int
            Number of seeds written.

        Raises
        ------
        DataError
            A seed id is not a string or a list cannot be encoded as JSON.
        StorageError
            The database refused the write (e.g. a seed given twice). Nothing is changed.
        """
        _check_build_id(build_id)
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(
                f"The 'chunk_size' parameter of write_recall_lists must be an int in [1, inf). "
                f"Got {chunk_size!r} instead."
            )
        t = self._t.recall_list
        n = 0
        with self._db(f"write_recall_lists({build_id!r}) (nothing was changed)"):
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.build_id == build_id))
                buf: list[dict[str, Any]] = []
                for seed, candidates in lists:
                    if not isinstance(seed, str):
                        raise DataError(
                            f"write_recall_lists: seed ids must be str (external item ids). "
                            f"Got {seed!r} of type {type(seed).__name__}."
                        )
                    if not isinstance(candidates, list | tuple):
                        raise DataError(
                            f"write_recall_lists: the candidates of seed {seed!r} must be a "
                            f"list of dicts. Got {type(candidates).__name__}."
                        )
                    buf.append(
                        {
                            "build_id": build_id,
                            "seed_item_id": seed,
                            "candidates": _dumps(candidates, f"recall list of seed {seed!r}"),
                        }
                    )
                    if len(buf) >= chunk_size:
                        _insert_rows(conn, t, buf)
                        n += len(buf)
                        buf = []
                if buf:
                    _insert_rows(conn, t, buf)
                    n += len(buf)
        _log.info("write_recall_lists: wrote %d seeds for build %r", n, build_id)
        return n

    def recall_list(self, seed_item_id: str, build_id: str) -> list[dict[str, Any]] | None:
        """Return the stored candidate list of one seed, or None if the build has none.

        A primary-key lookup through a pre-built statement (the compiled form is cached).
        """
        if self._closed:
            self._check_open()
        if self._sqlite_file is not None:
            return self._sqlite_recall_list(seed_item_id, build_id)
        try:
            with self.engine.connect() as conn:
                raw = conn.execute(
                    self._recall_stmt, {"build_id": build_id, "seed_item_id": seed_item_id}
                ).scalar()
        except sa_exc.SQLAlchemyError as e:
            raise StorageError(
                f"recall_list failed on the recset store at {self.url}: {_describe(e)}"
            ) from e
        return None if raw is None else json.loads(raw)

    def _sqlite_reader(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None or local.pid != pid:  # new thread, or a forked child
            uri = f"{Path(cast(Path, self._sqlite_file)).as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            local.conn, local.pid = conn, pid
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _sqlite_recall_list(self, seed_item_id: str, build_id: str) -> list[dict[str, Any]] | None:
        try:
            row = (
                self._sqlite_reader().execute(self._recall_sql, (build_id, seed_item_id)).fetchone()
            )
        except sqlite3.Error as e:
            if self._closed:
                self._check_open()
            raise StorageError(
                f"recall_list failed on the recset store at {self.url}: {type(e).__name__}: {e}"
            ) from e
        return None if row is None else json.loads(row[0])

    def recall_lists(self, build_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Stream every ``(seed_item_id, candidates)`` of a build, ordered by seed id.

        Rows are fetched in batches (a server-side cursor on PostgreSQL), so memory stays
        flat. The connection is held until the iterator is exhausted or closed.
        """
        t = self._t.recall_list
        stmt = (
            select(t.c.seed_item_id, t.c.candidates)
            .where(t.c.build_id == build_id)
            .order_by(t.c.seed_item_id)
        )
        with self._db(f"recall_lists({build_id!r})"), self.engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(stmt)
            for seed, raw in result:
                yield seed, json.loads(raw)

    def delete_recall_lists(self, build_id: str) -> int:
        """Delete every recall list of a build; return how many seeds were deleted."""
        t = self._t.recall_list
        with self._db(f"delete_recall_lists({build_id!r})"), self.engine.begin() as conn:
            n = conn.execute(delete(t).where(t.c.build_id == build_id)).rowcount
        _log.info("delete_recall_lists: deleted %d seeds of build %r", n, build_id)
        return int(n)

    # ------------------------------------------------------------------ artifacts

    def save_artifact(
        self,
        name: str,
        write: Callable[[Path], None],
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        config_hash: str | None = None,
        activate: bool = True,
        catalog: pd.DataFrame | None = None,
        check: Callable[[Path], None] | None = None,
    ) -> ArtifactRecord:
        """Write a new version of artifact ``name`` and register it.

        ``write(tmp_dir)`` fills a fresh temporary directory inside :attr:`artifact_dir`.
        Every file is then recorded in the version's ``manifest.json`` (size, array shape
        and dtype, sha256), ``check(tmp_dir)`` (when given) must accept the files, and one
        transaction inserts the version's row, retires the previous active version, makes
        ``catalog`` (when given) the live catalog and commits, with the directory renamed to
        ``<artifact_dir>/<name>/v<version>/`` just before the commit. Readers therefore see
        the old version with the old catalog, or the new version with the new catalog. If
        anything fails, or the process dies, at any point, no row, no directory and no live
        catalog change remain (the leftovers of a killed process are removed by the next
        :meth:`build_lock`).

        Parameters
        ----------
        name : str
            Artifact name (letters, digits, ``.``, ``_``, ``-``).
        write : callable
            Called once with the temporary directory (a :class:`~pathlib.Path`).
        metrics, params : dict, optional
            JSON-serialisable dicts stored with the version (numpy scalars are fine).
        config_hash : str, optional
            Hash of the configuration the artifact was built from.
        activate : bool, default True
            Make the new version the active one (retiring the previous active version);
            otherwise it is registered as ``"staged"``.
        catalog : DataFrame, optional
            The catalog this version serves with (the columns of :meth:`replace_catalog`).
            It is saved with the version (:meth:`read_catalog` ``release=``) and becomes the
            live catalog in the activating transaction (and again on :meth:`activate`).
        check : callable, optional
            Called with the written directory before anything is registered; raising
            refuses the version (e.g. a load test: a version that cannot load is never
            activated).

        Returns
        -------
        ArtifactRecord
        """
        _check_name(name)
        self._check_open()
        metrics_json = _dumps_dict(metrics, f"the metrics of artifact {name!r}")
        params_json = _dumps_dict(params, f"the params of artifact {name!r}")
        release = None
        if catalog is not None:
            release = self._stage_catalog(catalog)
            fault_point("catalog")
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._temp_dir(name)
        try:
            self._write_owner(tmp)
            write(tmp)
            fault_point("artifact")
            manifest = write_manifest(tmp)
            if check is not None:
                check(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a serving process may run as another user
            record = self._register_artifact(
                name, tmp, metrics_json, params_json, config_hash, activate, release, manifest
            )
        except BaseException:
            if release is not None:
                self._drop_release(release)
            raise
        finally:
            if tmp.exists():  # still there: write or registration failed
                shutil.rmtree(tmp, ignore_errors=True)
        _log.info(
            "saved artifact %s v%d (%s) in %s",
            name,
            record.version,
            record.status,
            self.artifact_path(record),
        )
        return record

    def _temp_dir(self, label: str) -> Path:
        """A new temporary directory in :attr:`artifact_dir`, named after this store, host
        and process (so :meth:`remove_leftovers` can tell when its writer is gone)."""
        prefix = f".tmp-{self.store_id}-{host_tag()}-{os.getpid()}-{label}-"
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.artifact_dir))

    def _write_owner(self, directory: Path) -> None:
        pid = os.getpid()
        owner = {
            "store_id": self.store_id,
            "host": host_tag(),
            "pid": pid,
            "start": process_start(pid),
        }
        (directory / OWNER_NAME).write_text(json.dumps(owner), encoding="utf-8")

    def _dead_leftover(self, directory: Path) -> bool:
        """Whether ``directory`` was written by this store in a process that is gone."""
        try:
            owner = json.loads((directory / OWNER_NAME).read_text(encoding="utf-8"))
            return owner["store_id"] == self.store_id and not process_alive(
                str(owner["host"]), int(owner["pid"]), owner.get("start")
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False

    @staticmethod
    def _owner_start(directory: Path) -> int | None:
        try:
            start = json.loads((directory / OWNER_NAME).read_text(encoding="utf-8"))["start"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return start if isinstance(start, int) else None

    def _drop_release(self, release: str) -> None:
        t = self._t.catalog_release
        with contextlib.suppress(StorageError), self._db("dropping a staged catalog"):
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.release == release))

    def _register_artifact(
        self,
        name: str,
        tmp: Path,
        metrics_json: str,
        params_json: str,
        config_hash: str | None,
        activate: bool,
        release: str | None,
        manifest: str,
    ) -> ArtifactRecord:
        a = self._t.artifact
        status: ArtifactStatus = "active" if activate else "staged"
        attempts = 10
        for attempt in range(attempts):
            version = 0
            with self._db(f"save_artifact({name!r})"), self.engine.connect() as conn:
                trans = conn.begin()
                try:
                    last = conn.execute(
                        select(func.max(a.c.version)).where(a.c.name == name)
                    ).scalar()
                    version = int(last or 0) + 1
                    rel = f"{name}/v{version}"
                    if activate:
                        conn.execute(
                            update(a)
                            .where(a.c.name == name, a.c.status == "active")
                            .values(status="retired")
                        )
                    created_at = datetime.now(UTC)
                    # Inserting first claims the version: a concurrent save of the same name
                    # waits for this transaction, then fails on the primary key and retries.
                    conn.execute(
                        insert(a).values(
                            name=name,
                            version=version,
                            created_at=created_at,
                            status=status,
                            path=rel,
                            metrics=metrics_json,
                            params=params_json,
                            config_hash=config_hash,
                            release=release,
                            manifest=manifest,
                        )
                    )
                    if self.remote is not None:
                        self.remote.upload(conn, tmp, name, version)
                    if activate and release is not None:
                        self._publish_catalog(conn, release)
                    if activate and name in RELEASE_STAGES:
                        self._follow_release(conn, name, version, config_hash)
                    fault_point("activate")
                    final = self.artifact_dir / name / f"v{version}"
                    if final.exists() and self._dead_leftover(final):
                        # Renamed by a build that died before its commit: the row we just
                        # inserted proves no live transaction owns this version.
                        _log.warning("removing %s, left by a build that died", final)
                        shutil.rmtree(final)
                    if final.exists():
                        raise StorageError(
                            f"Cannot save artifact {name!r} v{version}: {final} already exists "
                            f"but the store at {self.url} (table prefix {self.table_prefix!r}) "
                            "has no such version. Another store may share this artifact_dir, "
                            "or an earlier save was interrupted; move the directory away."
                        )
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(tmp, final)
                    fault_point("rename")
                    try:
                        trans.commit()
                    except BaseException:
                        os.rename(final, tmp)  # the row is gone, so the files must go too
                        raise
                except sa_exc.IntegrityError:
                    # A concurrent save took this version (or activated first): try again.
                    if trans.is_active:
                        trans.rollback()
                    if attempt == attempts - 1:
                        raise
                    _log.debug("save_artifact(%r): v%d was taken, retrying", name, version)
                    time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
                    continue
                except BaseException:
                    if trans.is_active:
                        trans.rollback()
                    raise
            return ArtifactRecord(
                name=name,
                version=version,
                created_at=created_at,
                status=status,
                path=rel,
                metrics=json.loads(metrics_json),
                params=json.loads(params_json),
                config_hash=config_hash,
                release=release,
                manifest=manifest,
            )
        raise StorageError(f"save_artifact({name!r}) could not register a version.")

    @staticmethod
    def _artifact_record(row: Any) -> ArtifactRecord:
        return ArtifactRecord(
            name=row.name,
            version=int(row.version),
            created_at=row.created_at,
            status=row.status,
            path=row.path,
            metrics=json.loads(row.metrics),
            params=json.loads(row.params),
            config_hash=row.config_hash,
            release=row.release,
            manifest=row.manifest,
        )

    def active_artifact(self, name: str) -> ArtifactRecord | None:
        """Return the active version of ``name``, or None if no version is active."""
        a = self._t.artifact
        stmt = select(a).where(a.c.name == name, a.c.status == "active")
        with self._db(f"active_artifact({name!r})"), self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return None if row is None else self._artifact_record(row)

    def artifact(self, name: str, version: int) -> ArtifactRecord:
        """Return version ``version`` of ``name``.

        Raises
        ------
        StorageError
            No such version; the message lists the versions that exist.
        """
        a = self._t.artifact
        with self._db(f"artifact({name!r}, {version!r})"), self.engine.connect() as conn:
            row = conn.execute(select(a).where(a.c.name == name, a.c.version == version)).first()
            if row is None:
                known = (
                    conn.execute(select(a.c.version).where(a.c.name == name).order_by(a.c.version))
                    .scalars()
                    .all()
                )
        if row is None:
            raise StorageError(
                f"The recset store at {self.url} has no artifact {name!r} version {version!r}; "
                f"known versions: {list(known) or 'none'}."
            )
        return self._artifact_record(row)

    def list_artifacts(self, name: str | None = None) -> list[ArtifactRecord]:
        """Every registered version (of ``name`` if given), ordered by name then version."""
        a = self._t.artifact
        stmt = select(a).order_by(a.c.name, a.c.version)
        if name is not None:
            stmt = stmt.where(a.c.name == name)
        with self._db("list_artifacts"), self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [self._artifact_record(r) for r in rows]

    def activate(self, name: str, version: int) -> ArtifactRecord:
        """Make ``version`` the active version of ``name`` (e.g. to roll back).

        The previously active version becomes ``"retired"``.

        A version saved with a catalog (``catalog=`` of :meth:`save_artifact`) brings it
        back as the live catalog in the same transaction.

        Raises
        ------
        StorageError
            The version is unknown or its files are missing or damaged.
        """
        record = self.artifact(name, version)
        self.verify_artifact(record)  # never activate a version whose files are gone or damaged
        if record.status == "active":
            return record
        a = self._t.artifact
        with self._db(f"activate({name!r}, {version!r})"), self.engine.begin() as conn:
            conn.execute(
                update(a).where(a.c.name == name, a.c.status == "active").values(status="retired")
            )
            n = conn.execute(
                update(a).where(a.c.name == name, a.c.version == version).values(status="active")
            ).rowcount
            if n != 1:
                raise StorageError(f"activate: artifact {name!r} v{version} vanished.")
            if record.release is not None and self._release_rows(conn, record.release):
                self._publish_catalog(conn, record.release)  # the catalog it was built with
            if name in RELEASE_STAGES:
                self._follow_release(conn, name, version, record.config_hash)
        _log.info("activated artifact %s v%d (was %s)", name, version, record.status)
        return self.artifact(name, version)

    def artifact_path(self, record: ArtifactRecord) -> Path:
        """Absolute directory of an artifact's files.

        Raises
        ------
        StorageError
            The directory does not exist (deleted, or another ``artifact_dir``), or the
            recorded path leads outside :attr:`artifact_dir`.
        """
        path = inside(self.artifact_dir, record.path, f"artifact {record.name!r} v{record.version}")
        if not path.is_dir() and self.remote is not None:
            self._materialise(record, path)
        if not path.is_dir():
            raise StorageError(
                f"The files of artifact {record.name!r} v{record.version} are missing: "
                f"{path} is not a directory (store {self.url})."
            )
        return path

    def _materialise(self, record: ArtifactRecord, final: Path) -> None:
        """Fetch a version's files from the database / URL into the local cache: into a
        temporary directory, checked against the version's manifest, then renamed into
        place (a concurrent fetch of the same version keeps whichever came first)."""
        remote = self.remote
        what = f"artifact {record.name!r} v{record.version} of the store at {self.url}"
        if remote is None:
            raise StorageError(f"{what}: the store keeps no remote copy of its files")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp_dir("fetch")
        try:
            remote.download(self.engine, record.name, record.version, tmp)
            if record.manifest is not None:
                verify_manifest(tmp, record.manifest, what)
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _log.info("materialised %s from %s into %s", what, remote.location, final)

    def verify_artifact(self, record: ArtifactRecord) -> Path:
        """Check a version's files against its manifest; return their directory.

        Every file's size, array shape and dtype (``.npy``) and sha256 must match what
        :meth:`save_artifact` recorded, and the manifest must match the checksum in the
        version's row. A version saved without a manifest (by an older recset) is returned
        unchecked, with a warning in the log.

        Raises
        ------
        StorageError
            Naming the file that is missing, truncated, transposed or changed.
        """
        path = self.artifact_path(record)
        what = f"artifact {record.name!r} v{record.version} of the store at {self.url}"
        if record.manifest is None:
            _log.warning("%s has no manifest (saved by an older recset): not checked", what)
            return path
        verify_manifest(path, record.manifest, what)
        return path

    def active_release(
        self, names: Sequence[str]
    ) -> tuple[dict[str, ArtifactRecord], pd.DataFrame]:
        """The active version of each of ``names`` (absent: not in the dict) and the live
        catalog, read consistently: never the catalog of one release with the versions of
        another (the versions are read again after the catalog, and the read is repeated
        if a release was activated meanwhile)."""
        for _ in range(20):
            before = {n: r for n in names if (r := self.active_artifact(n)) is not None}
            catalog = self.read_catalog()
            after = {n: r for n in names if (r := self.active_artifact(n)) is not None}
            if before == after:
                return after, catalog
            time.sleep(0.05)
        raise StorageError(
            f"The store at {self.url} kept activating new versions while reading; try again."
        )

    # ------------------------------------------------------------------ releases

    @staticmethod
    def _release_record(row: Any) -> ReleaseRecord:
        pins = {n: int(getattr(row, n)) for n in RELEASE_STAGES if getattr(row, n) is not None}
        return ReleaseRecord(
            id=int(row.id),
            created_at=row.created_at,
            status=row.status,
            pins=pins,
            config_hash=row.config_hash,
            note=row.note or "",
        )

    def list_releases(self) -> list[ReleaseRecord]:
        """Every release, oldest first."""
        r = self._t.release
        with self._db("list_releases"), self.engine.connect() as conn:
            rows = conn.execute(select(r).order_by(r.c.id)).all()
        return [self._release_record(row) for row in rows]

    def release(self, release_id: int) -> ReleaseRecord:
        """Release ``release_id``; a StorageError listing the known ids when there is none."""
        r = self._t.release
        with self._db(f"release({release_id!r})"), self.engine.connect() as conn:
            row = conn.execute(select(r).where(r.c.id == release_id)).first()
            known = [] if row else list(conn.execute(select(r.c.id).order_by(r.c.id)).scalars())
        if row is None:
            raise StorageError(
                f"The recset store at {self.url} has no release {release_id!r}; known "
                f"releases: {known or 'none'} (`recset versions`)."
            )
        return self._release_record(row)

    def active_release_record(self) -> ReleaseRecord | None:
        """The active release (what a service loads), or None when the store has none."""
        r = self._t.release
        with self._db("active_release_record"), self.engine.connect() as conn:
            row = conn.execute(select(r).where(r.c.status == "active")).first()
        return None if row is None else self._release_record(row)

    def serving_state(
        self, release_id: int | None = None
    ) -> tuple[ReleaseRecord, dict[str, ArtifactRecord], pd.DataFrame]:
        """A release (the active one unless ``release_id``), the records of its pinned
        artifacts and its catalog, read consistently (the live catalog for the active
        release, re-read when another release was activated meanwhile; the catalog saved
        with its engine otherwise).

        Raises
        ------
        StorageError
            No release is active (nothing was built), or ``release_id`` is unknown.
        """
        for _ in range(20):
            before = self.release(release_id) if release_id else self.active_release_record()
            if before is None:
                raise StorageError(f"{self.url}: no active release; run `recset build` first")
            records = {n: self.artifact(n, v) for n, v in before.pins.items()}
            engine = records["engine"]
            if before.status == "active":
                catalog = self.read_catalog()
            elif engine.release is not None:
                catalog = self.read_catalog(engine.release)
            else:
                catalog = self.read_catalog()
            after = self.release(before.id)
            if after == before:
                return before, records, catalog
            time.sleep(0.05)
        raise StorageError(
            f"The store at {self.url} kept activating new releases while reading; try again."
        )

    def _next_release_id(self, conn: Connection) -> int:
        r = self._t.release
        return int(conn.execute(select(func.max(r.c.id))).scalar() or 0) + 1

    def _active_pins(self, conn: Connection) -> dict[str, int]:
        """The active release's pins; with no active release, the active versions of the
        served artifacts (what the store served before it had releases)."""
        r, a = self._t.release, self._t.artifact
        row = conn.execute(select(r).where(r.c.status == "active")).first()
        if row is not None:
            return self._release_record(row).pins
        active = select(a.c.name, a.c.version).where(
            a.c.status == "active", a.c.name.in_(RELEASE_STAGES)
        )
        return {str(n): int(v) for n, v in conn.execute(active)}

    def _insert_release(
        self,
        conn: Connection,
        pins: Mapping[str, int],
        config_hash: str | None,
        note: str,
        status: ArtifactStatus,
    ) -> int:
        rid = self._next_release_id(conn)
        conn.execute(
            insert(self._t.release).values(
                id=rid,
                created_at=datetime.now(UTC),
                status=status,
                config_hash=config_hash,
                note=note,
                **{n: pins.get(n) for n in RELEASE_STAGES},
            )
        )
        return rid

    def _activate_release_in(self, conn: Connection, rid: int, pins: Mapping[str, int]) -> None:
        """Inside ``conn``'s transaction: make release ``rid`` the active one, its pinned
        versions the active version of each artifact (an artifact it does not pin has none)
        and its engine's catalog the live catalog."""
        a, r = self._t.artifact, self._t.release
        before = self._active_pins(conn)
        conn.execute(update(r).where(r.c.status == "active").values(status="retired"))
        conn.execute(update(r).where(r.c.id == rid).values(status="active"))
        for name in RELEASE_STAGES:
            keep = pins.get(name)
            stmt = update(a).where(a.c.name == name, a.c.status == "active")
            if keep is not None:
                stmt = stmt.where(a.c.version != keep)
            conn.execute(stmt.values(status="retired"))
            if keep is not None:
                n = conn.execute(
                    update(a).where(a.c.name == name, a.c.version == keep).values(status="active")
                ).rowcount
                if n != 1:
                    raise StorageError(f"release {rid}: artifact {name!r} v{keep} is gone")
        if before.get("engine") != pins["engine"]:
            token = conn.execute(
                select(a.c.release).where(a.c.name == "engine", a.c.version == pins["engine"])
            ).scalar()
            if token is not None and self._release_rows(conn, token):
                self._publish_catalog(conn, token)

    def _follow_release(
        self, conn: Connection, name: str, version: int, config_hash: str | None
    ) -> None:
        """A served artifact activated on its own (save_artifact, activate): record a release
        pinning it with the other versions of the active release, and activate it."""
        pins = {**self._active_pins(conn), name: version}
        if "engine" not in pins:
            return  # no engine yet: nothing a service could load
        if name != "engine":
            a = self._t.artifact
            config_hash = conn.execute(
                select(a.c.config_hash).where(a.c.name == "engine", a.c.version == pins["engine"])
            ).scalar()
        rid = self._insert_release(
            conn, pins, config_hash, f"{name} v{version} activated", "staged"
        )
        self._activate_release_in(conn, rid, pins)

    def create_release(
        self, pins: Mapping[str, int], *, activate: bool = True, note: str = ""
    ) -> ReleaseRecord:
        """Record a release pinning ``pins`` (``{"engine": 3, "ranker": 2}``) and, by
        default, make it the active one (one transaction: the release, the per-artifact
        statuses and the engine's catalog change together).

        Every pinned version must exist and pass :meth:`verify_artifact`.

        Raises
        ------
        StorageError
            An unknown artifact name, no engine pinned, a pinned version that is unknown or
            whose files are missing or damaged.
        """
        pins = {str(n): int(v) for n, v in pins.items()}
        unknown = sorted(set(pins) - set(RELEASE_STAGES))
        if unknown or "engine" not in pins:
            raise StorageError(
                f"A release pins an 'engine' version and optionally {list(RELEASE_STAGES[1:])}. "
                f"Got {pins} instead."
            )
        records = {n: self.artifact(n, v) for n, v in pins.items()}
        for record in records.values():
            self.verify_artifact(record)
        for attempt in range(10):
            try:
                with self._db("create_release"), self.engine.begin() as conn:
                    # inserted staged; activating it retires the active one first (at most
                    # one release is active: a unique index)
                    rid = self._insert_release(
                        conn, pins, records["engine"].config_hash, note, "staged"
                    )
                    if activate:
                        self._activate_release_in(conn, rid, pins)
                break
            except StorageError as e:
                if not isinstance(e.__cause__, sa_exc.IntegrityError) or attempt == 9:
                    raise
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))
        record = self.release(rid)
        _log.info("recorded %s (%s)", record.describe(), record.status)
        return record

    def drop_staged_release(self, release_id: int) -> bool:
        """Delete release ``release_id`` if it is staged (never activated); whether it was."""
        r = self._t.release
        with self._db(f"drop_staged_release({release_id})"), self.engine.begin() as conn:
            n = conn.execute(delete(r).where(r.c.id == release_id, r.c.status == "staged"))
        return bool(n.rowcount)

    def activate_release(self, release_id: int) -> ReleaseRecord:
        """Make release ``release_id`` the active one (e.g. to roll back), after checking
        the files of every version it pins; the previously active release is retired."""
        record = self.release(release_id)
        for name, version in record.pins.items():
            self.verify_artifact(self.artifact(name, version))
        if record.status == "active":
            return record
        with self._db(f"activate_release({release_id})"), self.engine.begin() as conn:
            self._activate_release_in(conn, record.id, record.pins)
        _log.info("activated %s", record.describe())
        return self.release(release_id)

    def prune(self, keep: int) -> PruneResult:
        """Remove all but the ``keep`` newest releases (never the active one), and the
        versions of the served artifacts no remaining release pins, with their files, saved
        catalogs and recall lists (build ``engine-v<N>``).

        A version newer than every remaining release that pins its artifact (staged by a
        build or a training run that was not activated) is kept. Each removal is one
        transaction and files go after their rows, so a process killed at any point leaves
        a store that loads (at worst an unreferenced directory, removed by the next build).
        Runs under :meth:`build_lock` (directories such a killed prune left are removed
        first).
        """
        if not isinstance(keep, int) or keep < 1:
            raise ConfigError(
                f"The 'keep' parameter of Store.prune must be an int in [1, inf). Got {keep!r}."
            )
        with self.build_lock("prune"):
            return self._prune(keep)

    def _prune(self, keep: int) -> PruneResult:
        self._sweep_pruned()
        releases = self.list_releases()
        kept = {r.id for r in releases[-keep:]} | {r.id for r in releases if r.status == "active"}
        drop = [r.id for r in releases if r.id not in kept]
        rt = self._t.release
        if drop:
            with self._db("prune: removing releases"), self.engine.begin() as conn:
                conn.execute(delete(rt).where(rt.c.id.in_(drop), rt.c.status != "active"))
        remaining = [r for r in releases if r.id in kept]
        pinned = {(n, v) for r in remaining for n, v in r.pins.items()}
        newest = {
            n: max((r.pins[n] for r in remaining if n in r.pins), default=0) for n in RELEASE_STAGES
        }
        removed: list[tuple[str, int]] = []
        for record in self.list_artifacts():
            key = (record.name, record.version)
            if (
                record.name not in RELEASE_STAGES
                or key in pinned
                or record.status == "active"
                or record.version > newest[record.name]
            ):
                continue
            self._remove_version(record)
            removed.append(key)
        _log.info("pruned releases %s and artifact versions %s", drop, removed)
        return PruneResult(drop, removed)

    def _sweep_pruned(self) -> list[str]:
        """Version directories of this store's served artifacts that no row refers to (a
        prune killed between its commit and the removal of the files). Only run under the
        build lock, so no build of this store has a renamed, uncommitted version."""
        known = {r.path for r in self.list_artifacts()}
        out = []
        for name in RELEASE_STAGES:
            for d in sorted((self.artifact_dir / name).glob("v*")):
                if f"{name}/{d.name}" in known or not d.is_dir():
                    continue
                try:
                    owner = json.loads((d / OWNER_NAME).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(owner, dict) and owner.get("store_id") == self.store_id:
                    shutil.rmtree(d, ignore_errors=True)
                    out.append(str(d))
        for d in out:
            _log.warning("removed %s, left by a prune that died", d)
        return out

    def _remove_version(self, record: ArtifactRecord) -> None:
        a, cr, rl, f = (
            self._t.artifact,
            self._t.catalog_release,
            self._t.recall_list,
            self._t.artifact_file,
        )
        where = f"prune: removing {record.name} v{record.version}"
        with self._db(where), self.engine.begin() as conn:
            conn.execute(
                delete(a).where(
                    a.c.name == record.name, a.c.version == record.version, a.c.status != "active"
                )
            )
            conn.execute(delete(f).where(f.c.name == record.name, f.c.version == record.version))
            if record.name == "engine":
                conn.execute(delete(rl).where(rl.c.build_id == f"engine-v{record.version}"))
                if record.release is not None:
                    conn.execute(delete(cr).where(cr.c.release == record.release))
            fault_point("prune")
        fault_point("pruned")
        if self.remote is not None:
            self.remote.remove(record.name, record.version)
        with contextlib.suppress(StorageError):
            path = inside(self.artifact_dir, record.path, where)
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ build lock

    @contextlib.contextmanager
    def build_lock(self, purpose: str = "build", *, wait: float = 0.0) -> Iterator[None]:
        """Hold the store's build lock: builds into one store run one at a time.

        A file lock beside a SQLite database, a PostgreSQL advisory lock (keyed by the
        table prefix) on a server; either goes away with a process that dies. Re-entrant
        within one process. When this process takes it, the leftovers of builds that died
        (temporary directories, version directories renamed but never committed, staged
        catalogs) are removed.

        Parameters
        ----------
        purpose : str
            What holds it (shown to a process that finds it taken).
        wait : float, default 0
            Seconds to wait for another holder; then (or at once) a StorageError saying
            who holds it.
        """
        target = LockTarget(self.engine, self._t, self.url, self._sqlite_file)
        with build_lock(target, purpose, wait, self.remove_leftovers):
            yield

    def remove_leftovers(self) -> list[str]:
        """Remove what builds of this store that died left behind; return what was removed.

        Only files and rows stamped with this store's id and a process of this host that no
        longer runs are touched: temporary directories, version directories with no row,
        staged catalogs no version refers to. Run by :meth:`build_lock`.
        """
        removed: list[str] = []
        if self.artifact_dir.is_dir():
            mine = f".tmp-{self.store_id}-"
            for d in self.artifact_dir.iterdir():
                if not (d.name.startswith(mine) and d.is_dir()):
                    continue
                # The name says which process writes it (its owner file may not exist yet).
                host, pid, _ = (d.name[len(mine) :].split("-", 2) + ["", ""])[:3]
                if pid.isdigit() and not process_alive(host, int(pid), self._owner_start(d)):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(str(d))
            known = {(r.name, r.path) for r in self.list_artifacts()}
            for d in self.artifact_dir.glob("*/v*"):
                rel = f"{d.parent.name}/{d.name}"
                if (d.parent.name, rel) in known or not d.is_dir():
                    continue
                if self._dead_leftover(d) and not self._has_row(d.parent.name, rel):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(str(d))
        removed += self._remove_dead_releases()
        for what in removed:
            _log.warning("removed %s, left by a build of %s that died", what, self.url)
        return removed

    def _has_row(self, name: str, rel: str) -> bool:
        a = self._t.artifact
        with self._db("remove_leftovers"), self.engine.connect() as conn:
            return (
                conn.execute(select(a.c.version).where(a.c.name == name, a.c.path == rel)).first()
                is not None
            )

    def _remove_dead_releases(self) -> list[str]:
        dead = []
        for token in self.staged_catalogs():
            host, _, rest = token.partition("-")
            pid = rest.partition("-")[0]
            if pid.isdigit() and not process_alive(host, int(pid)):
                dead.append(token)
        if dead:
            cr = self._t.catalog_release
            with self._db("remove_leftovers"), self.engine.begin() as conn:
                conn.execute(delete(cr).where(cr.c.release.in_(dead)))
        return [f"staged catalog {t}" for t in dead]

    # ------------------------------------------------------------------ backtests

    def record_backtest(
        self,
        *,
        dataset: str,
        config: Mapping[str, Any],
        metrics: Mapping[str, Any],
        started_at: datetime,
        finished_at: datetime,
        report_path: str | os.PathLike[str] | None = None,
    ) -> int:
        """Record one backtest run and return its id.

        Parameters
        ----------
        dataset : str
            Name of the dataset the backtest ran on.
        config, metrics : dict
            JSON-serialisable dicts (numpy scalars are fine).
        started_at, finished_at : datetime
            Aware datetimes are converted to UTC; naive ones are taken as UTC.
        report_path : str or PathLike, optional
            Where the report was written.

        Returns
        -------
        int
            The run id (increasing).
        """
        if not isinstance(dataset, str) or not dataset:
            raise DataError(f"record_backtest: dataset must be a non-empty str. Got {dataset!r}.")
        values = {
            "dataset": dataset,
            "created_at": datetime.now(UTC),
            "started_at": _as_datetime(started_at, "record_backtest: started_at"),
            "finished_at": _as_datetime(finished_at, "record_backtest: finished_at"),
            "config": _dumps_dict(config, "record_backtest: config"),
            "metrics": _dumps_dict(metrics, "record_backtest: metrics"),
            "report_path": None if report_path is None else os.fspath(report_path),
        }
        t = self._t.backtest_run
        with self._db("record_backtest"), self.engine.begin() as conn:
            run_id = conn.execute(insert(t).values(**values)).inserted_primary_key[0]
        _log.info("recorded backtest run %s on %r", run_id, dataset)
        return int(run_id)

    def list_backtests(self, dataset: str | None = None) -> list[BacktestRun]:
        """Every recorded run (on ``dataset`` if given), oldest first."""
        t = self._t.backtest_run
        stmt = select(t).order_by(t.c.id)
        if dataset is not None:
            stmt = stmt.where(t.c.dataset == dataset)
        with self._db("list_backtests"), self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            BacktestRun(
                id=int(r.id),
                dataset=r.dataset,
                created_at=r.created_at,
                started_at=r.started_at,
                finished_at=r.finished_at,
                config=json.loads(r.config),
                metrics=json.loads(r.metrics),
                report_path=r.report_path,
            )
            for r in rows
        ]


__all__ = [
    "ARTIFACTS_DIRNAME",
    "SQLITE_FILENAME",
    "ArtifactRecord",
    "ArtifactStatus",
    "BacktestRun",
    "PruneResult",
    "ReleaseRecord",
    "Store",
    "atomic_write_bytes",
    "atomic_write_text",
]
