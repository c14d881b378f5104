"""The engine a service serves, and how it moves to a newly activated version.

:class:`EngineHolder` keeps one :class:`Served` snapshot (an engine with the artifact versions
it was loaded from). A reload loads the new version beside the old one, runs a smoke check
and only then replaces the snapshot (one attribute assignment, so a request that already
took the old snapshot finishes on it). A version that fails to load or to pass the check is
refused: the old one keeps serving and the refusal is reported to the listener.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from recset.engine import ENGINE_ARTIFACT, Engine
from recset.errors import RecsetError, StorageError
from recset.storage import Store

_log = logging.getLogger(__name__)

STAGE_ARTIFACTS = (ENGINE_ARTIFACT, "ranker", "personalizer", "type_transition")
"""The artifacts a release pins: what a service serves is the active release's versions."""

Versions = Mapping[str, int]


class SmokeCheckError(RecsetError):
    """A freshly loaded engine gave answers a service must not serve."""


class NotReadyError(RecsetError):
    """No engine is loaded yet."""


@dataclass(frozen=True)
class Served:
    """One loaded engine and the versions of the release it was loaded from
    (``engine.version`` is that release)."""

    engine: Engine
    versions: Versions
    loaded_at: float
    supports_mode: bool = field(default=False)
    inline: bool = field(default=False)
    """Single-seed calls take the precomputed path (no ranker or neural stage)."""

    @property
    def version(self) -> int:
        """The engine artifact version."""
        return int(self.versions[ENGINE_ARTIFACT])


class Listener(Protocol):
    """What a holder reports (the service's metrics implement it)."""

    def loaded(self, versions: Versions, seconds: float) -> None: ...

    def refused(self, versions: Versions, reason: str) -> None: ...


ReloadOutcome = Literal["unchanged", "loaded", "refused", "already_refused"]


@dataclass(frozen=True)
class ReloadResult:
    outcome: ReloadOutcome
    versions: Versions
    message: str = ""


def smoke_check(engine: Engine) -> None:
    """A few recommendations through every path a request takes; raise if any looks wrong.

    Known seeds (first, middle, last of the item map) on the single-seed and the batch path,
    with the first known user when the engine has personal stages, and one unknown seed (the
    cold-start path). Every list must be non-empty, hold known items other than its seed,
    and have finite scores that never rise.
    """
    ids = engine.items.values
    if len(ids) == 0:
        raise SmokeCheckError("the engine serves no items")
    picks = sorted({0, len(ids) // 2, len(ids) - 1})
    seeds = [str(ids[i]) for i in picks]
    users = engine.users
    user = str(users.values[0]) if users is not None and len(users) else None
    unknown = "\x00recset-smoke-unknown-seed"
    lists = [engine.recommend(seeds[0], k=5)]
    lists += engine.recommend_batch([*seeds, unknown], [user] * (len(seeds) + 1), k=5)
    for seed, recs in zip([seeds[0], *seeds, unknown], lists, strict=True):
        if not recs:
            raise SmokeCheckError(f"seed {seed!r} got an empty list")
        scores = [r.score for r in recs]
        if not all(math.isfinite(s) for s in scores):
            raise SmokeCheckError(f"seed {seed!r} got non-finite scores {scores}")
        if any(b > a + 1e-6 * max(1.0, abs(a)) for a, b in zip(scores, scores[1:], strict=False)):
            raise SmokeCheckError(f"seed {seed!r} got rising scores {scores}")
        got = [r.item_id for r in recs]
        if seed in got:
            raise SmokeCheckError(f"seed {seed!r} was recommended to itself")
        if (engine.items.index(got) < 0).any():
            raise SmokeCheckError(f"seed {seed!r} got items the engine does not know: {got}")


def _supports_mode(engine: Engine) -> bool:
    """Whether the engine serves ``mode="discover"``: its ranker has a discovery model."""
    ranker = engine.ranker
    return ranker is not None and getattr(ranker, "discover_booster", None) is not None


class EngineHolder:
    """The engine a service serves, reloaded when the store activates another version.

    Parameters
    ----------
    store : str
        The store (a directory or a SQLAlchemy URL).
    artifact_dir : str, optional
        Artifact files location when ``store`` is a database URL.
    neural : bool
        Attach the active neural stages (see :meth:`Engine.load`).
    check : callable
        Run on every freshly loaded engine before it serves; raises to refuse it.
    listener : Listener, optional
        Told of every load and refusal.
    top_cache_bytes : int
        Memory for the mixer's cache of recently asked seeds' candidates
        (:meth:`~recset.recall.Mixer.cache_top`); 0: none. Each loaded engine gets its own,
        so a reload starts empty.
    """

    def __init__(
        self,
        store: str,
        *,
        artifact_dir: str | None = None,
        neural: bool = True,
        check: Callable[[Engine], None] = smoke_check,
        listener: Listener | None = None,
        top_cache_bytes: int = 0,
    ) -> None:
        self.store_url = store
        self.top_cache_bytes = int(top_cache_bytes)
        self.artifact_dir = artifact_dir
        self.neural = neural
        self._check = check
        self.listener = listener
        self._store: Store | None = None
        self._served: Served | None = None
        self._refused: dict[str, int] | None = None
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------
    @property
    def served(self) -> Served:
        """The current snapshot; take it once per request."""
        served = self._served
        if served is None:
            raise NotReadyError("no engine is loaded yet")
        return served

    @property
    def ready(self) -> bool:
        return self._served is not None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.store_url, artifact_dir=self.artifact_dir, create=False)
        return self._store

    def active_versions(self) -> dict[str, int]:
        """The versions the store's active release pins (the neural stages only with
        ``neural``); empty when the store has no active release."""
        return self._active()[1]

    def _active(self) -> tuple[int | None, dict[str, int]]:
        record = self.store.active_release_record()
        if record is None:
            return None, {}
        skip = () if self.neural else ("personalizer", "type_transition")
        return record.id, {n: v for n, v in record.pins.items() if n not in skip}

    def catalog_item(self, item_id: str) -> dict[str, Any] | None:
        """The store's catalog row of ``item_id`` (None: not in the catalog)."""
        return self.store.catalog_item(item_id)

    # -- loading ----------------------------------------------------------------------
    def start(self) -> Served:
        """Load the active version; raise when it cannot serve (a service must not start)."""
        result = self.refresh(force=True)
        if result.outcome != "loaded":
            what = _describe(result.versions) or "its active versions"
            raise StorageError(f"cannot serve {self.store_url} ({what}): {result.message}")
        return self.served

    def refresh(self, *, force: bool = False) -> ReloadResult:
        """Serve the store's active release if its versions differ from the served ones.

        A version refused once is not tried again until the active versions change (or
        ``force``). Thread-safe: concurrent calls load at most once.
        """
        with self._lock:
            try:
                release, versions = self._active()
            except RecsetError as e:
                return self._refuse({}, f"cannot read the active versions: {e}")
            current = self._served
            if not force and current is not None and dict(current.versions) == versions:
                return ReloadResult("unchanged", versions)
            if not force and self._refused == versions:
                return ReloadResult("already_refused", versions, "refused before")
            if ENGINE_ARTIFACT not in versions:
                return self._refuse(versions, "the store has no active engine")
            t0 = time.perf_counter()
            try:
                engine = Engine.load(
                    self.store_url,
                    artifact_dir=self.artifact_dir,
                    release=release,
                    neural=self.neural,
                )
            except Exception as e:  # a broken version must never take the service down
                return self._refuse(versions, f"load failed: {type(e).__name__}: {e}")
            engine.mixer.cache_top(self.top_cache_bytes)
            try:
                self._check(engine)
            except Exception as e:
                return self._refuse(versions, f"smoke check failed: {type(e).__name__}: {e}")
            seconds = time.perf_counter() - t0
            self._served = Served(
                engine, versions, time.time(), _supports_mode(engine), len(engine.stages) == 1
            )
            self._refused = None
        _log.info("serving %s (loaded and checked in %.2fs)", _describe(versions), seconds)
        if self.listener is not None:
            self.listener.loaded(versions, seconds)
        return ReloadResult("loaded", versions, f"serving {_describe(versions)}")

    def _refuse(self, versions: dict[str, int], reason: str) -> ReloadResult:
        self._refused = versions
        old = self._served
        keeps = f"; still serving {_describe(old.versions)}" if old is not None else ""
        _log.error("refused %s: %s%s", _describe(versions) or "the store", reason, keeps)
        if self.listener is not None:
            self.listener.refused(versions, reason)
        return ReloadResult("refused", versions, reason + keeps)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _describe(versions: Versions) -> str:
    return ", ".join(f"{name} v{v}" for name, v in versions.items())


class Poller:
    """Calls ``holder.refresh()`` every ``interval`` seconds in a daemon thread."""

    def __init__(self, holder: EngineHolder, interval: float) -> None:
        self.holder = holder
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"recset-poll-{os.getpid()}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # jitter the first poll so that several workers do not load in lock step
        if self._stop.wait(self.interval * (0.5 + 0.5 * random.random())):
            return
        while True:
            try:
                self.holder.refresh()
            except Exception:  # never let the poller die
                _log.exception("polling %s failed", self.holder.store_url)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
