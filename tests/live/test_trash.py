"""The opt-in trash: DELETE moves, restore brings back, the purge forgets. Real app, real files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond.web.appkeys import TRASH
from tests.support import AUTH, eventually, store_of, write_atomic


@pytest.fixture
async def trashy(start_client: Any) -> TestClient:
    return await start_client(trash_days=7)


def trash_of(client: TestClient) -> Any:
    return client.server.app[TRASH]  # type: ignore[union-attr]


async def listing(client: TestClient) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/trash", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["count"] == len(body["items"])
    return body["items"]


async def restore(client: TestClient, body: Any) -> tuple[int, dict]:
    resp = await client.post("/api/v1/trash:restore", json=body, headers=AUTH)
    return resp.status, await resp.json()


async def test_off_by_default_delete_is_permanent(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "a:1")
    await eventually(lambda: "a:1" in store_of(client).index)
    assert (await client.delete("/api/v1/sessions/a:1", headers=AUTH)).status == 200
    assert not path.exists() and not (sessions / ".trash").exists()
    for resp in (
        await client.get("/api/v1/trash", headers=AUTH),
        await client.post("/api/v1/trash:restore", json={"keys": ["a:1"]}, headers=AUTH),
    ):
        assert resp.status == 404 and "trash_days" in (await resp.json())["detail"]


async def test_delete_moves_to_trash_keeping_bytes_and_true_key(trashy: TestClient, sessions: Path) -> None:
    key = "user:alice/project x"  # its file name, user_alice_project_x.json, cannot give the key back
    path = write_atomic(sessions, key, messages=4, created=123.0)
    original = path.read_bytes()
    await eventually(lambda: key in store_of(trashy).index)
    resp = await trashy.delete("/api/v1/sessions/user:alice/project%20x", headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"deleted": True, "key": key}
    assert not path.exists() and key not in store_of(trashy).index
    (entry,) = await listing(trashy)
    assert entry["key"] == key and entry["message_count"] == 4 and entry["created_at"] == 123.0
    assert entry["size"] == len(original)
    assert entry["purge_at"] == pytest.approx(entry["deleted_at"] + 7 * 86400)
    assert abs(entry["deleted_at"] - time.time()) < 60
    assert (sessions / ".trash" / (entry["id"] + ".json")).read_bytes() == original
    # the hidden folder is not sessions
    assert len(store_of(trashy).index) == 0 and not store_of(trashy).index.invalid

    status, body = await restore(trashy, {"keys": [key]})
    assert status == 200 and body == {"restored": [{"key": key, "id": entry["id"]}], "failed": []}
    assert path.read_bytes() == original
    assert store_of(trashy).index.get(key).message_count == 4  # indexed before the answer
    assert await listing(trashy) == []


async def test_two_versions_of_one_key(trashy: TestClient, sessions: Path) -> None:
    for messages in (1, 2):
        write_atomic(sessions, "k", messages=messages)
        await eventually(lambda m=messages: getattr(store_of(trashy).index.get("k"), "message_count", 0) == m)
        assert (await trashy.delete("/api/v1/sessions/k", headers=AUTH)).status == 200
    newer, older = await listing(trashy)
    assert newer["key"] == older["key"] == "k" and newer["deleted_at"] >= older["deleted_at"]
    assert (newer["message_count"], older["message_count"]) == (2, 1)

    _, body = await restore(trashy, {"keys": ["k"]})
    assert body["restored"] == [{"key": "k", "id": newer["id"]}]
    assert store_of(trashy).index.get("k").message_count == 2
    _, body = await restore(trashy, {"ids": [older["id"]]})
    assert body == {"restored": [], "failed": [{"id": older["id"], "reason": "A session with this key exists; delete it first"}]}
    assert (await trashy.delete("/api/v1/sessions/k", headers=AUTH)).status == 200
    _, body = await restore(trashy, {"ids": [older["id"]]})
    assert body["restored"] == [{"key": "k", "id": older["id"]}]
    assert store_of(trashy).index.get("k").message_count == 1


async def test_restore_never_overwrites_a_file_of_the_same_name(trashy: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "a:b")
    await eventually(lambda: "a:b" in store_of(trashy).index)
    await trashy.delete("/api/v1/sessions/a:b", headers=AUTH)
    write_atomic(sessions, "a/b")  # same lossy file name, a_b.json
    await eventually(lambda: "a/b" in store_of(trashy).index)
    status, body = await restore(trashy, {"keys": ["a:b"]})
    assert status == 200 and body["restored"] == []
    assert body["failed"] == [{"key": "a:b", "reason": "Another session file has its file name; delete or rename that first"}]
    assert "a/b" in store_of(trashy).index and len(await listing(trashy)) == 1


async def test_collision_and_batch_delete_trash_every_file(trashy: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "dup", name="dup_a.json", updated=5)
    write_atomic(sessions, "dup", name="dup_b.json", updated=9)
    write_atomic(sessions, "other")
    await eventually(lambda: store_of(trashy).index.collision_count == 1 and "other" in store_of(trashy).index)
    resp = await trashy.post("/api/v1/sessions:batchDelete", json={"keys": ["dup", "other"]}, headers=AUTH)
    assert (await resp.json())["deleted"] == ["dup", "other"]
    items = await listing(trashy)
    assert sorted(i["key"] for i in items) == ["dup", "dup", "other"]
    assert not list(sessions.glob("*.json"))
    await restore(trashy, {"keys": ["dup"]})
    assert store_of(trashy).index.get("dup") is not None and len(await listing(trashy)) == 2


async def test_restore_what_is_not_there(trashy: TestClient) -> None:
    status, body = await restore(trashy, {"keys": ["never"], "ids": ["../../etc/passwd", "0" * 24]})
    assert status == 200 and body["restored"] == []
    assert [f["reason"] for f in body["failed"]] == ["Not in the trash"] * 3


@pytest.mark.parametrize(
    ("body", "param"), [({}, "keys"), ({"keys": []}, "keys"), ({"ids": [1]}, "ids"), ({"key": "a"}, "key"), ("a", "body")]
)
async def test_restore_bad_bodies(trashy: TestClient, body: Any, param: str) -> None:
    status, answer = await restore(trashy, body)
    assert status == 400 and answer["parameter"] == param


async def test_purge_after_retention(trashy: TestClient, sessions: Path) -> None:
    write_atomic(sessions, "old")
    await eventually(lambda: "old" in store_of(trashy).index)
    await trashy.delete("/api/v1/sessions/old", headers=AUTH)
    trash = trash_of(trashy)
    assert trash.purge(store_of(trashy).folder, time.time()) == 0
    (sessions / ".trash" / "stray.txt").write_text("not ours")
    assert trash.purge(store_of(trashy).folder, time.time() + 7 * 86400 + 1) == 1
    assert await listing(trashy) == []
    assert [p.name for p in (sessions / ".trash").iterdir()] == ["stray.txt"]


async def test_purge_task_runs_in_the_background(start_client: Any, sessions: Path) -> None:
    client = await start_client(trash_days=1 / 86400)  # one second
    write_atomic(sessions, "brief")
    await eventually(lambda: "brief" in store_of(client).index)
    await client.delete("/api/v1/sessions/brief", headers=AUTH)
    assert len(await listing(client)) == 1
    await eventually(lambda: not any((sessions / ".trash").iterdir()), timeout=5)


async def test_a_trashed_session_can_be_read_before_it_is_restored(trashy: TestClient, sessions: Path) -> None:
    """GET /api/v1/trash/{id}: the trashed file as stored (NaN and all), like export; never a path."""
    path = write_atomic(sessions, "tg:x", messages=3)
    path.write_bytes(path.read_bytes()[:-1] + b', "score": NaN}')
    original = path.read_bytes()
    await eventually(lambda: "tg:x" in store_of(trashy).index and store_of(trashy).index.get("tg:x").size == len(original))
    assert (await trashy.delete("/api/v1/sessions/tg:x", headers=AUTH)).status == 200
    (entry,) = await listing(trashy)
    assert (await trashy.get(f"/api/v1/trash/{entry['id']}")).status == 401
    resp = await trashy.get(f"/api/v1/trash/{entry['id']}", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert await resp.read() == original
    assert "tg_x.json" in resp.headers["Content-Disposition"]
    assert (await listing(trashy))[0]["id"] == entry["id"]  # reading restores nothing
    for unknown in ("0" * 24, "..", "..%2F..%2Fsessions", "%2e%2e", "x" * 5000):
        resp = await trashy.get(f"/api/v1/trash/{unknown}", headers=AUTH)
        body = await resp.json()
        assert resp.status == 404 and body["detail"] in ("Not in the trash", "Not Found"), unknown
        assert str(sessions) not in body["detail"]


async def test_reading_a_trashed_session_when_the_trash_is_off_says_so(client: TestClient) -> None:
    resp = await client.get("/api/v1/trash/" + "0" * 24, headers=AUTH)
    assert resp.status == 404 and "trash_days" in (await resp.json())["detail"]


async def test_a_trashed_file_over_max_file_bytes_is_refused_not_read(start_client: Any, sessions: Path) -> None:
    client = await start_client(trash_days=7, max_file_bytes=2048)
    write_atomic(sessions, "big:1", messages=1)
    await eventually(lambda: "big:1" in store_of(client).index)
    assert (await client.delete("/api/v1/sessions/big:1", headers=AUTH)).status == 200
    (entry,) = await listing(client)
    (sessions / ".trash" / f"{entry['id']}.json").write_bytes(b"{" + b" " * 4096 + b"}")
    resp = await client.get(f"/api/v1/trash/{entry['id']}", headers=AUTH)
    assert resp.status == 413 and "max_file_bytes" in (await resp.json())["detail"]
