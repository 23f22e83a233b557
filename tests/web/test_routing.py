"""The routing rule: below /api/v1/sessions/ every path is a session key, whatever it is named."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from tests.support import AUTH, eventually, store_of, write_atomic

NAMED_LIKE_ROUTES = [
    "events",
    "export",
    "delete",
    "x/restore",
    "trash",
    "trash:restore",
    "sessions:batchDelete",
    ":batchDelete",
    "openapi.json",
    "api/v1/events",
    "health",
    "metrics",
    "x?limit=1",
    "a:b/export",
]


@pytest.mark.parametrize("key", NAMED_LIKE_ROUTES)
async def test_sessions_named_like_routes_answer_get_and_delete(client: TestClient, sessions: Path, key: str) -> None:
    write_atomic(sessions, key, messages=2)
    await eventually(lambda: key in store_of(client).index)
    path = "/api/v1/sessions/" + quote(key, safe="/:")
    resp = await client.get(path, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["key"] == key
    resp = await client.delete(path, headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"deleted": True, "key": key}
    assert key not in store_of(client).index


async def test_custom_methods_beside_the_collection(client: TestClient) -> None:
    # the router tells the collection, its custom method and the key space apart
    assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
    resp = await client.post("/api/v1/sessions:batchDelete", json={"keys": ["x"]}, headers=AUTH)
    assert resp.status == 200
    for method, path in [
        ("POST", "/api/v1/sessions"),
        ("GET", "/api/v1/sessions:batchDelete"),
        ("DELETE", "/api/v1/sessions:batchDelete"),
        ("POST", "/api/v1/sessions/x:batchDelete"),
        ("DELETE", "/api/v1/events"),
        ("GET", "/api/v1/trash:restore"),
    ]:
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status == 405, (method, path)
        assert "detail" in await resp.json()


async def test_every_key_the_contract_allows_is_reachable(client: TestClient, sessions: Path) -> None:
    # 4000 characters of 3-byte UTF-8 are 36 KB percent-encoded: far over aiohttp's
    # default 8 KiB request line, which would answer in plain text before any middleware.
    key = "日本語" * 1333 + "x"
    write_atomic(sessions, key, name="long.json")
    await eventually(lambda: key in store_of(client).index)
    path = "/api/v1/sessions/" + quote(key, safe="")
    resp = await client.get(path, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["key"] == key
    resp = await client.get("/api/v1/export", params={"key": key}, headers=AUTH)
    assert resp.status == 200
    assert (await client.delete(path, headers=AUTH)).status == 200
    resp = await client.get("/api/v1/sessions/" + quote("é" * 4097, safe=""), headers=AUTH)
    assert resp.status == 400 and "detail" in await resp.json()


async def test_every_route_has_a_policy_and_an_openapi_entry(client) -> None:
    from sessiond.web.routes import ROUTES, UNMATCHED, UNMATCHED_PATH, canonical

    spec = await (await client.get("/api/v1/openapi.json", headers=AUTH)).json()
    table = {(route.method, canonical(route.path)) for route in ROUTES}
    registered = {
        (route.method, route.resource.canonical)
        for route in client.server.app.router.routes()  # type: ignore[union-attr]
        if route.method != "HEAD" and route.resource is not None
    }
    # Nothing registered past the table but the route of unknown paths, nothing in it left out.
    assert registered == table | {("*", canonical(UNMATCHED_PATH))}
    for method, path in table:
        assert method.lower() in spec["paths"].get(path, {}), (method, path)
    assert UNMATCHED.needs_whole_index and UNMATCHED.rate_limited  # the strictest, for unknown paths
