"""DELETE racing the agent, other DELETEs and other writers: defined outcomes, nothing else removed."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from tests.disk import api_equals_disk
from tests.support import AUTH, NOBODY, as_nobody, eventually, immutable, session_doc, small_tmpfs, store_of, write_atomic


async def delete(client: TestClient, key: str) -> int:
    return (await client.delete(f"/api/v1/sessions/{key}", headers=AUTH)).status


async def test_concurrent_deletes_exactly_one_wins(client: TestClient, sessions: Path) -> None:
    keys = [f"twice:{i}" for i in range(20)]
    for key in keys:
        write_atomic(sessions, key)
    await eventually(lambda: len(store_of(client).index) == len(keys))
    statuses = await asyncio.gather(*(delete(client, key) for key in keys for _ in range(3)))
    for i in range(len(keys)):
        assert sorted(statuses[i * 3 : i * 3 + 3]) == [200, 404, 404]
    assert not any(sessions.iterdir())


async def test_rewritten_since_indexed_same_key_is_deleted(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "agent:1", messages=1)
    store = store_of(client)
    await eventually(lambda: "agent:1" in store.index)
    async with store.lock:  # the agent's rename lands before the index hears of it
        write_atomic(sessions, "agent:1", messages=9)
    assert await delete(client, "agent:1") == 200
    assert not path.exists() and "agent:1" not in store.index


async def test_name_taken_by_another_key_is_left_alone(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "mine", name="shared.json")
    store = store_of(client)
    await eventually(lambda: "mine" in store.index)
    async with store.lock:  # another session now lives under that file name
        write_atomic(sessions, "theirs", name="shared.json")
    assert await delete(client, "mine") == 404
    assert orjson.loads(path.read_bytes())["key"] == "theirs"
    assert "mine" not in store.index and "theirs" in store.index  # the index healed on the spot


async def test_in_place_rewrite_in_progress_is_deleted(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "chunky:1")
    store = store_of(client)
    await eventually(lambda: "chunky:1" in store.index)
    async with store.lock:
        with path.open("r+b") as fh:  # same inode, half-written content
            fh.truncate(0)
            fh.write(b'{"key": "chunky:1", "mess')
    assert await delete(client, "chunky:1") == 200
    assert not path.exists()


async def test_delete_while_the_agent_keeps_rewriting(client: TestClient, sessions: Path, tmp_path: Path) -> None:
    bystanders = [write_atomic(sessions, f"other:{i}") for i in range(5)]
    (sessions / "notes.txt").write_text("not a session")
    (sessions / "half.tmp").write_text("{")
    outside = tmp_path / "outside.json"
    outside.write_bytes(orjson.dumps(session_doc("busy")))
    write_atomic(sessions, "busy")
    await eventually(lambda: "busy" in store_of(client).index)
    stop = threading.Event()

    def agent() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            write_atomic(sessions, "busy", messages=n % 7 + 1)
        write_atomic(sessions, "busy", messages=3)  # the agent has the last word, after every DELETE

    writer = threading.Thread(target=agent)
    writer.start()
    try:
        statuses = [await delete(client, "busy") for _ in range(100)]
    finally:
        stop.set()
        writer.join()
    assert set(statuses) <= {200, 404} and 200 in statuses
    # The agent wrote last, so its session is back: last writer wins, and the index agrees.
    assert (sessions / "busy.json").exists()
    await eventually(lambda: api_equals_disk(client, sessions), timeout=2)
    assert all(p.exists() for p in bystanders)
    assert (sessions / "notes.txt").exists() and (sessions / "half.tmp").exists() and outside.exists()


@pytest.mark.slow
def test_a_delete_interrupted_by_a_crash_is_undone_at_the_next_start(workspace: Path) -> None:
    from tests.support import Daemon

    sessions = workspace / "sessions"
    # What a crash between "renamed out of the way" and "unlinked" leaves behind:
    (sessions / ".sessiond-delete.0123abcd.custom name.json.tmp").write_bytes(orjson.dumps(session_doc("kept:1")))
    (sessions / ".sessiond-delete.89abcdef.tmp").write_bytes(orjson.dumps(session_doc("kept:2")))
    with Daemon(workspace) as d:
        d.wait_ready()
        status, body = d.get("/api/v1/sessions")
        assert status == 200 and orjson.loads(body)["sessions"] == ["kept:1", "kept:2"]
        assert d.stop() == 0
    assert "indexed 2 sessions" in d.output()  # by the scan itself, not by the watch's events after it
    assert sorted(p.name for p in sessions.iterdir()) == ["custom name.json", "kept_2.json"]


@pytest.mark.slow
def test_a_delete_interrupted_by_a_crash_is_undone_at_a_restart_from_the_snapshot(workspace: Path, tmp_path: Path) -> None:
    # The restart lists the folder once (its stat walk) and finds the held files there: the
    # files put back after that walk must be read, not taken for gone.
    from tests.support import Daemon

    sessions = workspace / "sessions"
    state = tmp_path / "state"
    state.mkdir()
    env = {"SESSIOND_STATE_DIR": str(state)}
    for key in ("kept:1", "kept:2", "other:1"):
        write_atomic(sessions, key)
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert d.stop() == 0  # the snapshot of the three is written
    assert any(state.iterdir())
    # A crash between "renamed out of the way" and "unlinked", for one the snapshot knows and one it does not:
    os.rename(sessions / "kept_1.json", sessions / ".sessiond-delete.0123abcd.kept_1.json.tmp")
    (sessions / ".sessiond-delete.89abcdef.tmp").write_bytes(orjson.dumps(session_doc("new:1", messages=3)))
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        status, body = d.get("/api/v1/sessions")
        assert status == 200 and orjson.loads(body)["sessions"] == ["kept:1", "kept:2", "new:1", "other:1"]
        assert d.stop() == 0
    assert "indexed 4 sessions" in d.output()  # by the scan itself, not by the watch's events after it
    assert sorted(p.name for p in sessions.iterdir() if not p.name.startswith(".")) == [
        "kept_1.json",
        "kept_2.json",
        "new_1.json",
        "other_1.json",
    ]


async def test_a_file_the_file_system_refuses_to_remove_is_a_503_and_nothing_changes(client: TestClient, sessions: Path) -> None:
    path = write_atomic(sessions, "stuck:1")
    await eventually(lambda: "stuck:1" in store_of(client).index)
    with immutable(path):
        resp = await client.delete("/api/v1/sessions/stuck:1", headers=AUTH)
        assert resp.status == 503
        assert (await resp.json())["detail"].startswith("Session not deleted: Operation not permitted")
        assert path.exists() and "stuck:1" in store_of(client).index
    assert (await client.delete("/api/v1/sessions/stuck:1", headers=AUTH)).status == 200


def leftovers(sessions: Path) -> list[str]:
    """Every name a delete could leave behind: in the folder beside the sessions, and in the trash."""
    names = [p.name for p in sessions.iterdir() if p.name.startswith(".") and p.name != ".trash"]
    trash = sessions / ".trash"
    return names + [f".trash/{p.name}" for p in trash.iterdir()] if trash.is_dir() else names


@pytest.mark.parametrize("trash_days", [7, 0])
async def test_a_refused_delete_leaves_nothing_behind_in_the_trash_or_the_folder(
    start_client: Any, sessions: Path, trash_days: int
) -> None:
    client = await start_client(trash_days=trash_days)
    path = write_atomic(sessions, "stuck:1")
    await eventually(lambda: "stuck:1" in store_of(client).index)
    with immutable(path):  # rename and unlink fail with EPERM, even for root
        for _ in range(3):
            resp = await client.delete("/api/v1/sessions/stuck:1", headers=AUTH)
            assert resp.status == 503 and "nothing was changed" in (await resp.json())["detail"]
        assert leftovers(sessions) == [] and path.exists()
        if trash_days:
            assert (await (await client.get("/api/v1/trash", headers=AUTH)).json())["count"] == 0
    assert await delete(client, "stuck:1") == 200  # and once the file system allows it, it goes
    assert not path.exists()


async def test_a_trash_on_another_file_system_refuses_the_delete_says_why_and_leaves_nothing(
    start_client: Any, sessions: Path
) -> None:
    client = await start_client(trash_days=7)
    path = write_atomic(sessions, "far:1")
    await eventually(lambda: "far:1" in store_of(client).index)
    with small_tmpfs(sessions / ".trash"):  # rename() into it fails with EXDEV
        for _ in range(3):
            resp = await client.delete("/api/v1/sessions/far:1", headers=AUTH)
            detail = (await resp.json())["detail"]
            assert resp.status == 503 and "another file system" in detail and "nothing was changed" in detail, detail
        assert leftovers(sessions) == [] and path.exists() and "far:1" in store_of(client).index


async def test_a_trash_folder_that_is_not_a_folder_is_a_503_not_a_crash(start_client, sessions: Path) -> None:
    client = await start_client(trash_days=1)
    write_atomic(sessions, "t:1")
    await eventually(lambda: "t:1" in store_of(client).index)
    (sessions / ".trash").write_text("a file where the trash folder should be")
    resp = await client.delete("/api/v1/sessions/t:1", headers=AUTH)
    assert resp.status == 503 and "trash folder" in (await resp.json())["detail"]
    assert (sessions / "t_1.json").exists()
    listing = await client.get("/api/v1/trash", headers=AUTH)
    assert listing.status == 503 and "trash folder" in (await listing.json())["detail"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0o555, 0o111], ids=["read-only folder", "unreadable folder"])
def test_a_folder_the_daemon_may_not_change_is_a_503_never_a_traceback(open_workspace: Path, mode: int) -> None:
    from tests.support import Daemon

    workspace = open_workspace / "workspace"
    sessions = workspace / "sessions"
    write_atomic(sessions, "held:1")
    write_atomic(sessions, "free:1")
    os.chown(sessions, NOBODY, NOBODY)  # the daemon's own folder: it may delete in it
    with Daemon(workspace, prefix=as_nobody()) as d:
        d.wait_ready()
        assert d.request("DELETE", "/api/v1/sessions/free:1")[0] == 200
        sessions.chmod(mode)
        try:
            status, _, body = d.request("DELETE", "/api/v1/sessions/held:1")
        finally:
            sessions.chmod(0o755)
        assert status == 503, body
        assert orjson.loads(body)["detail"].startswith("Session not deleted")
        assert "Traceback" not in d.output() and str(sessions) not in body.decode()
        assert (sessions / "held_1.json").exists()
