"""Nothing before the whole truth: until the first index is whole, every API route answers 503.

Never a partial list, never a 404 for a file on disk: on a cold start, on a
restart from the snapshot, behind whatever sends requests the moment the
socket opens. The probes keep answering and say why.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sessiond.app import create_app
from sessiond.web.appkeys import WATCHER
from tests.support import AUTH, TOKEN, Daemon, eventually, session_doc, write_atomic, write_big_session

# Every API route but /api/v1/health and the OpenAPI document, with a request it can take.
ROUTES = [
    ("GET", "/api/v1/sessions", None),
    ("GET", "/api/v1/sessions?prefix=s:&limit=5", None),
    ("GET", "/api/v1/sessions/s:1", None),
    ("DELETE", "/api/v1/sessions/nobody", None),
    ("POST", "/api/v1/sessions:batchDelete", {"keys": ["nobody"], "dry_run": True}),
    ("GET", "/api/v1/export?key=s:1", None),
    ("GET", "/api/v1/export?prefix=s:", None),
    ("GET", "/api/v1/trash", None),
    ("POST", "/api/v1/trash:restore", {"keys": ["nobody"]}),
    ("GET", "/api/v1/events", None),
]


async def test_every_api_route_answers_503_until_the_first_index_is_whole(
    aiohttp_client: Any, make_settings: Any, sessions: Path, held_first_scan: asyncio.Event
) -> None:
    gate = held_first_scan
    for i in range(3):
        write_atomic(sessions, f"s:{i}")
    client = await aiohttp_client(create_app(make_settings(trash_days=1)))
    for method, path, body in ROUTES:
        resp = await client.request(method, path, json=body, headers=AUTH)
        assert resp.status == 503, (method, path, resp.status)
        assert resp.headers["Retry-After"] == "1" and resp.headers["Cache-Control"] == "no-store"
        assert (await resp.json())["detail"].startswith("Service unavailable: starting"), path
    # Unauthenticated clients learn nothing more than before; the probes say why.
    assert (await client.get("/api/v1/sessions")).status == 401
    health = await client.get("/health")
    assert health.status == 503 and (await health.json())["reason"].startswith("starting")
    assert (await client.get("/api/v1/health", headers=AUTH)).status == 503
    assert (await client.get("/api/v1/openapi.json", headers=AUTH)).status == 200
    assert (await client.get("/livez")).status == 200
    gate.set()
    await eventually(client.server.app[WATCHER].ready.is_set)  # type: ignore[union-attr]
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing == {"sessions": ["s:0", "s:1", "s:2"], "count": 3}


def fill(folder: Path, count: int) -> None:
    """*count* small sessions, plus one big one that takes its parse child a while."""
    for i in range(count):
        (folder / f"s_{i}.json").write_bytes(json.dumps(session_doc(f"s:{i}", messages=2)).encode())
    write_big_session(folder / "big.json", 40 * 1024 * 1024, key="big:1")


def hammer(d: Daemon, expected: int, keys: list[str], seconds: float = 30) -> list[tuple[str, int, dict[str, str], bytes]]:
    """Ask from the moment the socket accepts until a whole list comes back; every answer kept."""
    answers: list[tuple[str, int, dict[str, str], bytes]] = []
    deadline = time.monotonic() + seconds
    conn: http.client.HTTPConnection | None = None
    paths = ["/api/v1/sessions", *(f"/api/v1/sessions/{key}" for key in keys)]
    i = 0
    while time.monotonic() < deadline:
        path = paths[i % len(paths)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
            conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            resp = conn.getresponse()
            answers.append((path, resp.status, dict(resp.headers), resp.read()))
        except (ConnectionError, http.client.HTTPException, OSError):
            conn = None
            time.sleep(0.005)
            continue
        last = answers[-1]
        if last[0] == "/api/v1/sessions" and last[1] == 200 and json.loads(last[3])["count"] == expected:
            break
    if conn is not None:
        conn.close()
    return answers


def check_no_partial_truth(answers: list[tuple[str, int, dict[str, str], bytes]], expected: int) -> int:
    """Every answer is a 503 with Retry-After and a detail, or the whole truth; returns the 503s."""
    refused = 0
    for path, status, headers, body in answers:
        if status == 503:
            refused += 1
            assert headers.get("Retry-After") and json.loads(body)["detail"], (path, headers, body)
            continue
        assert status == 200, (path, status, body)  # never a 404 for a session on disk
        if path == "/api/v1/sessions":
            assert json.loads(body)["count"] == expected, "a partial list"
    return refused


@pytest.mark.slow
def test_a_cold_start_and_a_restart_answer_503_never_a_partial_truth(workspace: Path, tmp_path: Path) -> None:
    folder = workspace / "sessions"
    fill(folder, 3000)
    expected = 3001
    keys = ["s:0", "s:2999", "big:1"]
    state = tmp_path / "state"
    state.mkdir()
    env = {"SESSIOND_STATE_DIR": str(state), "SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    with Daemon(workspace, env=env) as d:
        answers = hammer(d, expected, keys)
        refused = check_no_partial_truth(answers, expected)
        assert refused > 0, "the start was too quick to catch; nothing was checked"
        assert d.stop() == 0
    os.utime(folder / "big.json")  # changed while down: the restart must read it again
    with Daemon(workspace, env=env) as d:
        answers = hammer(d, expected, keys)
        refused = check_no_partial_truth(answers, expected)
        assert refused > 0, "the restart was too quick to catch; nothing was checked"
        assert d.stop() == 0
