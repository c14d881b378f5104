"""Fixtures running the storage suite on SQLite (always) and PostgreSQL (when reachable).

PostgreSQL is found at ``RECSET_TEST_PG_URL`` (default: the local test server). Every test
gets fresh table prefixes there (``t<uuid8>_``) and its tables are dropped afterwards, so
tests neither collide with each other nor see data left behind by earlier runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from recset.storage import Store
from recset.storage._models import tables
from recset.storage._store import _with_available_driver
from recset.testing import releases

# One definition of where the test server is and whether it answers, shared with the
# reliability tests and the bench (recset.testing.releases).
DEFAULT_PG_URL = releases.DEFAULT_PG_URL
pg_url = releases.pg_url
_pg_unreachable_reason = releases.pg_unreachable_reason


@dataclass
class Backend:
    """Opens stores on one backend and cleans up after the test."""

    name: str
    tmp_path: Path
    url: str | None = None  # None: SQLite in tmp_path
    opened: list[Store] = field(default_factory=list)
    prefixes: set[str] = field(default_factory=set)

    def new_prefix(self) -> str:
        """A table prefix unique to this test (the default one on SQLite, which is private)."""
        prefix = f"t{uuid.uuid4().hex[:8]}_" if self.url else "recset_"
        while prefix in self.prefixes and not self.url:
            prefix = f"t{uuid.uuid4().hex[:8]}_"
        self.prefixes.add(prefix)
        return prefix

    @property
    def target(self) -> str:
        """What Store.open gets: the PostgreSQL URL, or a directory for SQLite."""
        return self.url if self.url else str(self.tmp_path / "store")

    def open(self, prefix: str | None = None, **kwargs: Any) -> Store:
        """Open a store; ``prefix`` defaults to a new unique one."""
        if prefix is None:
            prefix = self.new_prefix()
        self.prefixes.add(prefix)
        if self.url:
            kwargs.setdefault("artifact_dir", self.tmp_path / f"artifacts-{prefix}")
        store = Store.open(self.target, table_prefix=prefix, **kwargs)
        self.opened.append(store)
        return store

    def cleanup(self) -> None:
        for store in self.opened:
            store.close()
        if self.url:
            engine = sa.create_engine(_with_available_driver(sa.make_url(self.url)))
            try:
                for prefix in self.prefixes:
                    tables(prefix).metadata.drop_all(engine)
            finally:
                engine.dispose()


def _skip_unless_reachable(url: str) -> None:
    reason = _pg_unreachable_reason(url)
    if reason is not None:
        masked = sa.make_url(url).render_as_string(hide_password=True)
        pytest.skip(f"PostgreSQL is not reachable at {masked} ({reason})")


@pytest.fixture
def pg_backend(tmp_path: Path) -> Iterator[Backend]:
    """A PostgreSQL-only :class:`Backend` (skips when the server is not reachable)."""
    url = pg_url()
    _skip_unless_reachable(url)
    b = Backend("postgresql", tmp_path, url=url)
    try:
        yield b
    finally:
        b.cleanup()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A :class:`Backend` per storage backend."""
    if request.param == "postgresql":
        url = pg_url()
        _skip_unless_reachable(url)
        b = Backend("postgresql", tmp_path, url=url)
    else:
        b = Backend("sqlite", tmp_path)
    try:
        yield b
    finally:
        b.cleanup()


@pytest.fixture
def store(backend: Backend) -> Store:
    """A fresh, empty store on each backend."""
    return backend.open()
