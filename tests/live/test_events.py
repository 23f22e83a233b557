"""The change feed: the pure EventFeed, and GET /api/v1/events through the real app and daemon."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from sessiond.app import create_app
from sessiond.core.index import Change, FileStat, SessionRecord
from sessiond.live.feed import EventFeed
from sessiond.web.appkeys import WATCHER
from tests.support import AUTH, TOKEN, Daemon, eventually, store_of, write_atomic


def change(kind: str, key: str) -> Change:
    record = None if kind == "deleted" else SessionRecord(key, key + ".json", 1, 1.0, 2.0, FileStat(5, 1, 1, 1))
    return Change(kind, key, record)  # type: ignore[arg-type]


def test_feed_numbers_buffers_and_knows_when_a_client_is_behind() -> None:
    feed = EventFeed(size=3, start=100)
    assert feed.since(100) == []
    feed.publish([change("created", "a"), change("updated", "a")])
    feed.publish([])
    assert [e.seq for e in feed.since(100)] == [101, 102] and feed.seq == 102
    assert orjson.loads(feed.since(101)[0].data) == {
        "seq": 102,
        "key": "a",
        "message_count": 1,
        "created_at": 1.0,
        "updated_at": 2.0,
        "size": 5,
        "version": "1-1-1-5",  # the file's identity (inode, mtime, ctime, size): see sessiond.core.query.version
    }
    feed.publish([change("created", "b"), change("deleted", "a")])
    assert [e.seq for e in feed.since(101)] == [102, 103, 104]  # 101 itself dropped: still exact
    assert feed.since(100) is None  # 101 is gone from the buffer
    assert feed.since(105) is None and feed.since(-1) is None  # not ours
    assert orjson.loads(feed.since(103)[0].data) == {"seq": 104, "key": "a"}


async def events(resp: ClientResponse, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Read *count* SSE events (comments skipped) from an open stream."""
    found: list[dict[str, Any]] = []
    fields: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while len(found) < count:
            line = (await resp.content.readline()).decode()
            if line == "":
                raise AssertionError(f"stream ended after {found}")
            line = line.rstrip("\n")
            if not line:
                if fields:
                    found.append(fields)
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = orjson.loads(value) if name == "data" else value
    return found


async def open_stream(client: TestClient, query: str = "", **headers: str) -> ClientResponse:
    resp = await client.get("/api/v1/events" + query, headers={**AUTH, **headers})
    assert resp.status == 200, await resp.text()
    assert await resp.content.readline() == b": connected\n"
    await resp.content.readline()
    return resp


async def test_created_updated_deleted_with_ids_and_metadata(client: TestClient, sessions: Path) -> None:
    resp = await open_stream(client)
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["X-Accel-Buffering"] == "no" and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Request-ID"]
    write_atomic(sessions, "live:1", messages=2)
    (created,) = await events(resp, 1)
    assert created["event"] == "created" and created["data"]["key"] == "live:1"
    assert created["data"]["message_count"] == 2 and int(created["id"]) == created["data"]["seq"]
    write_atomic(sessions, "live:1", messages=5)
    (updated,) = await events(resp, 1)
    assert updated["event"] == "updated" and updated["data"]["message_count"] == 5
    assert int(updated["id"]) > int(created["id"])
    await client.delete("/api/v1/sessions/live:1", headers=AUTH)
    (deleted,) = await events(resp, 1)
    assert deleted["event"] == "deleted" and deleted["data"] == {"seq": int(deleted["id"]), "key": "live:1"}
    resp.close()


async def test_metrics_count_streams_and_events(client: TestClient, sessions: Path) -> None:
    resp = await open_stream(client)
    write_atomic(sessions, "m:1")
    await events(resp, 1)
    text = await (await client.get("/metrics", headers=AUTH)).text()
    assert "sessiond_event_streams 1.0" in text and "sessiond_events_total 1.0" in text
    resp.close()


async def test_keepalive_comments(start_client: Any) -> None:
    client = await start_client(events_keepalive=0.05)
    resp = await open_stream(client)
    async with asyncio.timeout(2):
        assert await resp.content.readline() == b": ping\n"
    resp.close()


async def test_resume_with_last_event_id(client: TestClient, sessions: Path) -> None:
    resp = await open_stream(client)
    write_atomic(sessions, "r:1")
    (first,) = await events(resp, 1)
    resp.close()
    write_atomic(sessions, "r:2")
    write_atomic(sessions, "r:3")
    store = store_of(client)
    await asyncio.wait_for(_until(lambda: "r:3" in store.index), 3)
    resp = await open_stream(client, **{"Last-Event-ID": first["id"]})
    missed = await events(resp, 2)
    assert [e["data"]["key"] for e in missed] == ["r:2", "r:3"]
    resp.close()
    # the same through ?since= (EventSource cannot set headers on its first connection)
    resp = await open_stream(client, f"?since={first['id']}&prefix=r:3")
    assert [e["data"]["key"] for e in await events(resp, 1)] == ["r:3"]
    resp.close()


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.01)


async def test_resync_when_too_far_behind(start_client: Any, sessions: Path) -> None:
    client = await start_client(events_buffer=2)
    resp = await open_stream(client)
    write_atomic(sessions, "s:1")
    (first,) = await events(resp, 1)
    resp.close()
    for i in range(2, 6):
        write_atomic(sessions, f"s:{i}")
    await asyncio.wait_for(_until(lambda: "s:5" in store_of(client).index), 3)
    for last_id in (first["id"], "not-a-number", "999999999999999999"):
        resp = await open_stream(client, **{"Last-Event-ID": last_id})
        (resync,) = await events(resp, 1)
        assert resync["event"] == "resync" and int(resync["id"]) == resync["data"]["seq"]
        write_atomic(sessions, f"after:{last_id}")
        (later,) = await events(resp, 1)  # and the stream goes on from there
        assert later["event"] == "created" and int(later["id"]) == int(resync["id"]) + 1
        resp.close()


async def test_a_resume_point_of_thousands_of_digits_resyncs_the_same_through_the_header_and_since(
    client: TestClient, sessions: Path
) -> None:
    # int() refuses more than 4,300 digits; such an id is simply not one of ours.
    huge = "9" * 5000
    for query, headers in (("", {"Last-Event-ID": huge}), (f"?since={huge}", {})):
        resp = await open_stream(client, query, **headers)
        (resync,) = await events(resp, 1)
        assert resync["event"] == "resync" and int(resync["id"]) == resync["data"]["seq"]
        resp.close()
    # One reader of ids for both: what is not ASCII digits is a 400 through ?since= (and,
    # through the header an EventSource sends back unread, a resync as before).
    for bad in ("+5", "%D9%A3", "1_000", "%205", "-1", ""):
        resp = await client.get(f"/api/v1/events?since={bad}", headers=AUTH)
        body = await resp.json()
        assert resp.status == 400 and body["parameter"] == "since" and body["detail"], (bad, body)
    resp = await open_stream(client, **{"Last-Event-ID": "+5"})
    assert (await events(resp, 1))[0]["event"] == "resync"
    resp.close()


async def test_a_stream_is_refused_until_the_first_index_is_whole(
    aiohttp_client: Any, make_settings: Any, sessions: Path, held_first_scan: asyncio.Event
) -> None:
    gate = held_first_scan
    write_atomic(sessions, "already:there")
    client = await aiohttp_client(create_app(make_settings()))
    refused = await client.get("/api/v1/events", headers=AUTH)
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["detail"].startswith("Service unavailable: starting")
    gate.set()
    await eventually(client.server.app[WATCHER].ready.is_set)  # type: ignore[union-attr]
    resp = await open_stream(client)
    write_atomic(sessions, "later")
    assert [e["event"] for e in await events(resp, 1)] == ["created"]
    resp.close()


async def test_bad_parameters(client: TestClient) -> None:
    for query, param in (("?since=x", "since"), ("?prefx=a", "prefx")):
        resp = await client.get("/api/v1/events" + query, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["parameter"] == param
    assert (await client.get("/api/v1/events")).status == 401


@pytest.mark.slow
def test_open_streams_do_not_hold_up_a_graceful_stop(workspace: Path) -> None:
    env = {"SESSIOND_SHUTDOWN_TIMEOUT": "30", "SESSIOND_RATE_LIMIT_PER_IP": "0"}
    with Daemon(workspace, env=env) as daemon:
        daemon.wait_ready()
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)) as conn:
            conn.request("GET", "/api/v1/events", headers={"Authorization": f"Bearer {TOKEN}"})
            stream = conn.getresponse()
            assert stream.status == 200 and stream.readline() == b": connected\n"
            started = time.monotonic()
            assert daemon.stop(signal.SIGTERM) == 0
            assert time.monotonic() - started < 5, daemon.output()
            stream.read()  # the stream was ended cleanly, not cut
