"""The audit trail: a record for every kind of deletion and restore, with the right actor, before the answer."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from sessiond import client as sessionctl
from sessiond.core.audit import FILE_NAME
from sessiond.web.appkeys import AUDIT, RETENTION, TRASH
from tests.support import AUTH, TOKEN, eventually, fill_up, immutable, small_tmpfs, store_of, write_atomic
from tests.web.test_scopes import SECRETS, write_tokens

DAY = 86400.0
CLEANER = {"Authorization": f"Bearer {SECRETS['cleaner'][1]}"}
SUPPORT = {"Authorization": f"Bearer {SECRETS['support'][1]}"}


def records(state: Path) -> list[dict[str, Any]]:
    """The audit file's records, oldest first (every line one JSON object)."""
    lines = (state / FILE_NAME).read_bytes().split(b"\n")
    assert lines[-1] == b""
    return [json.loads(line) for line in lines[:-1]]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def start(
    start_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, state: Path
) -> Callable[..., Awaitable[TestClient]]:
    tokens = write_tokens(tmp_path / "tokens", SECRETS)

    async def go(**overrides: Any) -> TestClient:
        return await start_client(state_dir=str(state), tokens_file=str(tokens), **overrides)

    return go


async def seen(client: TestClient, key: str) -> None:
    await eventually(lambda: key in store_of(client).index)


async def test_an_api_delete_is_recorded_with_its_actor_client_and_request_before_the_answer(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    client = await start()
    path = write_atomic(sessions, "user:alice:1")
    await seen(client, "user:alice:1")
    st = path.stat()
    resp = await client.delete("/api/v1/sessions/user:alice:1", headers={**CLEANER, "X-Request-ID": "req-42"})
    assert resp.status == 200
    (record,) = records(state)  # already on disk when the answer arrived
    assert record["actor"] == "cleaner" and record["action"] == "delete" and record["outcome"] == "deleted"
    assert record["client"] == "127.0.0.1" and record["request_id"] == "req-42"
    assert record["key"] == "user:alice:1" and record["file"] == "user_alice_1.json"
    assert record["identity"] == {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    assert abs(record["time"] - time.time()) < 5 and record["reason"] is None


async def test_the_client_is_the_one_a_trusted_proxy_names(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    client = await start(trusted_proxies="127.0.0.1")
    write_atomic(sessions, "k")
    await seen(client, "k")
    await client.delete("/api/v1/sessions/k", headers={**CLEANER, "X-Forwarded-For": "203.0.113.9"})
    assert records(state)[-1]["client"] == "203.0.113.9"


async def test_batch_delete_trash_and_restore_are_recorded(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    client = await start(trash_days=7)
    for key in ("a:1", "a:2"):
        write_atomic(sessions, key)
    await seen(client, "a:2")
    resp = await client.post("/api/v1/sessions:batchDelete", json={"keys": ["a:1", "a:2"]}, headers=CLEANER)
    assert (await resp.json())["deleted"] == ["a:1", "a:2"]
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["a:2"]}, headers=CLEANER)
    assert len((await resp.json())["restored"]) == 1
    shown = [(r["actor"], r["action"], r["key"], r["outcome"]) for r in records(state)]
    assert shown == [
        ("cleaner", "delete", "a:1", "to trash"),
        ("cleaner", "delete", "a:2", "to trash"),
        ("cleaner", "restore", "a:2", "restored"),
    ]
    assert records(state)[-1]["file"] == "a_2.json" and records(state)[-1]["trash_id"]


async def test_a_refused_restore_is_recorded_with_why(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    client = await start(trash_days=7)
    write_atomic(sessions, "r:1")
    await seen(client, "r:1")
    await client.delete("/api/v1/sessions/r:1", headers=CLEANER)
    write_atomic(sessions, "other", name="r_1.json")  # another session took its file name
    await seen(client, "other")
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["r:1"]}, headers=CLEANER)
    assert (await resp.json())["failed"]
    restore = [r for r in records(state) if r["action"] == "restore"]
    assert [r["outcome"] for r in restore] == ["restored", "refused"]
    assert "file name" in restore[-1]["reason"]


async def test_retention_and_the_trash_purge_are_recorded_as_themselves(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    stamp = time.time() - 40 * DAY
    path = write_atomic(sessions, "telegram:old", created=stamp - 10, updated=stamp)
    os.utime(path, (stamp, stamp))
    client = await start(trash_days=7, retention=[{"prefix": "telegram:", "idle_days": 30}])
    app = client.server.app  # type: ignore[union-attr]
    report = await app[RETENTION].run_once()
    assert report.outcome == "deleted"
    (record,) = records(state)
    assert (record["actor"], record["key"], record["outcome"], record["client"]) == (
        "retention",
        "telegram:old",
        "to trash",
        None,
    )
    assert app[TRASH].purge(store_of(client).folder, time.time() + 8 * DAY, app[AUDIT]) == 1
    purge = records(state)[-1]
    assert (purge["actor"], purge["action"], purge["key"], purge["file"], purge["outcome"]) == (
        "trash purge",
        "purge",
        "telegram:old",
        "telegram_old.json",
        "purged",
    )


async def test_the_audit_file_is_bounded(start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path) -> None:
    client = await start(audit_max_bytes=4096)
    for n in range(30):
        write_atomic(sessions, f"b:{n}")
    await seen(client, "b:29")
    for n in range(30):
        assert (await client.delete(f"/api/v1/sessions/b:{n}", headers=CLEANER)).status == 200
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("audit")) == [FILE_NAME, FILE_NAME + ".1"]
    assert (state / FILE_NAME).stat().st_size <= 4096 and (state / (FILE_NAME + ".1")).stat().st_size <= 4096
    assert records(state)[-1]["key"] == "b:29"


async def test_a_full_state_directory_refuses_the_delete(
    start_client: Callable[..., Awaitable[TestClient]], sessions: Path, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "small", "64k") as state:
        client = await start_client(state_dir=str(state), search=False)
        path = write_atomic(sessions, "keep:me")
        await seen(client, "keep:me")
        fill_up(state / "filler")
        resp = await client.delete("/api/v1/sessions/keep:me", headers=AUTH)
        assert resp.status == 503
        detail = (await resp.json())["detail"]
        assert "audit trail cannot be written" in detail and "nothing was deleted" in detail
        assert path.exists() and "keep:me" in store_of(client).index
        resp = await client.post("/api/v1/sessions:batchDelete", json={"keys": ["keep:me"]}, headers=AUTH)
        assert (await resp.json())["deleted"] == [] and path.exists()
        (state / "filler").unlink()
        assert (await client.delete("/api/v1/sessions/keep:me", headers=AUTH)).status == 200
        assert [r["outcome"] for r in records(state)] == ["deleted"]  # no torn record left by the full disk


async def test_a_hostile_key_never_forges_a_line(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = 'evil\n{"actor":"boss"}\r\x1b[31m\u2028'
    client = await start()
    write_atomic(sessions, key, name="evil.json")
    await seen(client, key)
    with caplog.at_level(logging.INFO, logger="sessiond.audit"):
        assert (await client.delete("/api/v1/sessions/" + quote(key, safe=""), headers=CLEANER)).status == 200
    (record,) = records(state)
    assert record["key"] == key and record["actor"] == "cleaner"
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "sessiond.audit"]
    assert json.loads(logged)["key"] == key
    assert logged.isascii() and logged.isprintable()


async def test_get_audit_filters_and_pages_and_needs_the_admin_scope(
    start: Callable[..., Awaitable[TestClient]], sessions: Path
) -> None:
    client = await start()
    for key in ("x:1", "x:2", "x:3", "y:1"):
        write_atomic(sessions, key)
    await seen(client, "y:1")
    started = time.time()
    for key in ("x:1", "x:2", "x:3"):
        await client.delete(f"/api/v1/sessions/{key}", headers=CLEANER)
    await client.delete("/api/v1/sessions/y:1", headers=AUTH)
    resp = await client.get("/api/v1/audit", headers=CLEANER)
    assert resp.status == 403 and (await resp.json()) == {"detail": "The token 'cleaner' may not read the audit trail"}
    body = await (await client.get("/api/v1/audit", headers=AUTH)).json()
    assert [r["key"] for r in body["records"]] == ["y:1", "x:3", "x:2", "x:1"] and body["next_cursor"] is None
    keys, cursor = [], None
    while True:
        params = {"prefix": "x:", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/audit", params=params, headers=AUTH)).json()
        keys += [r["key"] for r in page["records"]]
        if not (cursor := page["next_cursor"]):
            break
    assert keys == ["x:3", "x:2", "x:1"]
    page = await (await client.get("/api/v1/audit", params={"actor": "admin"}, headers=AUTH)).json()
    assert [r["key"] for r in page["records"]] == ["y:1"]
    page = await (await client.get("/api/v1/audit", params={"since": str(started), "until": "1"}, headers=AUTH)).json()
    assert page["records"] == []
    for bad in ({"since": "soon"}, {"cursor": "../x"}, {"limit": "0"}, {"nope": "1"}):
        assert (await client.get("/api/v1/audit", params=bad, headers=AUTH)).status == 400, bad


async def test_without_a_state_directory_the_records_go_to_the_journal_only(
    start_client: Callable[..., Awaitable[TestClient]], sessions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_client()
    write_atomic(sessions, "j:1")
    await seen(client, "j:1")
    with caplog.at_level(logging.INFO, logger="sessiond.audit"):
        assert (await client.delete("/api/v1/sessions/j:1", headers=AUTH)).status == 200
    (logged,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "sessiond.audit"]
    assert (logged["actor"], logged["key"], logged["outcome"]) == ("admin", "j:1", "deleted")
    resp = await client.get("/api/v1/audit", headers=AUTH)
    assert resp.status == 404 and "state_dir" in (await resp.json())["detail"]


async def test_sessionctl_audit_lists_records_escaped_and_says_when_the_scope_is_missing(
    start: Callable[..., Awaitable[TestClient]],
    sessions: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await start()
    for key in ("s:1", "s:\x1b[2Jevil"):
        write_atomic(sessions, key, name=f"s_{len(key)}.json")
        await seen(client, key)
        await client.delete("/api/v1/sessions/" + quote(key, safe=""), headers=CLEANER)
    url = str(client.make_url("")).rstrip("/")

    def run(*argv: str) -> int:
        return sessionctl.main(["--url", url, *argv])

    monkeypatch.setenv("SESSIOND_TOKEN", TOKEN)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, run, "audit", "--prefix", "s:", "--actor", "cleaner", "--since", "1h") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "\x1b" not in "".join(lines)
    assert lines[0].split("\t")[1:6] == ["cleaner", "delete", "s:\\x1b[2Jevil", "s_10.json", "deleted"]
    assert lines[1].split("\t")[3] == "s:1"
    assert await loop.run_in_executor(None, run, "-o", "json", "audit", "-n", "1") == 0
    assert [r["key"] for r in json.loads(capsys.readouterr().out)] == ["s:\x1b[2Jevil"]
    monkeypatch.setenv("SESSIOND_TOKEN", SECRETS["support"][1])
    assert await loop.run_in_executor(None, run, "audit") == 2
    assert "The token 'support' may not read the audit trail" in capsys.readouterr().err


async def test_a_deletion_the_scope_refuses_is_recorded_as_refused(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    client = await start(trash_days=7)
    write_atomic(sessions, "keep:1")
    await seen(client, "keep:1")
    assert (await client.delete("/api/v1/sessions/keep:1", headers={**SUPPORT, "X-Request-ID": "forged-1"})).status == 403
    assert (await client.post("/api/v1/trash:restore", json={"keys": ["x"]}, headers=SUPPORT)).status == 403
    shown = [(r["actor"], r["action"], r["key"], r["outcome"], r["reason"], r["request_id"]) for r in records(state)]
    assert shown[0] == ("support", "delete", "keep:1", "refused", "the token's scope may not delete sessions", "forged-1")
    assert shown[1][:4] == ("support", "restore", None, "refused")
    assert (sessions / "keep_1.json").exists()


async def test_a_file_that_did_not_go_after_its_record_gets_a_refused_record_with_why(
    start: Callable[..., Awaitable[TestClient]], sessions: Path, state: Path
) -> None:
    path = write_atomic(sessions, "stuck:1")
    with immutable(path):  # before the scan: chattr moves the file's ctime
        client = await start()
        await seen(client, "stuck:1")
        resp = await client.delete("/api/v1/sessions/stuck:1", headers=CLEANER)
        assert resp.status == 503 and path.exists()
    shown = [(r["key"], r["outcome"]) for r in records(state)]
    assert shown == [("stuck:1", "deleted"), ("stuck:1", "refused")]
    assert records(state)[-1]["reason"] == (await resp.json())["detail"].removeprefix("Session not deleted: ")
