"""Hostile clients over raw sockets: a 4xx or a closed connection, never a 5xx, bounded cost.

Errors that aiohttp's HTTP parser raises itself (a malformed request line, too
many or too large headers) are answered by aiohttp as text/plain before any
middleware runs; aiohttp has no hook for them (aio-libs/aiohttp#3287), so those
few are 4xx text, not JSON. Everything that reaches the app is JSON.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from sessiond import app as app_mod
from tests.support import AUTH, TOKEN, eventually, store_of, write_atomic

AUTH_LINE = f"Authorization: Bearer {TOKEN}\r\n".encode()


async def exchange(client: TestClient, raw: bytes, source: str | None = None, timeout: float = 5) -> bytes:
    """Send raw bytes, return everything the server answers before closing (b"" if it just closed)."""
    local = (source, 0) if source else None
    reader, writer = await asyncio.open_connection(client.host, client.port, local_addr=local)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def status_of(answer: bytes) -> int | None:
    """The status code of the first response, None for a bare close."""
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None


def get(target: bytes, *headers: bytes, auth: bytes = AUTH_LINE) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + auth + b"".join(headers) + b"\r\n"


TRAVERSALS = [
    b"/api/v1/sessions/../../../../etc/passwd",
    b"/api/v1/sessions/..%2F..%2F..%2Fetc%2Fpasswd",
    b"/api/v1/sessions/%2e%2e/%2e%2e/workspace",
    b"/api/v1/sessions/%2E%2E%2F%2E%2E%2Fsibling.json",
    b"/api/v1/sessions/%252e%252e%252fsibling",
    b"/api/v1/sessions/%25252e%25252e%25252f",
    b"/api/v1/sessions/..%5c..%5csibling",
    b"/api/v1/sessions/..\\..\\sibling",
    b"/api/v1/sessions/..%c0%af..%c0%afsibling",
    b"/api/v1/sessions/%uff0e%uff0e%u2215sibling",
    b"/api/v1/sessions/..;/..;/sibling",
    b"/api/v1/sessions/%2fetc%2fpasswd",
    b"/api/v1/sessions//etc/passwd",
    b"/api/v1/sessions/sessions%2F..%2F..%2Fsibling",
    b"/api/v1/sessions/a%00b",
    b"/api/v1/sessions/%ff%fe%fd",
    b"/api/v1/sessions/" + b"k" * 4097,
    b"http://evil.example/api/v1/sessions/..%2f..%2fsibling",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=range(len(TRAVERSALS)))
@pytest.mark.parametrize("method", [b"GET", b"DELETE"])
async def test_traversal_in_every_encoding_touches_nothing(
    client: TestClient, workspace: Path, tmp_path: Path, target: bytes, method: bytes
) -> None:
    (workspace / "sibling.json").write_text('{"key": "sibling", "messages": []}')
    (tmp_path / "canary").write_text("x")
    write_atomic(workspace / "sessions", "keep:me")
    await eventually(lambda: "keep:me" in store_of(client).index)
    before = sorted(tmp_path.rglob("*"))
    answer = await exchange(client, method + get(target)[3:])
    status = status_of(answer)
    assert status is not None and 400 <= status < 500, answer[:200]
    assert str(tmp_path).encode() not in answer
    assert sorted(tmp_path.rglob("*")) == before


RAW_GARBAGE = {
    "nul-in-path": b"GET /api/v1/sessions/a\x00b HTTP/1.1\r\nHost: t\r\n\r\n",
    "ctl-in-path": b"GET /api/v1/sessions/a\x01\x7fb HTTP/1.1\r\nHost: t\r\n\r\n",
    "spaces-in-path": b"GET /api/v1/sessions/a b c HTTP/1.1\r\nHost: t\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "bad-method": b"G\xc3\xa9T / HTTP/1.1\r\n\r\n",
    "bad-version": b"GET /health HTTP/9.9\r\nHost: t\r\n\r\n",
    "http-0.9": b"GET /api/v1/sessions\r\n\r\n",
    "long-request-line": b"GET /api/v1/sessions/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    "huge-header": get(b"/api/v1/sessions", b"X-Big: " + b"b" * 20_000 + b"\r\n"),
    "many-headers": get(b"/api/v1/sessions", *(b"X-H%d: v\r\n" % i for i in range(300))),
    "huge-token": get(b"/api/v1/sessions", auth=b"Authorization: Bearer " + b"t" * 20_000 + b"\r\n"),
    "header-no-colon": get(b"/api/v1/sessions", b"NoColonHere\r\n"),
    "bad-content-length": get(b"/api/v1/sessions", b"Content-Length: -5\r\n"),
    "double-content-length": get(b"/api/v1/sessions", b"Content-Length: 1\r\nContent-Length: 2\r\n"),
    "bad-chunk": b"DELETE /api/v1/sessions/x HTTP/1.1\r\nHost: t\r\n"
    + AUTH_LINE
    + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
    "te-and-cl": b"DELETE /api/v1/sessions/x HTTP/1.1\r\nHost: t\r\n"
    + AUTH_LINE
    + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "big-body": b"DELETE /api/v1/sessions/nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    + AUTH_LINE
    + b"Content-Length: 1000000\r\n\r\n"
    + b"z" * 1_000_000,
    "non-ascii-token": get(b"/api/v1/sessions", auth=b"Authorization: Bearer \xe2\x82\xac\xff\x00\r\n"),
    "token-8k": get(b"/api/v1/sessions", auth=b"Authorization: Bearer " + b"t" * 8000 + b"\r\n"),
    "two-auth-headers": get(b"/api/v1/sessions", AUTH_LINE, auth=b"Authorization: Bearer wrong\r\n"),
}


@pytest.mark.parametrize("raw", RAW_GARBAGE.values(), ids=RAW_GARBAGE.keys())
async def test_malformed_requests_are_4xx_or_closed_never_5xx(client: TestClient, raw: bytes) -> None:
    status = status_of(await exchange(client, raw))
    assert status is None or 400 <= status < 500, status
    resp = await client.get("/health")
    assert resp.status == 200  # and the daemon is none the worse


async def test_slowloris_is_cut_off_and_others_are_served(start_client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_mod, "CLIENT_TIMEOUT", 0.5)  # 75 s in production
    client = await start_client()
    slow = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /api/v1/sessions HTTP/1.1\r\nHost: t\r\n")
        slow.append((reader, writer))
    idle = await asyncio.open_connection(client.host, client.port)  # never sends a byte
    started = time.monotonic()
    for _ in range(5):  # headers trickle in, never finished
        for _, writer in slow:
            writer.write(b"X-a: b\r\n")
        assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
        await asyncio.sleep(0.1)
    for reader, writer in [*slow, idle]:
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed by the server
        writer.close()
    assert time.monotonic() - started < 3


async def test_flood_of_distinct_addresses_keeps_the_limiter_bounded(start_client) -> None:
    client = await start_client(rate_limit_per_ip=1, rate_limit_max_clients=100)
    first = "127.0.1.1"
    assert status_of(await exchange(client, get(b"/api/v1/sessions"), source=first)) == 200
    assert status_of(await exchange(client, get(b"/api/v1/sessions"), source=first)) == 429
    statuses = set()
    for i in range(250):  # more distinct clients than the limiter keeps buckets for
        statuses.add(status_of(await exchange(client, get(b"/api/v1/sessions"), source=f"127.0.2.{i + 1}")))
    assert statuses == {200}
    # The oldest bucket was dropped to make room: bounded memory, and the first client starts afresh.
    assert status_of(await exchange(client, get(b"/api/v1/sessions"), source=first)) == 200


async def test_made_up_methods_add_no_metric_series(client: TestClient) -> None:
    # Methods the HTTP parser knows (WebDAV, UPnP, ...); with the pure-Python parser any token passes.
    exotic = b"PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK SEARCH PURGE MKACTIVITY CHECKOUT MERGE NOTIFY SUBSCRIBE UNSUBSCRIBE REPORT ACL BIND REBIND UNBIND LINK UNLINK MKCALENDAR TRACE QUERY"
    for method in exotic.split():
        answer = await exchange(client, method + b" /api/v1/sessions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=2)
        assert status_of(answer) in (401, 405, 400, None)
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    methods = set(re.findall(r'sessiond_requests_total\{method="([^"]*)"', metrics))
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    assert "other" in methods


@pytest.mark.slow
def test_a_client_cannot_forge_a_log_line(workspace: Path) -> None:
    from tests.support import Daemon

    forged = "2026-11-30 12:00:00,000 CRITICAL sessiond: forged"
    with Daemon(workspace) as d:
        d.wait_ready()
        for path in ("/api/v1/x%0A" + forged.replace(" ", "%20"), "/api/v1/sessions/k%0D%0A" + forged.replace(" ", "%20")):
            status, _ = d.get(path, token=None)
            assert status == 401
            status, _ = d.get(path)
            assert status == 404
        assert d.stop() == 0
        lines = d.output().splitlines()
    assert not [line for line in lines if line.startswith(forged[:23])], lines
    assert any("\\x0a2026-11-30" in line for line in lines)  # the path is logged, its line break escaped


@pytest.mark.slow
def test_headers_a_client_sends_cannot_forge_or_colour_a_log_line(workspace: Path) -> None:
    """Header values reach the access log only through the request id (a strict pattern) and
    the client address (forwarding headers count only from trusted proxies)."""
    import socket

    from tests.support import Daemon

    with Daemon(workspace) as d:
        d.wait_ready()
        for name, value in (
            (b"X-Request-ID", b"ok\x1b[2J\x1b[31mCRITICAL forged"),
            (b"X-Request-ID", "rid\u2028CRITICAL forged".encode()),
            (b"X-Forwarded-For", b"6.6.6.6\x0bCRITICAL forged"),
            (b"Forwarded", b'for="\x1b[2Jforged"'),
        ):
            with socket.create_connection(("127.0.0.1", d.port), timeout=5) as sock:
                sock.sendall(
                    b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\n" + name + b": " + value + b"\r\nConnection: close\r\n\r\n"
                )
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
            assert reply.split(b" ", 2)[1].startswith(b"4"), reply[:100]  # refused by the parser, or 401
        assert d.stop() == 0
        log = d.output()
    assert "\x1b" not in log and "\u2028" not in log and "\x0b" not in log  # escaped, never raw
    lines = log.splitlines()
    assert [line for line in lines if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ", line)] == []
    assert not [line for line in lines if "CRITICAL" in line.split(" ", 3)[2]]


@pytest.mark.slow
def test_clients_that_stop_reading_never_hold_the_stop_past_its_timeout(workspace: Path) -> None:
    import signal as signals
    import socket

    from tests.support import Daemon

    sessions = workspace / "sessions"
    for i in range(40):  # an export big enough to fill every socket buffer on the way
        write_atomic(sessions, f"big:{i}", messages=3000)
    timeout = 3.0
    env = {"SESSIOND_SHUTDOWN_TIMEOUT": str(timeout), "SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        stalled = []
        for target in (b"/api/v1/events", b"/api/v1/export?prefix=big", b"/api/v1/export?key=big:1"):
            sock = socket.create_connection(("127.0.0.1", d.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + AUTH_LINE + b"\r\n")
            stalled.append(sock)
        time.sleep(1)  # the daemon is blocked writing to them
        started = time.monotonic()
        assert d.stop(signals.SIGTERM, timeout=60) == 0
        took = time.monotonic() - started
        for sock in stalled:
            sock.close()
    print(f"\nstop with 3 stalled clients took {took:.1f}s (shutdown_timeout {timeout:g}s)")
    assert took < timeout + 3, d.output()


@pytest.mark.slow
def test_idle_connections_past_the_descriptor_limit_leave_probes_answered(workspace: Path) -> None:
    import shutil
    import socket

    from tests.support import Daemon

    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    write_atomic(workspace / "sessions", "a:1")
    # 256 descriptors in all (soft and hard), as a starved host or a careless unit would give.
    with Daemon(workspace, prefix=("prlimit", "--nofile=256:256", "--")) as d:
        d.wait_ready()
        idle = []
        try:
            for _ in range(400):  # connections that never send a byte, without a token
                idle.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))
            time.sleep(0.5)
            started = time.monotonic()
            assert d.get("/health", token=None, timeout=3)[0] == 200  # monitoring still gets through
            assert d.get("/livez", token=None, timeout=3)[0] == 200
            took = time.monotonic() - started
            status, headers, body = d.request("GET", "/api/v1/sessions", timeout=3)
            assert status == 503 and headers["Retry-After"] and b"Too many connections" in body
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.5)
        assert d.get("/api/v1/sessions")[0] == 200  # and everything is served again
        metrics = d.get("/metrics")[1].decode()
        refused = next(line for line in metrics.splitlines() if line.startswith("sessiond_connections_refused_total"))
        assert float(refused.split()[1]) > 0
        assert d.stop() == 0
        output = d.output()
    assert took < 1.0
    assert output.count("Traceback") == 0 and len(output.splitlines()) < 60, output[-3000:]
