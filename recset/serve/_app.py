"""The FastAPI app: thin handlers over an :class:`EngineHolder`.

Handlers parse (FastAPI/pydantic hold every input to the bounds in ``_schemas``), take the
holder's current snapshot once, call the engine and serialize. Engine calls are CPU-bound and
run in plain ``def`` handlers, i.e. in the threadpool, so a slow call (ranker, neural stages)
never stalls ``/healthz`` or ``/metrics``. The one exception is a single seed served from the
precomputed lists (an engine without ranker or neural stages): that call costs less than the
hop to the threadpool, so it runs on the event loop (measured in docs/serving.md).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from recset import __version__
from recset.engine import Recommendation
from recset.errors import ConfigError, RecsetError
from recset.serve._holder import EngineHolder, NotReadyError, Poller, Served
from recset.serve._metrics import Metrics, mark_process_dead
from recset.serve._schemas import (
    AT_DESCRIPTION,
    MAX_AT,
    MAX_BODY_BYTES,
    MAX_ID_LENGTH,
    MAX_K,
    BasketOut,
    BasketRequest,
    BatchOut,
    BatchRequest,
    ErrorOut,
    ExplainOut,
    HealthOut,
    ItemOut,
    Mode,
    ReadyOut,
    RecommendationsOut,
    ReloadOut,
)

_log = logging.getLogger(__name__)

ADMIN_TOKEN_ENV = "RECSET_ADMIN_TOKEN"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


SeedQ = Annotated[str, Query(min_length=1, max_length=MAX_ID_LENGTH, description="Seed item id.")]
KQ = Annotated[int, Query(ge=1, le=MAX_K, description="List length.")]
UserQ = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID_LENGTH, description="User id (optional)."),
]
AtQ = Annotated[float | None, Query(ge=0, le=MAX_AT, description=AT_DESCRIPTION)]


class _Json(Response):
    """A compact JSON response (no pydantic pass: handlers build plain dicts)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()


class ServiceError(Exception):
    """An answer other than 200, with its status and message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _recs(recs: Sequence[Recommendation]) -> list[dict[str, Any]]:
    return [
        {
            "item_id": r.item_id,
            "score": r.score,
            "reasons": [{"source": x.source, "score": x.score, "rank": x.rank} for x in r.reasons],
        }
        for r in recs
    ]


def _at_kwargs(at: float | None) -> dict[str, float]:
    """``at=`` for the engine, only when the request gives one (else the engine's now)."""
    return {} if at is None else {"at": at}


def _mode_kwargs(served: Served, mode: str, where: str) -> dict[str, str]:
    """``mode=`` for the engine: only "discover" is passed, and only to an engine that has it
    (an engine without it answers 422 on the ``mode`` field)."""
    if mode == "complete":
        return {}
    if not served.supports_mode:
        raise _invalid_field(
            (where, "mode"),
            f"mode {mode!r} is not supported by the served engine (engine v{served.version} "
            "has no discovery model: train the ranker with `[ranker] discover = true`); "
            "use 'complete'",
        )
    return {"mode": mode}


def _invalid_field(loc: tuple[str, ...], msg: str) -> RequestValidationError:
    """A 422 in FastAPI's validation error shape, for a check only the engine can make."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


def _validation_summary(errors: Sequence[Any]) -> str:
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        where = ".".join(loc[1:]) or "request"
        source = loc[0] if loc else "request"
        parts.append(f"{where} ({source}): {e.get('msg', 'invalid')}")
    return "; ".join(parts)


class _Observe:
    """Pure ASGI middleware: request counts and latency per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except HTTPException as e:  # the body size limit answers outside this middleware
            status = e.status_code
            raise
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - t0)


def create_app(
    holder: EngineHolder,
    *,
    poll_interval: float = 2.0,
    admin_token: str | None = None,
    metrics: Metrics | None = None,
    max_body: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The HTTP service over ``holder``.

    Parameters
    ----------
    holder : EngineHolder
        Loaded at startup (a store that cannot serve stops the startup with its error).
    poll_interval : float
        Seconds between checks of the store's active versions (0: no polling).
    admin_token : str, optional
        Token of ``POST /admin/reload`` (``Authorization: Bearer <token>``); None: the
        endpoint answers 404.
    metrics : Metrics, optional
        A fresh :class:`Metrics` when not given.
    max_body : int
        Largest request body in bytes.
    """
    metrics = metrics or Metrics()
    holder.listener = metrics
    poller = Poller(holder, poll_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder.start()
        poller.start()
        try:
            yield
        finally:
            poller.stop()
            holder.close()
            mark_process_dead(os.getpid())

    app = FastAPI(
        title="recset",
        version=__version__,
        summary="Complementary-product recommendations (frequently bought together).",
        lifespan=lifespan,
        max_body_size=max_body,
        responses={
            400: {"model": ErrorOut, "description": "The body is not valid JSON."},
            413: {"description": "Request body too large."},
        },
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        return JSONResponse(
            status_code=422,
            content={
                "detail": jsonable_encoder(errors),
                "message": _validation_summary(errors),
            },
        )

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail})

    @app.exception_handler(NotReadyError)
    async def _not_ready(request: Request, exc: NotReadyError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(ConfigError)
    async def _bad_request(request: Request, exc: ConfigError) -> JSONResponse:
        return await _invalid(request, _invalid_field(("request",), str(exc)))

    @app.exception_handler(RecsetError)
    async def _engine_error(request: Request, exc: RecsetError) -> JSONResponse:
        _log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=500, content={"detail": str(exc)})

    errors: dict[int | str, dict[str, Any]] = {
        503: {"model": ErrorOut, "description": "No engine loaded yet."},
    }

    @app.get(
        "/v1/recommendations",
        response_model=RecommendationsOut,
        responses=errors,
        tags=["recommendations"],
    )
    async def recommendations(
        seed: SeedQ, user: UserQ = None, k: KQ = 10, mode: Mode = "complete", at: AtQ = None
    ) -> Response:
        """Complements of one seed item, best first. An unknown seed or user is served (the
        cold-start fill; the non-personal path)."""
        served = holder.served
        kw: dict[str, Any] = {**_mode_kwargs(served, mode, "query"), **_at_kwargs(at)}
        if served.inline:  # the precomputed path: cheaper than a hop to the threadpool
            recs = served.engine.recommend(seed, user=user, k=k, **kw)
        else:  # ranker / neural stages: milliseconds of CPU, off the event loop
            recs = await run_in_threadpool(served.engine.recommend, seed, user=user, k=k, **kw)
        return _Json(
            {
                "seed": seed,
                "user": user,
                "k": k,
                "mode": mode,
                "version": served.version,
                "recommendations": _recs(recs),
            }
        )

    @app.post(
        "/v1/recommendations/basket",
        response_model=BasketOut,
        responses=errors,
        tags=["recommendations"],
    )
    def basket(body: BasketRequest) -> Response:
        """One list of complements for a cart (never an item of the cart or of ``exclude``)."""
        served = holder.served
        kw: dict[str, Any] = {**_mode_kwargs(served, body.mode, "body"), **_at_kwargs(body.at)}
        banned = set(body.exclude)
        recs = served.engine.recommend_basket(body.items, body.user, body.k + len(banned), **kw)
        recs = [r for r in recs if r.item_id not in banned][: body.k]
        return _Json(
            {
                "items": body.items,
                "user": body.user,
                "k": body.k,
                "mode": body.mode,
                "version": served.version,
                "recommendations": _recs(recs),
            }
        )

    @app.post(
        "/v1/recommendations/batch",
        response_model=BatchOut,
        responses=errors,
        tags=["recommendations"],
    )
    def batch(body: BatchRequest) -> Response:
        """Complements of several seeds (each with its own user and exclusions) in one call."""
        served = holder.served
        kw: dict[str, Any] = {**_mode_kwargs(served, body.mode, "body"), **_at_kwargs(body.at)}
        reqs = body.requests
        lists = served.engine.recommend_batch(
            [r.seed for r in reqs],
            [r.user for r in reqs],
            k=body.k,
            exclude=[r.exclude for r in reqs],
            **kw,
        )
        return _Json(
            {
                "k": body.k,
                "mode": body.mode,
                "version": served.version,
                "results": [
                    {"seed": r.seed, "user": r.user, "recommendations": _recs(recs)}
                    for r, recs in zip(reqs, lists, strict=True)
                ],
            }
        )

    @app.get("/v1/explain", response_model=ExplainOut, responses=errors, tags=["recommendations"])
    def explain(seed: SeedQ, k: KQ = 20) -> Response:
        """The seed's recall mix and its candidates with the score and rank from each source."""
        served = holder.served
        info = served.engine.explain(seed, k=k)
        return _Json(jsonable_encoder({**info, "version": served.version}))

    @app.get(
        "/v1/items/{item_id:path}",
        response_model=ItemOut,
        responses={404: {"model": ErrorOut, "description": "Unknown item."}, **errors},
        tags=["items"],
    )
    def item(item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]) -> Response:
        """An item as the service sees it: known to the served engine, available, catalog row."""
        engine = holder.served.engine
        dense = engine.items.index_one(item_id)
        row = holder.catalog_item(item_id)
        if dense < 0 and row is None:
            raise ServiceError(404, f"unknown item {item_id!r}")
        available = bool(engine.mixer.available[dense]) if dense >= 0 else None
        return _Json(
            jsonable_encoder(
                {"item_id": item_id, "served": dense >= 0, "available": available, "catalog": row}
            )
        )

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    async def healthz() -> Response:
        """The process is up (it may still be loading)."""
        return _Json({"status": "ok"})

    @app.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "Not ready."}},
        tags=["operations"],
    )
    async def readyz() -> Response:
        """Ready to serve: an engine is loaded (its artifact versions)."""
        if not holder.ready:
            return _Json({"status": "loading", "versions": {}, "loaded_at": None}, 503)
        served = holder.served
        return _Json(
            {"status": "ready", "versions": dict(served.versions), "loaded_at": served.loaded_at}
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus metrics."}},
        tags=["operations"],
    )
    def metrics_endpoint() -> Response:
        """Prometheus text exposition (all workers' values in multiprocess mode)."""
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.post(
        "/admin/reload",
        response_model=ReloadOut,
        responses={
            403: {"model": ErrorOut, "description": "Missing or wrong token."},
            409: {"model": ReloadOut, "description": "The version was refused; the old serves."},
            404: {"model": ErrorOut, "description": f"Disabled: {ADMIN_TOKEN_ENV} is not set."},
        },
        tags=["operations"],
    )
    def reload(authorization: Annotated[str | None, Header()] = None) -> Response:
        """Load the store's active versions now (``Authorization: Bearer <token>``).

        With several workers only the worker that answers reloads now; the others follow at
        their next poll."""
        if not admin_token:
            raise ServiceError(404, f"admin endpoints are disabled: set {ADMIN_TOKEN_ENV}")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise ServiceError(403, "missing or wrong admin token")
        result = holder.refresh(force=True)
        serving = dict(holder.served.versions) if holder.ready else {}
        return _Json(
            {
                "outcome": result.outcome,
                "versions": dict(result.versions),
                "serving": serving,
                "message": result.message,
            },
            200 if result.outcome != "refused" else 409,
        )

    app.add_middleware(_Observe, metrics=metrics)  # type: ignore[arg-type]
    return app
