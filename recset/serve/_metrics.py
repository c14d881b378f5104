"""Prometheus metrics of a service: requests, latency, the served version, reloads.

With several worker processes prometheus-client's multiprocess mode is used: the server sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start (see :func:`recset.serve.run`), every
worker writes its values there and ``/metrics`` on any worker sums them up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from recset.serve._holder import STAGE_ARTIFACTS, Versions

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# latency buckets from 0.25 ms: the precomputed path answers in well under a millisecond
_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The metrics of one app (its own registry: two apps in one process never collide)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recset_http_requests",
            "HTTP requests answered, by endpoint (route template), method and status.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recset_http_request_duration_seconds",
            "Time from request to response, by endpoint (route template).",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.version = Gauge(
            "recset_engine_version",
            "1 for the artifact versions this process serves (0 for ones it served before).",
            ["artifact", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "recset_reloads", "Versions loaded and swapped in (the first load too).", registry=r
        )
        self.reload_failures = Counter(
            "recset_reload_failures",
            "Versions refused (failed to load or failed the smoke check); the old one serves.",
            registry=r,
        )
        self.reload_seconds = Gauge(
            "recset_last_reload_seconds",
            "Seconds the last successful load and smoke check took.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._served: dict[str, int] = {}

    # -- the holder's listener --------------------------------------------------------
    def loaded(self, versions: Versions, seconds: float) -> None:
        for name in STAGE_ARTIFACTS:
            old = self._served.get(name)
            if old is not None and old != versions.get(name):
                self.version.labels(name, str(old)).set(0)
            if name in versions:
                self.version.labels(name, str(versions[name])).set(1)
        self._served = dict(versions)
        self.reloads.inc()
        self.reload_seconds.set(seconds)

    def refused(self, versions: Versions, reason: str) -> None:
        self.reload_failures.inc()

    # -- requests ---------------------------------------------------------------------
    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
