"""The contract, through the real app over real HTTP, on a real watched folder."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from sessiond.core.folder import Folder
from sessiond.core.names import file_name_for as file_name
from tests.support import AUTH, eventually, store_of, write_atomic

KEYS = [
    "api:a3f9c2e8b1d4",
    "user:alice:project-planning",
    "cli:default",
    "telegram:123456789",
    "discord:987654321",
    "slack:U01234ABCDE",
    "mail:bob@example.com",
    "dotted.key.v2",
    "path/with/slashes",
    "with space and: colon",
    "unicode:Zoë-日本語",
    "events",
    "x/../y",
]


async def detail(client: TestClient, key: str) -> tuple[int, dict]:
    resp = await client.get("/api/v1/sessions/" + quote(key, safe=""), headers=AUTH)
    return resp.status, await resp.json()


async def test_list_shape_sorted_and_headers(client: TestClient, sessions: Path) -> None:
    for key in KEYS:
        write_atomic(sessions, key)
    await eventually(lambda: len(store_of(client).index) == len(KEYS))
    resp = await client.get("/api/v1/sessions", headers={**AUTH, "X-Request-ID": "req-42"})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Request-ID"] == "req-42"
    assert await resp.json() == {"sessions": sorted(KEYS), "count": len(KEYS)}


async def test_empty_list(client: TestClient) -> None:
    resp = await client.get("/api/v1/sessions", headers=AUTH)
    assert await resp.json() == {"sessions": [], "count": 0}
    assert len(resp.headers["X-Request-ID"]) >= 16  # made up when not sent


@pytest.mark.parametrize("key", KEYS)
async def test_detail_every_key_form(start_client, sessions: Path, key: str) -> None:
    write_atomic(sessions, key, messages=3, created=time.time() - 100.04, updated=time.time())
    client = await start_client()
    status, body = await detail(client, key)
    assert status == 200, body
    assert set(body) == {"key", "message_count", "created_at", "updated_at", "age_seconds", "version"}
    assert body["key"] == key and body["message_count"] == 3
    assert 99.9 <= body["age_seconds"] <= 101
    assert round(body["age_seconds"], 1) == body["age_seconds"]


async def test_raw_slashes_and_encoded_forms_reach_the_same_key(client: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "a/b c")
    write_atomic(sessions, "lit%2Fkey")
    await eventually(lambda: len(store_of(client).index) == 2)
    for path in ("/api/v1/sessions/a/b%20c", "/api/v1/sessions/a%2Fb%20c", "/api/v1/sessions/a%2fb c".replace(" ", "%20")):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 200, path
        assert (await resp.json())["key"] == "a/b c"
    # decoded exactly once: %252F is the literal text "%2F"
    resp = await client.get("/api/v1/sessions/lit%252Fkey", headers=AUTH)
    assert (await resp.json())["key"] == "lit%2Fkey"


async def test_true_key_is_inside_the_file(client: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "user:alice:x", name="whatever-name.json")
    await eventually(lambda: "user:alice:x" in store_of(client).index)
    status, body = await detail(client, "user:alice:x")
    assert status == 200 and body["key"] == "user:alice:x"
    status, body = await detail(client, "whatever-name")
    assert status == 404 and body == {"detail": "Session not found"}


async def test_not_found_shape(client: TestClient) -> None:
    status, body = await detail(client, "nope:nothing")
    assert status == 404
    assert body == {"detail": "Session not found"}
    resp = await client.delete("/api/v1/sessions/nope", headers=AUTH)
    assert resp.status == 404 and await resp.json() == {"detail": "Session not found"}


async def test_delete_read_your_writes_and_file_gone(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "user:alice:x")
    keep = write_atomic(sessions, "user:bob:y")
    await eventually(lambda: len(store_of(client).index) == 2)
    resp = await client.delete("/api/v1/sessions/user:alice:x", headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == {"deleted": True, "key": "user:alice:x"}
    assert not path.exists() and keep.exists()
    # no waiting: the index knew before the answer
    status, _ = await detail(client, "user:alice:x")
    assert status == 404
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing == {"sessions": ["user:bob:y"], "count": 1}
    resp = await client.delete("/api/v1/sessions/user:alice:x", headers=AUTH)
    assert resp.status == 404


async def test_delete_when_file_already_gone_is_404_and_heals(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "gone:soon")
    await eventually(lambda: "gone:soon" in store_of(client).index)
    store = store_of(client)
    # Remove behind the watcher's back, and apply the delete before the watcher can.
    async with store.lock:
        path.unlink()
        assert "gone:soon" in store.index
    resp = await client.delete("/api/v1/sessions/gone:soon", headers=AUTH)
    if resp.status == 200:  # the watcher won the race after the lock was released
        pytest.fail("the file was already gone; DELETE must answer 404")
    assert resp.status == 404
    assert "gone:soon" not in store.index


async def test_delete_removes_every_file_claiming_the_key(client: TestClient, sessions: Path) -> None:
    a = write_atomic(sessions, "dup", name="dup_a.json", updated=5)
    b = write_atomic(sessions, "dup", name="dup_b.json", updated=9)
    await eventually(lambda: store_of(client).index.collision_count == 1)
    _, body = await detail(client, "dup")
    assert body["updated_at"] == 9
    resp = await client.delete("/api/v1/sessions/dup", headers=AUTH)
    assert resp.status == 200
    assert not a.exists() and not b.exists()
    assert (await detail(client, "dup"))[0] == 404


async def test_live_add_rewrite_and_external_delete(client: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "live:1", messages=1)
    await eventually(lambda: "live:1" in store_of(client).index, timeout=1)
    write_atomic(sessions, "live:1", messages=7)

    async def rewritten() -> bool:
        return (await detail(client, "live:1"))[1].get("message_count") == 7

    await eventually(rewritten, timeout=1)
    (sessions / file_name("live:1")).unlink()
    await eventually(lambda: "live:1" not in store_of(client).index, timeout=1)
    assert (await detail(client, "live:1"))[0] == 404


async def test_visible_within_tens_of_ms(client: TestClient, sessions: Path) -> None:
    # Generous bound for a loaded CI box; the benchmark measures the real figure.
    write_atomic(sessions, "fast:1")
    await eventually(lambda: "fast:1" in store_of(client).index, timeout=1)


async def test_ignored_and_invalid_files(client: TestClient, sessions: Path, tmp_path: Path) -> None:
    (sessions / "half.tmp").write_bytes(b'{"key": "tmp:1", "messages": []}')
    (sessions / ".hidden.json").write_bytes(b'{"key": "hidden:1", "messages": []}')
    (sessions / "notes.txt").write_bytes(b'{"key": "txt:1", "messages": []}')
    (sessions / "sub").mkdir()
    (sessions / "sub" / "nested.json").write_bytes(b'{"key": "nested:1", "messages": []}')
    outside = tmp_path / "outside.json"
    outside.write_bytes(b'{"key": "link:1", "messages": []}')
    (sessions / "link.json").symlink_to(outside)
    (sessions / "array.json").write_bytes(b"[1, 2]")
    (sessions / "empty.json").write_bytes(b"")
    (sessions / "nomsg.json").write_bytes(b'{"key": "nomsg", "messages": 3}')
    (sessions / "nokey.json").write_bytes(b'{"messages": []}')
    write_atomic(sessions, "good:1")
    await eventually(lambda: {"good:1", "hidden:1"} <= set(store_of(client).index.keys()))
    await eventually(
        lambda: {"array.json", "empty.json", "nomsg.json", "nokey.json", "link.json"} <= set(store_of(client).index.invalid)
    )
    listing = await (await client.get("/api/v1/sessions", headers=AUTH)).json()
    assert listing == {"sessions": ["good:1", "hidden:1"], "count": 2}  # a hidden name is a session like any other
    health = await (await client.get("/api/v1/health", headers=AUTH)).json()
    assert health["invalid_files"] == 5
    # an invalid file becomes a session when fixed
    write_atomic(sessions, "nomsg", name="nomsg.json")
    await eventually(lambda: "nomsg" in store_of(client).index)


async def test_half_written_in_place_file_is_retried(client: TestClient, sessions: Path) -> None:
    path = sessions / "chunky.json"
    with path.open("wb") as fh:
        fh.write(b'{"key": "chunky", "messa')
        fh.flush()
        await asyncio.sleep(0.12)  # the watcher sees the half file
        fh.write(b'ges": [1, 2, 3], "created_at": 1, "updated_at": 2}')
    await eventually(lambda: "chunky" in store_of(client).index, timeout=2)
    assert store_of(client).index.get("chunky").message_count == 3
    assert "chunky.json" not in store_of(client).index.invalid


async def test_files_written_during_the_scan_are_seen(start_client, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(50):
        write_atomic(sessions, f"pre:{i}")
    from sessiond.live import store as store_mod

    original = store_mod._names_in

    def slow_listing(folder: Folder, others: list[str] | None) -> list[str]:
        names = original(folder, others)
        # a write lands after the scan listed the folder, before it is indexed
        write_atomic(Path(folder.path), "during:scan")
        os.unlink(os.path.join(folder.path, file_name("pre:0")))
        return names

    monkeypatch.setattr(store_mod, "_names_in", slow_listing)
    client = await start_client()
    await eventually(lambda: "during:scan" in store_of(client).index, timeout=2)
    await eventually(lambda: "pre:0" not in store_of(client).index, timeout=2)
    assert len(store_of(client).index) == 50


async def test_files_written_during_a_restart_from_the_snapshot_are_seen(
    start_client, sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on a restart: there the scan lists the folder, stats its files
    (_idents_of) and trusts the snapshot for what did not change."""
    from sessiond.live import store as store_mod
    from tests.support import later, open_store

    state = tmp_path / "state"
    state.mkdir()
    for i in range(50):
        write_atomic(sessions, f"pre:{i}")
    first = open_store(sessions, snapshot_path=state / "index.snapshot")
    await first.scan()
    await first.save_snapshot()
    later(state / "index.snapshot")  # every file then lies outside the window of times too close to it
    original = store_mod._idents_of

    def slow_walk(folder: Folder, names: list[str]) -> dict[str, int]:
        idents = original(folder, names)
        write_atomic(Path(folder.path), "during:scan")
        os.unlink(os.path.join(folder.path, file_name("pre:0")))
        return idents

    monkeypatch.setattr(store_mod, "_idents_of", slow_walk)
    client = await start_client(state_dir=str(state))
    assert store_of(client).last_scan_counts[1] > 0  # it did restart from the snapshot
    await eventually(lambda: "during:scan" in store_of(client).index, timeout=2)
    await eventually(lambda: "pre:0" not in store_of(client).index, timeout=2)
    assert len(store_of(client).index) == 50


async def test_health_public_and_api_health(client: TestClient) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    resp = await client.get("/api/v1/health")
    assert resp.status == 401
    body = await (await client.get("/api/v1/health", headers=AUTH)).json()
    assert body["status"] == "ok" and body["sessions"] == 0 and "version" in body and "uptime_seconds" in body


async def test_health_503_while_starting(aiohttp_client, make_settings, sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sessiond.app import create_app
    from sessiond.live import store as store_mod

    gate = asyncio.Event()
    original = store_mod.SessionStore.scan

    async def held_scan(self, progress=None):  # type: ignore[no-untyped-def]
        await gate.wait()
        await original(self, progress)

    monkeypatch.setattr(store_mod.SessionStore, "scan", held_scan)
    client = await aiohttp_client(create_app(make_settings()))
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["reason"].startswith("starting")
    gate.set()

    async def healthy() -> bool:
        return (await client.get("/health")).status == 200

    await eventually(healthy)


async def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    resp = await client.get("/api/v1/nothing-here", headers=AUTH)
    assert resp.status == 404 and await resp.json() == {"detail": "Not Found"}
    resp = await client.post("/api/v1/sessions", headers=AUTH)
    assert resp.status == 405 and (await resp.json())["detail"] == "Method Not Allowed"
    assert "GET" in resp.headers["Allow"]
    resp = await client.put("/api/v1/sessions/x", headers=AUTH)
    assert resp.status == 405 and "detail" in await resp.json()
    assert resp.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/sessions/../../etc/passwd",
        "/api/v1/sessions/%2e%2e%2f%2e%2e%2fworkspace",
        "/api/v1/sessions/..%5C..%5Cx",
        "/api/v1/sessions/%252e%252e%252fx",
        "/api/v1/sessions/a%00b",
        "/api/v1/sessions/%ff%fe",
        "/api/v1/sessions/" + "k" * 5000,
    ],
)
async def test_hostile_keys_are_4xx_and_touch_nothing(client: TestClient, workspace: Path, tmp_path: Path, path: str) -> None:
    canary = tmp_path / "canary.json"
    canary.write_text('{"key": "../canary", "messages": []}')
    (workspace / "sibling.json").write_text('{"key": "sibling", "messages": []}')
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for method in ("GET", "DELETE"):
        resp = await client.request(method, path, headers=AUTH)
        assert 400 <= resp.status < 500, (method, path, resp.status)
        body = await resp.json()
        assert "detail" in body and str(tmp_path) not in body["detail"]
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


async def test_list_etag_and_304(client: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "e:1")
    await eventually(lambda: "e:1" in store_of(client).index)
    first = await client.get("/api/v1/sessions", headers=AUTH)
    etag = first.headers["ETag"]
    again = await client.get("/api/v1/sessions", headers={**AUTH, "If-None-Match": etag})
    assert again.status == 304 and await again.read() == b"" and again.headers["ETag"] == etag
    write_atomic(sessions, "e:2")
    await eventually(lambda: "e:2" in store_of(client).index)
    changed = await client.get("/api/v1/sessions", headers={**AUTH, "If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await changed.json())["count"] == 2
