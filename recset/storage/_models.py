"""Table definitions of the recset store, built per table prefix.

recset shares the host's database when asked to, so every table name carries a prefix
(``recset_`` by default, like gorse's ``[database] table_prefix``). Declarative classes have
fixed table names, so the schema is plain SQLAlchemy Core: :func:`tables` builds one
:class:`~sqlalchemy.MetaData` per prefix and caches it.

Structured values (aspects, recall lists, metrics, parameters) are JSON *text* columns, which
behave the same on SQLite and PostgreSQL. Timestamps are stored as naive UTC and come back
as timezone-aware UTC (:class:`UTCDateTime`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

from recset.errors import ConfigError

SCHEMA_VERSION: Final[int] = 3
"""Version of the table layout below; bump it (and write a migration note) on any change.

Version 2 (from 1, migrated in place by :meth:`Store.open`): the ``catalog_release`` table
(the catalog of every engine version, keyed by a release token) and the ``release`` and
``manifest`` columns of ``artifact``.

Version 3 (from 2, migrated in place): the ``release`` table (one row per release: the
engine, ranker and neural stage versions a service loads together; the migration records the
store's active versions as release 1) and the ``artifact_file`` table (artifact files kept in
the database, in chunks).
"""

DEFAULT_TABLE_PREFIX: Final[str] = "recset_"

CATALOG_COLUMNS: Final[tuple[str, ...]] = (
    "item_id",
    "title",
    "category_id",
    "category_path",
    "product_id",
    "product_type",
    "brand",
    "price",
    "available",
    "aspects",
)
"""Canonical catalog columns, in order (the same as ``recset.data``'s catalog format)."""

CATALOG_STRING_COLUMNS: Final[tuple[str, ...]] = tuple(
    c for c in CATALOG_COLUMNS if c not in ("price", "available")
)

ARTIFACT_STATUSES: Final[tuple[str, ...]] = ("active", "retired", "staged")

RELEASE_STAGES: Final[tuple[str, ...]] = ("engine", "ranker", "personalizer", "type_transition")
"""The artifacts a release pins (one column of the ``release`` table each); ``engine`` is
required, the others optional."""

SCHEMA_VERSION_KEY: Final[str] = "schema_version"

# PostgreSQL truncates identifiers at 63 bytes; the longest generated name is the prefix
# plus "artifact_one_active" (19 characters).
_MAX_PREFIX_LEN: Final[int] = 40
_PREFIX_RE: Final[re.Pattern[str]] = re.compile(r"(?:[a-z_][a-z0-9_]*)?")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned as an aware UTC ``datetime``.

    Naive input is taken to be UTC already; aware input is converted. This keeps SQLite
    (which has no time zones) and PostgreSQL identical.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Tables:
    """The tables of one store, all in :attr:`metadata`."""

    prefix: str
    metadata: MetaData
    meta: Table
    catalog: Table
    recall_list: Table
    artifact: Table
    backtest_run: Table
    catalog_release: Table
    release: Table
    artifact_file: Table

    def all(self) -> tuple[Table, ...]:
        """Every table, in creation order."""
        return (
            self.meta,
            self.catalog,
            self.recall_list,
            self.artifact,
            self.backtest_run,
            self.catalog_release,
            self.release,
            self.artifact_file,
        )


def check_table_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid table prefix, else raise :class:`ConfigError`."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(
            "The 'table_prefix' parameter of Store.open must be lowercase letters, digits and "
            f"underscores, not starting with a digit (e.g. 'recset_'). Got {prefix!r} instead."
        )
    if len(prefix) > _MAX_PREFIX_LEN:
        raise ConfigError(
            f"The 'table_prefix' parameter of Store.open must be at most {_MAX_PREFIX_LEN} "
            f"characters long. Got {prefix!r} ({len(prefix)} characters) instead."
        )
    return prefix


def _catalog_columns() -> list[Column[object]]:
    return [
        Column("item_id", String(255), primary_key=True),
        Column("title", Text),
        Column("category_id", String(255)),
        Column("category_path", Text),
        Column("product_id", String(255)),
        Column("product_type", String(255)),
        Column("brand", String(255)),
        Column("price", Float),
        Column("available", Boolean(create_constraint=False), nullable=False),
        Column("aspects", Text),
        # The row's position in the DataFrame given to replace_catalog, so that reading
        # returns the catalog in the order it was written (dense ids may depend on it).
        Column("position", Integer, nullable=False),
    ]


@functools.lru_cache(maxsize=64)
def tables(prefix: str = DEFAULT_TABLE_PREFIX) -> Tables:
    """Build (once per prefix) the tables of a store whose table names start with ``prefix``.

    Parameters
    ----------
    prefix : str
        Lowercase table-name prefix, e.g. ``"recset_"``; may be empty.

    Returns
    -------
    Tables
        Table objects sharing one fresh :class:`~sqlalchemy.MetaData`.
    """
    p = check_table_prefix(prefix)
    md = MetaData()
    meta = Table(
        f"{p}meta",
        md,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )
    catalog = Table(f"{p}catalog", md, *_catalog_columns())
    # The catalog each engine version was built with, keyed by the release token recorded in
    # the engine's artifact row. A build writes its rows here first; the transaction that
    # activates the version copies them into `catalog` (see Store.save_artifact).
    catalog_release = Table(
        f"{p}catalog_release",
        md,
        Column("release", String(64), primary_key=True),
        *_catalog_columns(),
    )
    recall_list = Table(
        f"{p}recall_list",
        md,
        Column("build_id", String(128), primary_key=True),
        Column("seed_item_id", String(255), primary_key=True),
        # JSON text: [{"item_id", "score", "sources": {name: {"score", "rank"}}}, ...]
        Column("candidates", Text, nullable=False),
    )
    statuses = ", ".join(f"'{s}'" for s in ARTIFACT_STATUSES)
    artifact = Table(
        f"{p}artifact",
        md,
        Column("name", String(200), primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("status", String(16), nullable=False),
        Column("path", Text, nullable=False),
        Column("metrics", Text, nullable=False),
        Column("params", Text, nullable=False),
        Column("config_hash", String(128)),
        # The build token of the version's catalog in catalog_release (engine versions).
        Column("release", String(64)),
        # "sha256:<hex>" of the version's manifest.json (sizes, shapes, checksums).
        Column("manifest", String(80)),
        CheckConstraint(f"status IN ({statuses})", name=f"{p}artifact_status"),
        # At most one active version per name, enforced by the database itself.
        Index(
            f"{p}artifact_one_active",
            "name",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )
    backtest_run = Table(
        f"{p}backtest_run",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dataset", String(255), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("finished_at", UTCDateTime(), nullable=False),
        Column("config", Text, nullable=False),
        Column("metrics", Text, nullable=False),
        Column("report_path", Text),
        Index(f"{p}backtest_run_dataset", "dataset"),
    )
    # A release: the versions of the served artifacts a service loads together. At most one
    # is active; activating one also sets the per-artifact statuses (Store.activate_release).
    release = Table(
        f"{p}release",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("status", String(16), nullable=False),
        *(Column(name, Integer, nullable=name != "engine") for name in RELEASE_STAGES),
        Column("config_hash", String(128)),
        Column("note", Text, nullable=False),
        CheckConstraint(f"status IN ({statuses})", name=f"{p}release_status"),
        Index(
            f"{p}release_one_active",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )
    # Artifact files kept in the database (a store opened with artifact_dir="db:"): every
    # file of a version in chunks, written in the transaction that registers the version.
    artifact_file = Table(
        f"{p}artifact_file",
        md,
        Column("name", String(200), primary_key=True),
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("path", String(1000), primary_key=True),
        Column("chunk", Integer, primary_key=True, autoincrement=False),
        Column("data", LargeBinary, nullable=False),
    )
    return Tables(
        prefix=p,
        metadata=md,
        meta=meta,
        catalog=catalog,
        recall_list=recall_list,
        artifact=artifact,
        backtest_run=backtest_run,
        catalog_release=catalog_release,
        release=release,
        artifact_file=artifact_file,
    )


def table_names(prefix: str = DEFAULT_TABLE_PREFIX) -> list[str]:
    """Names of the tables a store with ``prefix`` uses."""
    return [t.name for t in tables(prefix).all()]


__all__: list[str] = [
    "ARTIFACT_STATUSES",
    "CATALOG_COLUMNS",
    "DEFAULT_TABLE_PREFIX",
    "RELEASE_STAGES",
    "SCHEMA_VERSION",
    "Tables",
    "UTCDateTime",
    "check_table_prefix",
    "table_names",
    "tables",
]
