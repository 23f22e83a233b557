"""What the agent's own cache does to the sessions sessiond serves (issue 21 #1 and #3).

grip-ai keeps up to 200 sessions in its process and reads that cache before the disk: a
session deleted under it is written back, old history and old `created_at`, on that
chat's next message (a *resurrection*). It also consolidates: past 100 messages it cuts a
session back to its window (50) under a summary, so `message_count` goes down (*compacted*).
Files here are written as grip writes them: json.dumps, `<name>.tmp`, rename.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from sessiond.core.deletions import Deletions
from sessiond.web.appkeys import RETENTION
from tests.live.test_events import events, open_stream
from tests.support import AUTH, eventually, store_of
from tests.support import file_name as agent_name


def agent_save(folder: Path, doc: dict[str, Any]) -> Path:
    """grip's SessionManager.save: updated_at now, json.dumps, a temp file, a rename."""
    doc["updated_at"] = time.time()
    path = folder / agent_name(doc["key"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.rename(path)
    return path


def chat(key: str, messages: int, created_at: float | None = None, summary: str | None = None) -> dict[str, Any]:
    """A session as grip keeps it in its cache."""
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(messages)]
    return {"key": key, "messages": turns, "summary": summary, "created_at": created_at or time.time() - 3600}


def url(key: str) -> str:
    return "/api/v1/sessions/" + quote(key, safe="")


async def detail(client: TestClient, key: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(url(key), headers=AUTH)
    return resp.status, await resp.json()


async def resurrections(client: TestClient) -> str:
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    return next(line for line in metrics.splitlines() if line.startswith("sessiond_resurrections_total"))


# -- resurrections ----------------------------------------------------------------------


async def test_a_deleted_session_the_agent_writes_back_is_reported_as_resurrected(
    client: TestClient, sessions: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = "telegram:42\n\x1b[2Jfake line"  # a key an attacker chose: the log line must not obey it
    cached = chat(key, 6)
    agent_save(sessions, cached)
    await eventually(lambda: key in store_of(client).index)
    stream = await open_stream(client)
    resp = await client.delete(url(key), headers=AUTH)
    assert resp.status == 200
    deleted_at = time.time()
    assert (await events(stream, 1))[0]["event"] == "deleted"

    cached["messages"].append({"role": "user", "content": "are you there?"})  # the chat's next message
    with caplog.at_level(logging.WARNING, logger="sessiond"):
        agent_save(sessions, cached)
        created, back = await events(stream, 2)
    assert (created["event"], back["event"]) == ("created", "resurrected")
    assert back["data"]["key"] == key and back["data"]["message_count"] == 7
    assert back["data"]["deleted_by"] == "api" and abs(back["data"]["deleted_at"] - deleted_at) < 1
    assert back["data"]["resurrected_at"] >= back["data"]["deleted_at"]

    status, body = await detail(client, key)
    assert status == 200 and body["resurrected"] == {k: back["data"][k] for k in ("deleted_at", "deleted_by", "resurrected_at")}
    assert await resurrections(client) == "sessiond_resurrections_total 1.0"
    lines = [r.getMessage() for r in caplog.records if "came back" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "\x1b" not in lines[0]
    assert repr(key) in lines[0] and "/new" in lines[0]


async def test_a_new_session_under_a_deleted_key_is_no_resurrection(client: TestClient, sessions: Path) -> None:
    agent_save(sessions, chat("cli:1", 4))
    await eventually(lambda: "cli:1" in store_of(client).index)
    assert (await client.delete(url("cli:1"), headers=AUTH)).status == 200
    time.sleep(0.01)
    agent_save(sessions, chat("cli:1", 1, created_at=time.time()))  # /new: created after the delete
    await eventually(lambda: "cli:1" in store_of(client).index)
    status, body = await detail(client, "cli:1")
    assert status == 200 and "resurrected" not in body
    assert await resurrections(client) == "sessiond_resurrections_total 0.0"


async def test_a_trash_restore_is_no_resurrection(start_client: Any, sessions: Path) -> None:
    client = await start_client(trash_days=7)
    agent_save(sessions, chat("slack:7", 3))
    await eventually(lambda: "slack:7" in store_of(client).index)
    assert (await client.delete(url("slack:7"), headers=AUTH)).status == 200
    resp = await client.post("/api/v1/trash:restore", json={"keys": ["slack:7"]}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["restored"]
    status, body = await detail(client, "slack:7")
    assert status == 200 and "resurrected" not in body
    assert await resurrections(client) == "sessiond_resurrections_total 0.0"


async def test_retention_counts_how_many_of_its_deletions_came_back(start_client: Any, sessions: Path) -> None:
    old = time.time() - 40 * 86400
    docs = {key: chat(key, 2, created_at=old - 10) for key in ("telegram:1", "telegram:2", "telegram:3")}
    for doc in docs.values():
        path = agent_save(sessions, doc)
        doc["updated_at"] = old
        path.write_text(json.dumps(doc))  # idle for 40 days, the file untouched as long
        os.utime(path, (old, old))
    client = await start_client(retention=[{"prefix": "telegram:", "idle_days": 30}])
    await eventually(lambda: len(store_of(client).index) == 3)
    report = await client.server.app[RETENTION].run_once()  # type: ignore[union-attr]
    assert report.deleted == {"telegram:": 3}
    for key in ("telegram:1", "telegram:3"):  # two chats still cached by the agent get a message
        agent_save(sessions, docs[key])
    await eventually(lambda: len(store_of(client).index) == 2)
    shown = await (await client.get("/api/v1/retention", headers=AUTH)).json()
    assert shown["last_run"]["came_back"] == 2 and shown["came_back_total"] == 2
    status, body = await detail(client, "telegram:1")
    assert status == 200 and body["resurrected"]["deleted_by"] == "retention"


async def test_a_session_written_back_while_sessiond_was_stopped_is_noticed_at_start(
    start_client: Any, sessions: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    client = await start_client(state_dir=str(state))
    cached = chat("discord:9", 5)
    agent_save(sessions, cached)
    await eventually(lambda: "discord:9" in store_of(client).index)
    assert (await client.delete(url("discord:9"), headers=AUTH)).status == 200
    await client.close()  # the stop saves what was deleted beside the snapshot
    assert [row[0] for row in json.loads((state / "deletions.json").read_text())["deletions"]] == ["discord:9"]

    agent_save(sessions, cached)  # meanwhile, the agent answers that chat
    client = await start_client(state_dir=str(state))
    status, body = await detail(client, "discord:9")
    assert status == 200 and body["resurrected"]["deleted_by"] == "api"
    assert await resurrections(client) == "sessiond_resurrections_total 1.0"


def test_the_deletions_kept_are_bounded_and_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    from sessiond.core import deletions as module
    from sessiond.core.index import FileStat, SessionRecord

    kept = Deletions()
    for i in range(module.MAX_DELETIONS + 5):
        kept.remember(SessionRecord(f"k{i}", f"k{i}.json", 1, 1.0, 2.0, FileStat(1, 1, 1, 1)), 10.0, "api")
    assert len(kept.recent) == module.MAX_DELETIONS and "k0" not in kept.recent
    path = tmp_path / "deletions.json"
    kept.save(path)
    assert len(Deletions.load(path).recent) == module.MAX_DELETIONS
    path.write_text('{"format": 1, "deletions": [["k", "not a time", 1.0, "api"]], "resurrections": []}')
    assert not Deletions.load(path).recent


# -- consolidation ----------------------------------------------------------------------


async def test_a_consolidation_is_announced_as_compacted_with_the_counts(client: TestClient, sessions: Path) -> None:
    doc = chat("telegram:long", 101)
    agent_save(sessions, doc)
    await eventually(lambda: "telegram:long" in store_of(client).index)
    stream = await open_stream(client)
    doc["messages"] = doc["messages"][-50:]  # grip's prune_to_window under a new summary
    doc["summary"] = "Earlier: the user asked about turns 0-50."
    agent_save(sessions, doc)
    updated, compacted = await events(stream, 2)
    assert (updated["event"], compacted["event"]) == ("updated", "compacted")
    assert compacted["data"]["before"] == 101 and compacted["data"]["after"] == 50
    assert compacted["data"]["message_count"] == 50
    doc["messages"].append({"role": "user", "content": "more"})
    agent_save(sessions, doc)
    assert [e["event"] for e in await events(stream, 1)] == ["updated"]  # growth is no compaction
