"""The change feed and export through the shipped nginx site, in front of a real daemon."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from sessiond.demo import write_session
from tests.nginx import NGINX, Nginx, daemon_behind_nginx
from tests.support import AUTH, demo_session

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")


@pytest.fixture
def proxy(workspace: Path, tmp_path: Path) -> Iterator[Nginx]:
    """The daemon on its unix socket behind nginx, as the site expects."""
    write_session(workspace / "sessions", demo_session("user:alice:x", 2, 1_700_000_000))
    env = {"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0", "SESSIOND_EVENTS_KEEPALIVE": "0.2"}
    with daemon_behind_nginx(workspace, tmp_path, env) as nginx:
        yield nginx


async def test_events_arrive_through_nginx_at_once(proxy: Nginx, workspace: Path) -> None:
    async with aiohttp.ClientSession() as session, session.get(proxy.url + "/api/v1/events", headers=AUTH) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        async with asyncio.timeout(3):
            assert await resp.content.readline() == b": connected\n"  # not held in nginx's buffers
            write_session(workspace / "sessions", demo_session("via:nginx", 1, 1_700_000_000))
            while await resp.content.readline() != b"event: created\n":
                pass
            assert b'"key":"via:nginx"' in await resp.content.readline()
        async with asyncio.timeout(3):  # keep-alives come through too
            while await resp.content.readline() != b": ping\n":
                pass


async def test_export_through_nginx(proxy: Nginx, workspace: Path) -> None:
    stored = (workspace / "sessions" / "user_alice_x.json").read_bytes()
    async with aiohttp.ClientSession() as session:
        url = proxy.url + "/api/v1/export"
        async with session.get(url, params={"key": "user:alice:x"}, headers=AUTH) as resp:
            assert resp.status == 200 and await resp.read() == stored
            etag = resp.headers["ETag"]
        async with session.get(url, params={"key": "user:alice:x"}, headers={**AUTH, "If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with session.get(url, params={"prefix": "user:"}, headers=AUTH) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
            assert [orjson.loads(line)["key"] for line in (await resp.read()).splitlines()] == ["user:alice:x"]
