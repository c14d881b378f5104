"""Persistence: catalog, precomputed recall lists, artifact registry and backtest runs.

A :class:`Store` is a SQLAlchemy database (a SQLite file by default, PostgreSQL by URL) plus
a directory of artifact files. See :meth:`Store.open`.
"""

from recset.storage._models import SCHEMA_VERSION
from recset.storage._store import (
    ArtifactRecord,
    ArtifactStatus,
    BacktestRun,
    Store,
    atomic_write_bytes,
    atomic_write_text,
)

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactRecord",
    "ArtifactStatus",
    "BacktestRun",
    "Store",
    "atomic_write_bytes",
    "atomic_write_text",
]
