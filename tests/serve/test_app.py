"""The HTTP API in process (TestClient): answers equal the engine's, bounds, errors, metrics,
reload and refusal, the mode switch, and the committed OpenAPI document."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

from recset import Engine
from recset.serve import EngineHolder, SmokeCheckError, create_app, openapi_document
from recset.serve._schemas import MAX_BASKET, MAX_BATCH, MAX_EXCLUDE, MAX_ID_LENGTH, MAX_K

from .conftest import ROOT, TOKEN, activate, save_broken_engine


@pytest.fixture(scope="module")
def client(built_store: Path) -> Iterator[TestClient]:
    """A service over the shared store (for tests that change no version)."""
    app = create_app(EngineHolder(str(built_store)), poll_interval=0, admin_token=TOKEN)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def engine(built_store: Path) -> Engine:
    return Engine.load(built_store)


def ids(recs: list[dict[str, Any]]) -> list[str]:
    return [r["item_id"] for r in recs]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_answers_equal_the_engine(client: TestClient, engine: Engine) -> None:
    seeds = [str(engine.items.id_of(i)) for i in (0, 7, 42)]
    for seed in seeds:
        r = client.get("/v1/recommendations", params={"seed": seed, "k": 6})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == 2 and body["seed"] == seed and body["mode"] == "complete"
        want = engine.recommend(seed, k=6)
        assert ids(body["recommendations"]) == [x.item_id for x in want]
        assert body["recommendations"][0]["reasons"] == [vars(x) for x in want[0].reasons]
    r = client.post(
        "/v1/recommendations/batch",
        json={"requests": [{"seed": s, "exclude": [seeds[0]]} for s in seeds], "k": 4},
    )
    assert r.status_code == 200, r.text
    want_batch = engine.recommend_batch(seeds, k=4, exclude=[[seeds[0]]] * 3)
    got = [ids(x["recommendations"]) for x in r.json()["results"]]
    assert got == [[x.item_id for x in recs] for recs in want_batch]


def test_unknown_seed_and_user_are_served(client: TestClient, engine: Engine) -> None:
    r = client.get("/v1/recommendations", params={"seed": "no-such-item", "user": "nobody"})
    assert r.status_code == 200, r.text
    recs = r.json()["recommendations"]
    assert len(recs) == 10
    assert ids(recs) == [x.item_id for x in engine.recommend("no-such-item", k=10)]
    r = client.post("/v1/recommendations/basket", json={"items": ["x-1", "x-2"], "user": "u?"})
    assert r.status_code == 200 and len(r.json()["recommendations"]) == 10


def test_request_time_reaches_the_engine(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, object]] = []
    for name in ("recommend", "recommend_basket", "recommend_batch"):
        original = getattr(Engine, name)

        def spy(self, *args, _name=name, _original=original, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            seen.append((_name, kw.get("at")))
            return _original(self, *args, **kw)

        monkeypatch.setattr(Engine, name, spy)
    seed = str(engine.items.id_of(0))
    r = client.get("/v1/recommendations", params={"seed": seed, "at": 1_500_000_000})
    assert r.status_code == 200, r.text
    body = {"items": [seed], "at": 1_500_000_001}
    assert client.post("/v1/recommendations/basket", json=body).status_code == 200
    body = {"requests": [{"seed": seed}], "at": 1_500_000_002}
    assert client.post("/v1/recommendations/batch", json=body).status_code == 200
    assert client.get("/v1/recommendations", params={"seed": seed}).status_code == 200
    assert ("recommend", 1_500_000_000) in seen
    assert ("recommend_basket", 1_500_000_001) in seen
    assert ("recommend_batch", 1_500_000_002) in seen
    assert seen[-1] == ("recommend", None)  # no time given: the engine's now
    r = client.get("/v1/recommendations", params={"seed": seed, "at": -1})
    assert r.status_code == 422 and "at" in r.text


def test_basket_never_returns_cart_or_excluded(client: TestClient, engine: Engine) -> None:
    cart = [str(engine.items.id_of(i)) for i in (3, 4, 8)]
    plain = engine.recommend_basket(cart, k=5)
    banned = [plain[0].item_id, plain[2].item_id]
    r = client.post("/v1/recommendations/basket", json={"items": cart, "k": 5, "exclude": banned})
    assert r.status_code == 200, r.text
    got = ids(r.json()["recommendations"])
    assert len(got) == 5 and not set(got) & set(cart + banned)
    assert (
        got
        == [x.item_id for x in engine.recommend_basket(cart, k=7) if x.item_id not in banned][:5]
    )


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("get", "/v1/recommendations", {"seed": "a", "k": 0}, "k (query)"),
        ("get", "/v1/recommendations", {"seed": "a", "k": MAX_K + 1}, "k (query)"),
        ("get", "/v1/recommendations", {"seed": "a" * (MAX_ID_LENGTH + 1)}, "seed (query)"),
        ("get", "/v1/recommendations", {"k": 3}, "seed (query)"),
        ("get", "/v1/recommendations", {"seed": "a", "mode": "surprise"}, "mode (query)"),
        ("post", "/v1/recommendations/basket", {"items": []}, "items (body)"),
        ("post", "/v1/recommendations/basket", {"items": ["a"] * (MAX_BASKET + 1)}, "items (body)"),
        ("post", "/v1/recommendations/basket", {"items": ["a"], "colour": 1}, "colour (body)"),
        (
            "post",
            "/v1/recommendations/basket",
            {"items": ["a"], "exclude": ["b"] * (MAX_EXCLUDE + 1)},
            "exclude (body)",
        ),
        (
            "post",
            "/v1/recommendations/batch",
            {"requests": [{"seed": "a"}] * (MAX_BATCH + 1)},
            "requests (body)",
        ),
        ("post", "/v1/recommendations/batch", {"requests": [{"seed": ""}]}, "requests.0.seed"),
    ],
)
def test_bounds_answer_422_naming_the_field(
    client: TestClient, method: str, path: str, payload: dict[str, Any], field: str
) -> None:
    if method == "get":
        r = client.get(path, params=payload)
    else:
        r = client.post(path, json=payload)
    assert r.status_code == 422, r.text
    assert field in r.json()["message"], r.json()


def test_body_too_large_is_413(client: TestClient) -> None:
    body = json.dumps({"items": ["a"], "user": "u" * 300_000})
    r = client.post(
        "/v1/recommendations/basket", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_explain_and_item_lookup(client: TestClient, engine: Engine) -> None:
    seed = str(engine.items.id_of(5))
    r = client.get("/v1/explain", params={"seed": seed, "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["known"] and body["precomputed"] and len(body["candidates"]) == 4
    assert ids(body["candidates"]) == [x.item_id for x in engine.recommend(seed, k=4)]
    r = client.get(f"/v1/items/{seed}")
    assert r.status_code == 200
    assert r.json()["served"] and r.json()["available"] and r.json()["catalog"]["item_id"] == seed
    r = client.get("/v1/items/no-such-item")
    assert r.status_code == 404 and "no-such-item" in r.json()["detail"]
    r = client.get("/v1/items/sku/with-slash")  # ids may hold "/"
    assert r.status_code == 404 and "'sku/with-slash'" in r.json()["detail"]


def test_the_lists_are_memory_mapped(engine: Engine) -> None:
    # what lets several worker processes share one copy of the lists (the page cache)
    lists = engine.mixer.lists
    assert lists is not None and isinstance(lists.item, np.memmap)
    assert isinstance(lists.score, np.memmap)


def test_metrics_count_requests_per_route(store: Path) -> None:
    app = create_app(EngineHolder(str(store)), poll_interval=0)
    with TestClient(app) as client:
        _count_requests(client)


def _count_requests(client: TestClient) -> None:
    for seed in ("a", "b", "c"):
        client.get("/v1/recommendations", params={"seed": seed})
    client.get("/v1/recommendations", params={"seed": "a", "k": 0})
    client.get("/v1/items/zz-unknown")
    text = client.get("/metrics").text
    route = "/v1/recommendations"
    assert (
        metric(text, "recset_http_requests_total", endpoint=route, method="GET", status="200") == 3
    )
    assert (
        metric(text, "recset_http_requests_total", endpoint=route, method="GET", status="422") == 1
    )
    assert (
        metric(
            text,
            "recset_http_requests_total",
            endpoint="/v1/items/{item_id:path}",
            method="GET",
            status="404",
        )
        == 1
    )
    assert metric(text, "recset_http_request_duration_seconds_count", endpoint=route) == 4
    assert metric(text, "recset_engine_version", artifact="engine", version="2") == 1
    assert metric(text, "recset_reloads_total") == 1


def test_reload_swaps_and_refuses_a_broken_version(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = EngineHolder(str(store))
    app = create_app(holder, poll_interval=0, admin_token=TOKEN)
    with TestClient(app) as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/admin/reload").status_code == 403
        assert c.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
        activate(store, 1)  # roll back
        assert holder.refresh().outcome == "loaded"
        assert c.get("/v1/recommendations", params={"seed": "a"}).json()["version"] == 1
        broken = save_broken_engine(store)
        with caplog.at_level(logging.ERROR, logger="recset.serve"):
            r = c.post("/admin/reload", headers=auth)
        assert r.status_code == 409 and r.json()["outcome"] == "refused", r.text
        assert r.json()["versions"]["engine"] == broken and r.json()["serving"]["engine"] == 1
        assert (
            f"refused engine v{broken}" in caplog.text and "still serving engine v1" in caplog.text
        )
        assert holder.refresh().outcome == "already_refused"  # not retried at every poll
        assert c.get("/v1/recommendations", params={"seed": "a"}).json()["version"] == 1
        assert c.get("/readyz").json()["versions"] == {"engine": 1}
        text = c.get("/metrics").text
        assert metric(text, "recset_reload_failures_total") == 1
        assert metric(text, "recset_engine_version", artifact="engine", version="1") == 1
        assert metric(text, "recset_engine_version", artifact="engine", version="2") == 0
        activate(store, 2)
        r = c.post("/admin/reload", headers=auth)
        assert r.status_code == 200 and r.json()["serving"] == {"engine": 2}


def test_smoke_check_refusal_keeps_the_old_engine(store: Path) -> None:
    calls = {"n": 0}

    def check(engine: Engine) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise SmokeCheckError("planted failure")

    holder = EngineHolder(str(store), check=check)
    first = holder.start()
    activate(store, 1)
    result = holder.refresh()
    assert result.outcome == "refused" and "planted failure" in result.message
    assert holder.served is first and holder.served.version == 2
    holder.close()


def test_a_store_without_engine_cannot_start(tmp_path: Path) -> None:
    from recset.storage import Store

    Store.open(tmp_path / "empty").close()
    app = create_app(EngineHolder(str(tmp_path / "empty")), poll_interval=0)
    with pytest.raises(Exception, match="no active engine"), TestClient(app):
        pass


def test_admin_endpoint_disabled_without_token(store: Path) -> None:
    with TestClient(create_app(EngineHolder(str(store)), poll_interval=0)) as c:
        r = c.post("/admin/reload", headers={"Authorization": "Bearer "})
        assert r.status_code == 404 and "RECSET_ADMIN_TOKEN" in r.json()["detail"]


class _ModeEngine(Engine):
    """An engine with wt-disc's ``mode=`` (recording what it was asked)."""

    modes: list[str]

    def recommend(  # type: ignore[override]
        self,
        seed_item: str,
        user: str | None = None,
        k: int = 10,
        exclude=(),
        mode="complete",  # noqa: ANN001
    ) -> Any:
        self.modes.append(mode)
        return super().recommend(seed_item, user, k, exclude)

    def recommend_batch(  # type: ignore[override]
        self,
        seed_ids,
        users=None,
        k=10,
        exclude=None,
        mode="complete",  # noqa: ANN001
    ) -> Any:
        self.modes.append(mode)
        return super().recommend_batch(seed_ids, users, k, exclude)


def test_mode_passes_discover_only_to_an_engine_that_has_it(
    built_store: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = built_store
    r = client.get("/v1/recommendations", params={"seed": "a", "mode": "discover"})
    assert r.status_code == 422 and "mode (query): mode 'discover' is not" in r.json()["message"]
    real = Engine.load(store)
    fake = _ModeEngine.__new__(_ModeEngine)
    fake.__dict__.update(real.__dict__)
    fake.modes = []
    monkeypatch.setattr(Engine, "load", lambda *a, **kw: fake)
    # the fake stands in for an engine whose ranker has a discovery model
    monkeypatch.setattr("recset.serve._holder._supports_mode", lambda engine: True)
    with TestClient(create_app(EngineHolder(str(store)), poll_interval=0)) as c:
        fake.modes.clear()
        assert (
            c.get("/v1/recommendations", params={"seed": "a", "mode": "discover"}).status_code
            == 200
        )
        assert fake.modes[0] == "discover"
        fake.modes.clear()
        r = c.post(
            "/v1/recommendations/batch", json={"requests": [{"seed": "a"}], "mode": "complete"}
        )
        assert r.status_code == 200 and fake.modes == ["complete"]  # the engine's default


def test_openapi_document_is_committed() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == openapi_document(), (
        "docs/openapi.json is stale: regenerate it with "
        "`recset serve --openapi > docs/openapi.json`"
    )
