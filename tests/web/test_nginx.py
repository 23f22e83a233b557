"""The shipped nginx site in front of a real daemon: client addresses, limits, headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sessiond.demo import write_session
from tests.nginx import NGINX, Nginx
from tests.support import AUTH, Daemon, demo_session, free_port

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")


@pytest.fixture(params=["unix", "tcp"])
def stack(request: pytest.FixtureRequest, workspace: Path, tmp_path: Path) -> Iterator[tuple[Daemon, Nginx]]:
    """A daemon (per-IP limit 3/min) behind nginx, over the unix socket or TCP."""
    write_session(workspace / "sessions", demo_session("user:alice:x", 2, 1_700_000_000))
    env = {"SESSIOND_RATE_LIMIT_PER_IP": "3", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    sock = tmp_path / "sessiond.sock"
    if request.param == "unix":
        daemon = Daemon(workspace, "--unix", str(sock), env=env)
        upstream = f"unix:{sock}"
    else:
        daemon = Daemon(workspace, "--trusted-proxies", "127.0.0.1", env=env)
        upstream = f"127.0.0.1:{daemon.port}"
    with daemon:
        daemon.wait_ready()
        proxy = Nginx(tmp_path / "nginx", upstream, free_port())
        try:
            yield daemon, proxy
        finally:
            proxy.stop()


async def fetch(url: str, source: str = "127.0.0.1", headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url, headers=headers or {}) as resp:
        return resp.status, dict(resp.headers), json.loads(await resp.read())


async def test_contract_through_nginx(stack: tuple[Daemon, Nginx]) -> None:
    _, proxy = stack
    status, headers, body = await fetch(proxy.url + "/api/v1/sessions", headers={**AUTH, "X-Request-ID": "via-nginx"})
    assert status == 200 and body == {"sessions": ["user:alice:x"], "count": 1}
    assert headers["X-Request-ID"] == "via-nginx" and headers["Cache-Control"] == "no-store"
    status, headers, body = await fetch(proxy.url + "/api/v1/sessions/user:alice:x", source="127.0.0.5", headers=AUTH)
    assert status == 200 and body["message_count"] == 4
    status, headers, body = await fetch(proxy.url + "/api/v1/sessions", source="127.0.0.6")
    assert status == 401 and body == {"detail": "Authentication required"} and headers["WWW-Authenticate"] == "Bearer"
    status, _, body = await fetch(proxy.url + "/health", source="127.0.0.7")
    assert status == 200 and body["status"] == "ok"


async def test_clients_behind_nginx_get_their_own_buckets(stack: tuple[Daemon, Nginx]) -> None:
    daemon, proxy = stack
    url = proxy.url + "/api/v1/sessions"
    for _ in range(3):
        assert (await fetch(url, source="127.0.0.2", headers=AUTH))[0] == 200
    assert (await fetch(url, source="127.0.0.2", headers=AUTH))[0] == 429
    # another client through the same nginx is not limited by the first one
    assert (await fetch(url, source="127.0.0.3", headers=AUTH))[0] == 200
    # the access log names the real client, not nginx
    await asyncio.sleep(0.1)
    assert "client=127.0.0.3" in daemon.output()


async def test_spoofed_forwarded_for_never_escapes_the_limit(stack: tuple[Daemon, Nginx]) -> None:
    _, proxy = stack
    url = proxy.url + "/api/v1/sessions"
    statuses = []
    for i in range(5):
        spoof = {"X-Forwarded-For": f"203.0.113.{i}", **AUTH}
        statuses.append((await fetch(url, source="127.0.0.4", headers=spoof))[0])
    assert statuses == [200, 200, 200, 429, 429]
    status, headers, body = await fetch(url, source="127.0.0.4", headers=AUTH)
    assert status == 429 and body == {"detail": "Rate limit exceeded"} and int(headers["Retry-After"]) >= 1


async def test_nginx_edge_limit_answers_json(stack: tuple[Daemon, Nginx]) -> None:
    _, proxy = stack
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.9", 0), limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[int, str, bytes]:
            async with session.get(proxy.url + "/api/v1/nothing", headers=AUTH) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

        results = await asyncio.gather(*(one() for _ in range(80)))
    edge = [r for r in results if r[0] == 429]
    assert edge, "the burst of 80 should pass nginx's burst=40"
    assert all(
        ct.startswith("application/json") and json.loads(body) == {"detail": "Rate limit exceeded"} for _, ct, body in edge
    )
