"""``recset serve``: the engine as an HTTP service (FastAPI + uvicorn), with hot reload.

Needs the ``serve`` extra (``pip install 'recset[serve]'``); the rest of recset never
imports this package. :func:`create_app` builds the app over an :class:`EngineHolder`;
:func:`run` serves it with uvicorn. See docs/serving.md.
"""

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"recset.serve needs the 'serve' extra ({e.name} is not installed): "
        "pip install 'recset[serve]'"
    ) from e

from recset.serve._app import ADMIN_TOKEN_ENV, create_app
from recset.serve._holder import (
    EngineHolder,
    NotReadyError,
    ReloadResult,
    Served,
    SmokeCheckError,
    smoke_check,
)
from recset.serve._metrics import Metrics
from recset.serve._server import ServeSettings, build_app, check_store, openapi_document, run

__all__ = [
    "ADMIN_TOKEN_ENV",
    "EngineHolder",
    "Metrics",
    "NotReadyError",
    "ReloadResult",
    "ServeSettings",
    "Served",
    "SmokeCheckError",
    "build_app",
    "check_store",
    "create_app",
    "openapi_document",
    "run",
    "smoke_check",
]
