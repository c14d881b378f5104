"""`recset serve` in a subprocess (two workers) on a loopback port: the API over a real
socket, schemathesis against the committed OpenAPI document, rollback and refusal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import ROOT, TOKEN, Server, activate, save_broken_engine

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.serve]

SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")


def _sum_metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


@SCHEMA.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, server: Server) -> None:
    # bounded examples: every operation gets a few generated requests (valid and invalid);
    # the answers must be documented, schema-conformant and never a 5xx
    asked = {**(case.query or {}), **(case.body if isinstance(case.body, dict) else {})}
    excluded = []
    if asked.get("mode") == "discover":
        # the document accepts mode=discover; an engine without it answers 422 on `mode`
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=server.url, excluded_checks=excluded)


def test_served_over_a_socket(server: Server) -> None:
    with server.client() as c:
        r = c.get("/v1/recommendations", params={"seed": "no-such-item", "user": "nobody"})
        assert r.status_code == 200 and len(r.json()["recommendations"]) == 10
        r = c.get("/v1/recommendations", params={"seed": "x", "k": 0})
        assert r.status_code == 422 and "k (query)" in r.json()["message"]
        r = c.post("/v1/recommendations/basket", json={"items": ["a", "b"], "k": 3})
        assert r.status_code == 200 and len(r.json()["recommendations"]) == 3
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.post("/admin/reload").status_code == 403
        text = c.get("/metrics").text
    # multiprocess mode: both workers' gauges are exposed (one per pid)
    assert text.count('recset_engine_version{artifact="engine"') >= 2, text
    assert _sum_metric(text, "recset_http_requests_total") >= 5


def _versions_seen(server: Server, n: int = 12) -> set[int]:
    with server.client() as c:
        out = set()
        for _ in range(n):
            # a new connection per request, so that the requests spread over the workers
            r = c.get(
                "/v1/recommendations",
                params={"seed": "no-such-item"},
                headers={"Connection": "close"},
            )
            assert r.status_code == 200, r.text
            out.add(r.json()["version"])
        return out


def _wait_for_version(server: Server, version: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _versions_seen(server) == {version}:  # every worker (connections spread)
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"v{version} not served within {timeout}s:\n{server.output()[-3000:]}")


def test_rollback_is_served_and_a_broken_version_refused(server: Server) -> None:
    store: Path = server.store
    assert _versions_seen(server) == {2}
    activate(store, 1)  # what `recset activate --store S 1` does
    _wait_for_version(server, 1, timeout=5)  # the target: within 5 s
    # Several poll intervals more, so that every worker serves v1 before the broken version
    # is activated (a worker that never saw v1 would rightly keep serving v2).
    time.sleep(1.5)
    broken = save_broken_engine(store)
    time.sleep(2.0)  # several poll intervals of both workers
    assert _versions_seen(server) == {1}
    with server.client() as c:
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 409 and r.json()["serving"] == {"engine": 1}, r.text
        text = c.get("/metrics").text
    assert _sum_metric(text, "recset_reload_failures_total") >= 2  # each worker refused it
    assert f"refused engine v{broken}" in server.output()
    activate(store, 2)
    _wait_for_version(server, 2, timeout=5)
