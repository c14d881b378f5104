"""Running the service: settings, the per-worker app factory, and uvicorn."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI

from recset.engine import ENGINE_ARTIFACT
from recset.errors import ConfigError, StorageError
from recset.serve._app import ADMIN_TOKEN_ENV, create_app
from recset.serve._holder import EngineHolder
from recset.serve._metrics import MULTIPROC_ENV
from recset.storage import Store

_log = logging.getLogger(__name__)

SETTINGS_ENV = "RECSET_SERVE_SETTINGS"
"""How :func:`run` hands the settings to its worker processes (JSON)."""


@dataclass(frozen=True)
class ServeSettings:
    """What ``recset serve`` runs with.

    Attributes
    ----------
    store : str
        The store (a directory or a SQLAlchemy URL).
    artifact_dir : str, optional
        Artifact files location when ``store`` is a database URL.
    host, port : str, int
        Where to listen (loopback by default).
    workers : int
        Worker processes; they share the memory-mapped candidate lists through the page cache.
    poll_interval : float
        Seconds between checks of the store's active versions (0: only ``/admin/reload``).
    neural : bool
        Attach the store's active neural stages.
    access_log : bool
        Log every request (off by default: it costs throughput).
    top_cache_mb : int
        Per worker, MiB of recently asked seeds' mixed and filled candidates kept for the
        next request on the same seed (:meth:`~recset.recall.Mixer.cache_top`; 0: off).
    """

    store: str
    artifact_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    poll_interval: float = 2.0
    neural: bool = True
    access_log: bool = False
    top_cache_mb: int = 64

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"The 'workers' setting must be >= 1. Got {self.workers} instead.")
        if self.poll_interval < 0:
            raise ConfigError(
                f"The 'poll_interval' setting must be >= 0. Got {self.poll_interval} instead."
            )


def build_app(settings: ServeSettings) -> FastAPI:
    """The app of one worker (the engine loads at its startup)."""
    holder = EngineHolder(
        settings.store,
        artifact_dir=settings.artifact_dir,
        neural=settings.neural,
        top_cache_bytes=settings.top_cache_mb << 20,
    )
    return create_app(
        holder,
        poll_interval=settings.poll_interval,
        admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
    )


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document (committed as docs/openapi.json)."""
    return create_app(EngineHolder("unused"), admin_token="unused").openapi()


def app_from_env() -> FastAPI:
    """uvicorn's factory in every worker: the settings :func:`run` put in the environment."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise ConfigError(f"{SETTINGS_ENV} is not set; start the service with `recset serve`")
    return build_app(ServeSettings(**json.loads(raw)))


def _log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    # recset's own messages (loads, refused versions) go where uvicorn's go, in every worker
    config["loggers"]["recset"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def check_store(settings: ServeSettings) -> int:
    """The active engine version of the store; raise a clear error when there is none."""
    with Store.open(settings.store, artifact_dir=settings.artifact_dir, create=False) as store:
        record = store.active_artifact(ENGINE_ARTIFACT)
        if record is None:
            raise StorageError(f"{store.url}: no active engine; run `recset build` first")
        store.artifact_path(record)
        return record.version


def run(settings: ServeSettings) -> None:
    """Serve until interrupted (uvicorn; ``settings.workers`` processes)."""
    import uvicorn

    check_store(settings)
    own_dir = None
    if settings.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # prometheus-client's multiprocess mode: every worker writes its values here
        own_dir = tempfile.mkdtemp(prefix="recset-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    try:
        uvicorn.run(
            "recset.serve._server:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            access_log=settings.access_log,
            log_config=_log_config(),
            timeout_graceful_shutdown=10,
        )
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
