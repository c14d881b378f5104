"""The build lock of a store: builds into one store run one at a time.

A SQLite store locks a file beside its database (``filelock``); a PostgreSQL store takes a
session-level advisory lock keyed by its table prefix on a connection held for the build.
Either is released by the operating system or the server when the holding process dies,
so a killed build never leaves a lock behind. The lock is re-entrant within a process
(``recset build`` holds it, and :meth:`Engine.save` inside it takes it again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from recset.errors import StorageError
from recset.storage._models import Tables

_log = logging.getLogger(__name__)

_HOLDER_KEY = "build_lock"
_GUARD = threading.Lock()
_HELD: dict[tuple[int, str], list[Any]] = {}  # (pid, lock key) -> [count, release callback]


def host_tag() -> str:
    """Eight hex digits naming this host (in temporary names, to tell our processes apart)."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; None where /proc is absent),
    so that a recycled pid is not taken for the process that wrote a leftover."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(host: str, pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` of host tag ``host`` (started at ``start``) may still run.

    Processes of other hosts are assumed alive (their leftovers are never touched).
    """
    if host != host_tag():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_start(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class LockTarget:
    """What a store's lock is taken on."""

    engine: Engine
    tables: Tables
    url: str
    sqlite_file: Path | None

    @property
    def key(self) -> str:
        if self.sqlite_file is not None:
            return f"file:{self.lock_file}"
        return f"{self.url}|{self.tables.prefix}|{id(self.engine) if self._memory else ''}"

    @property
    def _memory(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def lock_file(self) -> Path:
        f = self.sqlite_file
        if f is None:
            raise StorageError(f"{self.url}: an in-memory store has no lock file")
        return f.with_name(f"{f.name}.{self.tables.prefix or '_'}build.lock")


def _advisory_key(prefix: str) -> int:
    digest = hashlib.blake2b(f"recset-build:{prefix}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _write_holder(target: LockTarget, purpose: str) -> None:
    t = target.tables.meta
    value = json.dumps(
        {
            "purpose": purpose,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
    )
    with contextlib.suppress(sa.exc.SQLAlchemyError), target.engine.begin() as conn:
        conn.execute(delete(t).where(t.c.key == _HOLDER_KEY))
        conn.execute(insert(t).values(key=_HOLDER_KEY, value=value))


def _holder(target: LockTarget) -> str:
    t = target.tables.meta
    try:
        with target.engine.connect() as conn:
            raw = conn.execute(select(t.c.value).where(t.c.key == _HOLDER_KEY)).scalar()
        h = json.loads(raw) if raw else None
    except (sa.exc.SQLAlchemyError, ValueError):
        h = None
    if not isinstance(h, dict):
        return ""
    return f" ({h.get('purpose')}, pid {h.get('pid')} on {h.get('host')}, since {h.get('since')})"


def _busy(target: LockTarget) -> StorageError:
    return StorageError(
        f"Another recset process is building into the store at {target.url} (table prefix "
        f"{target.tables.prefix!r}){_holder(target)}. Builds into one store run one at a "
        "time: wait for it to finish, then run this again."
    )


def _acquire(target: LockTarget, wait: float) -> Callable[[], None]:
    """Take the OS- or server-level lock; return the function that releases it."""
    if target.sqlite_file is not None:
        from filelock import FileLock, Timeout

        target.lock_file.parent.mkdir(parents=True, exist_ok=True)
        timeout = max(wait, 0.0)
        try:  # keep the file: unlinking it on release opens a window for two holders
            lock = FileLock(
                target.lock_file, timeout=timeout, thread_local=False, preserve_lock_file=True
            )
        except TypeError:  # filelock < 4 never unlinks it
            lock = FileLock(target.lock_file, timeout=timeout, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise _busy(target) from None
        return lambda: lock.release(force=True)
    if target.engine.dialect.name == "postgresql":
        key = _advisory_key(target.tables.prefix)
        conn = target.engine.connect()
        deadline = datetime.now(UTC).timestamp() + max(wait, 0.0)
        try:
            while True:
                got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                conn.commit()  # the session lock outlives the transaction; do not idle in one
                if got:
                    break
                if datetime.now(UTC).timestamp() >= deadline:
                    raise _busy(target)
                threading.Event().wait(0.2)
        except BaseException:
            conn.close()
            raise

        def release() -> None:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
                conn.close()
            except sa.exc.SQLAlchemyError:
                conn.invalidate()  # closing the session drops its advisory locks

        return release
    _log.debug("%s: no cross-process build lock for this backend", target.url)
    return lambda: None


@contextlib.contextmanager
def build_lock(
    target: LockTarget, purpose: str, wait: float, on_acquire: Callable[[], None]
) -> Iterator[None]:
    """Hold the build lock of ``target`` (re-entrant in one process); ``on_acquire`` runs
    once when this process takes it (the store's cleanup of dead builds' leftovers)."""
    key = (os.getpid(), target.key)  # a forked child does not inherit the parent's hold
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held[0] += 1
        else:
            release = _acquire(target, wait)
            _HELD[key] = held = [1, release]
            try:
                _write_holder(target, purpose)
                on_acquire()
            except BaseException:
                del _HELD[key]
                release()
                raise
    try:
        yield
    finally:
        with _GUARD:
            held[0] -= 1
            last = held[0] == 0
            if last:
                del _HELD[key]
        if last:
            held[1]()


__all__ = ["LockTarget", "build_lock", "host_tag", "process_alive", "process_start"]
