"""The headers the agent's own API sends on every response, and its wording for generic errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.support import AUTH, eventually, store_of, write_atomic

REQUESTS = [
    ("GET", "/api/v1/sessions", AUTH, 200, True),
    ("GET", "/api/v1/sessions/a:1", AUTH, 200, True),
    ("GET", "/api/v1/sessions/nobody", AUTH, 404, True),
    ("GET", "/api/v1/sessions", {}, 401, True),
    ("GET", "/api/v1/nothing-here", AUTH, 404, True),
    ("PUT", "/api/v1/sessions", AUTH, 405, True),
    ("GET", "/api/v1/sessions?limit=0", AUTH, 400, True),
    ("GET", "/health", {}, 200, True),
    ("GET", "/api/v1/export?key=a:1", AUTH, 200, True),
    ("HEAD", "/api/v1/export?key=a:1", AUTH, 200, True),
    ("GET", "/api/v1/export?prefix=a", AUTH, 200, False),  # NDJSON, streamed from inside its handler
    ("GET", "/api/v1/export?key=a:1&format=markdown", AUTH, 200, False),
    ("DELETE", "/api/v1/sessions/nobody", AUTH, 404, True),
    ("GET", "/metrics", AUTH, 200, False),
]


@pytest.mark.parametrize(("method", "path", "headers", "status", "is_json"), REQUESTS)
async def test_every_response_carries_the_agents_security_headers(
    client: TestClient, sessions: Path, method: str, path: str, headers: dict, status: int, is_json: bool
) -> None:
    write_atomic(sessions, "a:1")
    await eventually(lambda: "a:1" in store_of(client).index)
    resp = await client.request(method, path, headers=headers)
    assert resp.status == status
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    if is_json:
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'"
    await resp.read()


async def test_generic_errors_use_the_agents_wording(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here", headers=AUTH)
    assert await resp.json() == {"detail": "Not Found"}
    resp = await client.put("/api/v1/sessions", headers=AUTH)
    assert await resp.json() == {"detail": "Method Not Allowed"} and "GET" in resp.headers["Allow"]
    resp = await client.get("/api/v1/sessions/nobody", headers=AUTH)
    assert await resp.json() == {"detail": "Session not found"}  # the seed's own wording stays


async def test_an_event_stream_carries_them_too(client: TestClient) -> None:
    resp = await client.get("/api/v1/events", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["X-Frame-Options"] == "DENY"
    resp.close()
