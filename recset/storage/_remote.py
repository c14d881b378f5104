"""Artifact files kept away from the machine that loads them: in the database, or at an
fsspec URL.

A store opened with ``artifact_dir="db"`` (the default of a new database store given no
``artifact_dir``) keeps every file of a version in its ``artifact_file`` table, in chunks,
written in the transaction that registers the version; one opened with an fsspec URL
(``file://``, ``memory://``, ``s3://``... through the ``remote`` extra) copies them there
before that transaction commits. The location is recorded in the store, so another machine
needs only the database URL: it materialises a version into a local cache directory
(checked against the version's manifest, then renamed into place) and memory-maps it from
there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from recset.errors import StorageError
from recset.storage._models import Tables

DATABASE: Final[str] = "db"
"""``artifact_dir`` value (and recorded location) of files kept in the database."""

CHUNK_BYTES: Final[int] = 8 * 1024 * 1024
"""Size of one ``artifact_file`` row: memory stays flat whatever the file size."""

CACHE_ENV: Final[str] = "RECSET_CACHE_DIR"
"""Environment variable naming the local cache root (default ``~/.cache/recset``)."""


def is_remote(location: str) -> bool:
    """Whether an ``artifact_dir`` names the database or an fsspec URL (not a local path)."""
    return location in (DATABASE, f"{DATABASE}:") or "://" in location


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where materialised versions go: ``cache_dir``, ``$RECSET_CACHE_DIR`` or
    ``~/.cache/recset``."""
    if cache_dir is not None:
        return Path(os.fspath(cache_dir)).expanduser().resolve()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "recset").resolve()


def _files(directory: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path.relative_to(directory).as_posix(), path


class DatabaseFiles:
    """Files of artifact versions in the store's ``artifact_file`` table."""

    location = DATABASE

    def __init__(self, tables: Tables) -> None:
        self._t = tables.artifact_file

    def upload(self, conn: Connection, directory: Path, name: str, version: int) -> None:
        """Inside ``conn``'s transaction: every file of ``directory`` as rows of chunks."""
        conn.execute(delete(self._t).where(self._t.c.name == name, self._t.c.version == version))
        for rel, path in _files(directory):
            with path.open("rb") as f:
                chunk = 0
                while True:
                    data = f.read(CHUNK_BYTES)
                    if not data and chunk:
                        break
                    conn.execute(
                        insert(self._t).values(
                            name=name, version=version, path=rel, chunk=chunk, data=data
                        )
                    )
                    chunk += 1
                    if len(data) < CHUNK_BYTES:
                        break

    def download(self, engine: Engine, name: str, version: int, into: Path) -> None:
        """Write the files of version ``version`` of ``name`` under ``into``."""
        t = self._t
        stmt = (
            select(t.c.path, t.c.data)
            .where(t.c.name == name, t.c.version == version)
            .order_by(t.c.path, t.c.chunk)
        )
        out: Any = None
        current = None
        found = False
        try:
            with engine.connect() as conn:
                for rel, data in conn.execution_options(yield_per=4).execute(stmt):
                    found = True
                    if rel != current:
                        if out is not None:
                            out.close()
                        target = (into / rel).resolve()
                        if not target.is_relative_to(into.resolve()):
                            raise StorageError(f"{name} v{version}: file {rel!r} leaves {into}")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        out = target.open("wb")
                        current = rel
                    out.write(bytes(data))
        finally:
            if out is not None:
                out.close()
        if not found:
            raise StorageError(
                f"artifact {name!r} v{version}: its files are not in the database "
                f"(table {t.name!r}); it was saved with another artifact_dir"
            )

    def remove(self, name: str, version: int) -> None:
        """Nothing to do after the commit: the rows went in the pruning transaction."""


class FsspecFiles:
    """Files of artifact versions under an fsspec URL (``<url>/<name>/v<version>/``)."""

    def __init__(self, location: str) -> None:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise StorageError(
                f"artifact_dir {location!r} is an fsspec URL: install the remote extra "
                "(pip install 'recset[remote]', plus s3fs / gcsfs for those schemes)"
            ) from exc
        self.location = location.rstrip("/")
        try:
            self._fs, self._root = fsspec.core.url_to_fs(self.location)
        except (ValueError, ImportError) as exc:
            raise StorageError(f"artifact_dir {location!r}: {exc}") from exc
        self._root = self._root.rstrip("/")

    def _dir(self, name: str, version: int) -> str:
        return f"{self._root}/{name}/v{version}"

    def upload(self, conn: Connection, directory: Path, name: str, version: int) -> None:
        """Copy every file of ``directory`` (before the registering transaction commits)."""
        target = self._dir(name, version)
        try:
            if self._fs.exists(target):  # left by a save that died before its commit
                self._fs.rm(target, recursive=True)
            for rel, path in _files(directory):
                dest = f"{target}/{rel}"
                self._fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
                self._fs.put_file(str(path), dest)
        except OSError as exc:
            raise StorageError(f"cannot copy {name} v{version} to {self.location}: {exc}") from exc

    def download(self, engine: Engine, name: str, version: int, into: Path) -> None:
        src = self._dir(name, version)
        try:
            files = [p for p in self._fs.find(src) if not self._fs.isdir(p)]
            if not files:
                raise FileNotFoundError(src)
            for path in files:
                rel = path[len(src) :].lstrip("/")
                target = (into / rel).resolve()
                if not target.is_relative_to(into.resolve()):
                    raise StorageError(f"{name} v{version}: file {rel!r} leaves {into}")
                target.parent.mkdir(parents=True, exist_ok=True)
                self._fs.get_file(path, str(target))
        except OSError as exc:
            raise StorageError(
                f"cannot fetch artifact {name!r} v{version} from {self.location}: {exc}"
            ) from exc

    def remove(self, name: str, version: int) -> None:
        """Remove a pruned version's files (after its rows are gone)."""
        target = self._dir(name, version)
        try:
            if self._fs.exists(target):
                self._fs.rm(target, recursive=True)
        except OSError:
            pass  # an unreferenced copy; the next prune of that version is a no-op


Remote = DatabaseFiles | FsspecFiles


def remote_for(location: str, tables: Tables) -> Remote:
    """The file keeper of a recorded location."""
    if location in (DATABASE, f"{DATABASE}:"):
        return DatabaseFiles(tables)
    return FsspecFiles(location)


__all__ = [
    "CACHE_ENV",
    "CHUNK_BYTES",
    "DATABASE",
    "DatabaseFiles",
    "FsspecFiles",
    "Remote",
    "cache_root",
    "is_remote",
    "remote_for",
]
