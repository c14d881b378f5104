"""Persistence: catalog, precomputed recall lists, artifact registry and backtest runs.

A :class:`Store` is a SQLAlchemy database (a SQLite file by default, PostgreSQL by URL) plus
a directory of artifact files. See :meth:`Store.open`. Every component writes its files with
:func:`write_state` and reads them with :func:`read_state` (one versioned format).

The database half (SQLAlchemy, pandas) is imported on first use, so components that only
read or write their artifact files do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recset.storage._artifacts import State, read_state, write_state
from recset.storage._faults import (
    FAULT_ENV,
    FAULT_EXIT_CODE,
    FAULT_PHASES,
    PRUNE_FAULT_PHASES,
    fault_point,
)

if TYPE_CHECKING:
    from recset.storage._models import RELEASE_STAGES, SCHEMA_VERSION
    from recset.storage._store import (
        ArtifactRecord,
        ArtifactStatus,
        BacktestRun,
        PruneResult,
        ReleaseRecord,
        Store,
        atomic_write_bytes,
        atomic_write_text,
    )

__all__ = [
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "FAULT_PHASES",
    "PRUNE_FAULT_PHASES",
    "SCHEMA_VERSION",
    "ArtifactRecord",
    "ArtifactStatus",
    "BacktestRun",
    "PruneResult",
    "RELEASE_STAGES",
    "ReleaseRecord",
    "State",
    "Store",
    "atomic_write_bytes",
    "atomic_write_text",
    "fault_point",
    "read_state",
    "write_state",
]

_LAZY = {
    "SCHEMA_VERSION": "recset.storage._models",
    "ArtifactRecord": "recset.storage._store",
    "ArtifactStatus": "recset.storage._store",
    "BacktestRun": "recset.storage._store",
    "PruneResult": "recset.storage._store",
    "RELEASE_STAGES": "recset.storage._models",
    "ReleaseRecord": "recset.storage._store",
    "Store": "recset.storage._store",
    "atomic_write_bytes": "recset.storage._store",
    "atomic_write_text": "recset.storage._store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recset.storage' has no attribute {name!r}")
