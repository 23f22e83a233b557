"""Several agents on one host: the shipped agents site routing /agents/NAME/ to each NAME's daemon.

Two real daemons, each on its own workspace with its own token, on sockets passed the way
sessiond@NAME.socket and sessiond-metrics@NAME.socket pass them, behind a real nginx
running config/nginx/sessiond-agents.conf.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urljoin

import aiohttp
import pytest

from sessiond.demo import write_session
from tests.nginx import NGINX, Agent, Agents, agents_behind_nginx
from tests.support import TOKEN, demo_session

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light; .ci/run does)")

TOKEN_B = "b-token-0123456789abcdef"
TOKENS = {"a": TOKEN, "b": TOKEN_B}
# A key whose path segment needs every kind of escaping: it must reach the daemon as sent.
ODD_KEY = "chat:a/b c%d?e#f"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[tuple[Agents, dict[str, Agent]]]:
    """Agent a with two sessions, agent b with one, behind the agents site."""
    workspaces = {}
    for name, keys in (("a", ["user:alice:1", ODD_KEY]), ("b", ["user:bob:1"])):
        workspace = tmp_path / name / "workspace"
        (workspace / "sessions").mkdir(parents=True)
        for key in keys:
            write_session(workspace / "sessions", demo_session(key, 1, 1_700_000_000))
        workspaces[name] = (workspace, TOKENS[name])
    env: dict[str, str | None] = {"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    env["SESSIOND_EVENTS_KEEPALIVE"] = "0.2"
    with agents_behind_nginx(tmp_path, workspaces, env) as stack:
        yield stack


def get(url: str, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A GET with the path sent exactly as given (no client-side normalizing of "..")."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def get_json(url: str, path: str, token: str | None = None) -> tuple[int, object]:
    status, _, body = get(url, path, token)
    return status, json.loads(body)


def test_each_agent_sees_only_its_own_workspace(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, _ = agents
    assert get_json(nginx.url, "/agents/a/api/v1/sessions", TOKEN) == (
        200,
        {"sessions": sorted(["user:alice:1", ODD_KEY]), "count": 2},
    )
    assert get_json(nginx.url, "/agents/b/api/v1/sessions", TOKEN_B) == (200, {"sessions": ["user:bob:1"], "count": 1})
    # Each agent has its own token: a's does not open b.
    assert get_json(nginx.url, "/agents/b/api/v1/sessions", TOKEN) == (401, {"detail": "Authentication required"})
    assert get_json(nginx.url, "/agents/b/api/v1/sessions/user:alice:1", TOKEN_B)[0] == 404
    status, body = get_json(nginx.url, "/agents/b/health")
    assert status == 200 and body == {"status": "ok", "sessions": 1}
    assert get_json(nginx.url, "/agents/a/readyz")[0] == 200 and get_json(nginx.url, "/agents/a/livez")[0] == 200


def test_a_key_in_the_path_reaches_its_agent_as_sent(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, _ = agents
    status, body = get_json(nginx.url, "/agents/a/api/v1/sessions/" + quote(ODD_KEY, safe=""), TOKEN)
    assert status == 200 and body["key"] == ODD_KEY  # type: ignore[index]
    status, body = get_json(nginx.url, "/agents/a/api/v1/sessions?prefix=" + quote("chat:a/b c", safe=""), TOKEN)
    assert status == 200 and body["sessions"] == [ODD_KEY]  # type: ignore[index]


def test_no_path_reaches_another_agent_or_an_unknown_one(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, _ = agents
    for path in (
        "/agents/a/api/../../b/api/v1/sessions",
        "/agents/a/api/%2e%2e/%2e%2e/b/api/v1/sessions",
        "/agents/a/../b/api/v1/sessions",
        "/agents//b/api/v1/sessions",
        "/agents/B/api/v1/sessions",
    ):
        status, _, body = get(nginx.url, path, TOKEN_B)
        assert (status, json.loads(body)) == (404, {"detail": "Not found"}), path
    assert get_json(nginx.url, "/agents/a/metrics", TOKEN) == (404, {"detail": "Not found"})  # scrapes: their own server
    assert get_json(nginx.url, "/api/v1/sessions", TOKEN) == (404, {"detail": "Not found"})


UNREACHABLE = {"detail": "Bad gateway: no sessiond answers for this agent (unknown, or stopped)"}


def test_an_unknown_or_stopped_agent_is_a_json_502(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, started = agents
    run = started["a"].socket.parent
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run / "gone.sock"))  # a socket file nobody listens on: its units stopped
    stale.close()
    for path in ("/agents/gone/health", "/agents/nobody/api/v1/sessions"):
        status, headers, body = get(nginx.url, path, TOKEN)
        assert status == 502 and headers["Content-Type"] == "application/json", path
        assert json.loads(body) == UNREACHABLE
    assert get_json(nginx.scrape_url, "/agents/nobody/metrics") == (502, UNREACHABLE)


def test_the_page_and_its_redirect_stay_under_the_prefix(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, _ = agents
    status, headers, _ = get(nginx.url, "/agents/a/ui")
    assert status == 308 and urljoin(nginx.url + "/agents/a/ui", headers["Location"]) == nginx.url + "/agents/a/ui/"
    status, headers, body = get(nginx.url, "/agents/a/ui/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = body.decode()
    start = html.index('src="') + len('src="')
    script = html[start : html.index('"', start)]
    assert script.startswith("v/")  # relative: /agents/a/ui/v/...
    status, headers, _ = get(nginx.url, "/agents/a/ui/" + script)
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")


def test_each_agent_is_scraped_on_its_own_path(agents: tuple[Agents, dict[str, Agent]]) -> None:
    nginx, _ = agents
    for name, sessions in (("a", 2), ("b", 1)):
        status, headers, body = get(nginx.scrape_url, f"/agents/{name}/metrics")  # no token
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert f"sessiond_sessions {sessions:.1f}" in body.decode().splitlines()
    assert get_json(nginx.scrape_url, "/agents/a/api/v1/sessions", TOKEN) == (404, {"detail": "Not found"})


async def test_an_agents_events_arrive_through_nginx_at_once(agents: tuple[Agents, dict[str, Agent]], tmp_path: Path) -> None:
    nginx, _ = agents
    headers = {"Authorization": f"Bearer {TOKEN_B}"}
    async with aiohttp.ClientSession() as session, session.get(nginx.url + "/agents/b/api/v1/events", headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        async with asyncio.timeout(3):
            assert await resp.content.readline() == b": connected\n"  # not held in nginx's buffers
            write_session(tmp_path / "a" / "workspace" / "sessions", demo_session("only:a", 1, 1_700_000_000))
            write_session(tmp_path / "b" / "workspace" / "sessions", demo_session("only:b", 1, 1_700_000_000))
            while await resp.content.readline() != b"event: created\n":
                pass
            assert b'"key":"only:b"' in await resp.content.readline()  # a's change is not b's
