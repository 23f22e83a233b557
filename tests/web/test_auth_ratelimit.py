"""Bearer auth and the two rate limits, through the real app."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from sessiond.web.front.ratelimit import RateLimiter, client_key, too_many
from tests.support import AUTH, TOKEN


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        "Bearer wrong-token-0123456789abcdef",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer tökén-ñon-ascii",
        "Bearer " + "a" * 6000,
    ],
)
async def test_bad_credentials_are_401(client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/sessions", "/api/v1/sessions/x", "/api/v1/health", "/metrics"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401, (header, path)
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert await resp.json() == {"detail": "Authentication required"}
        assert TOKEN not in await resp.text()


async def test_raw_non_ascii_header_bytes_are_401_not_500(client: TestClient) -> None:
    reader_writer = await __import__("asyncio").open_connection(client.host, client.port)
    reader, writer = reader_writer
    writer.write(
        b"GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\x28\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 401"), data[:100]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_scheme_is_case_insensitive(client: TestClient, scheme: str) -> None:
    resp = await client.get("/api/v1/sessions", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert resp.status == 200


async def test_health_needs_no_token_and_is_never_limited(start_client) -> None:
    client = await start_client(rate_limit_per_ip=1)
    for _ in range(5):
        assert (await client.get("/health")).status == 200


async def test_metrics_token_setting(start_client) -> None:
    client = await start_client(metrics_require_token=False)
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert "sessiond_sessions 0.0" in text
    assert all(line.startswith(("#", "sessiond_")) for line in text.splitlines() if line)


async def test_per_ip_limit_429_shape(start_client) -> None:
    client = await start_client(rate_limit_per_ip=3)
    for _ in range(3):
        assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
    resp = await client.get("/api/v1/sessions", headers=AUTH)
    assert resp.status == 429
    assert await resp.json() == {"detail": "Rate limit exceeded"}
    assert resp.headers["Cache-Control"] == "no-store"
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["X-Request-ID"]
    # unauthenticated guesses count against the same address
    assert (await client.get("/api/v1/sessions")).status == 429


async def test_per_ip_limit_counts_failed_auth(start_client) -> None:
    client = await start_client(rate_limit_per_ip=2)
    assert (await client.get("/api/v1/sessions")).status == 401
    assert (await client.get("/api/v1/sessions")).status == 401
    assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 429


async def test_per_token_limit(start_client) -> None:
    client = await start_client(rate_limit_per_token=2)
    assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 200
    assert (await client.get("/api/v1/sessions/x", headers=AUTH)).status == 404
    assert (await client.get("/api/v1/sessions", headers=AUTH)).status == 429
    # a wrong token is not charged to the real token's bucket; it is just refused
    assert (await client.get("/api/v1/sessions", headers={"Authorization": "Bearer nope-nope-nope-nope"})).status == 401


async def test_metrics_count_rate_limited(start_client) -> None:
    client = await start_client(rate_limit_per_ip=1)
    await client.get("/api/v1/sessions", headers=AUTH)
    await client.get("/api/v1/sessions", headers=AUTH)
    text = await (await client.get("/metrics", headers=AUTH)).text()
    assert 'sessiond_rate_limited_total{limit="ip"} 1.0' in text


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_key("10.0.0.1") == "10.0.0.1"
    assert client_key(None) == "-"


async def test_limiter_map_is_bounded() -> None:
    limiter = RateLimiter(per_minute=1, max_keys=100)
    for i in range(10_000):
        assert limiter.allow(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(limiter) == 100
    # the most recent client keeps its (full) bucket
    assert not limiter.allow("10.0.39.15")


async def test_a_full_bucket_is_refused_at_once_never_queued() -> None:
    """The front door's steps 5 and 6, as it calls them: allow() says no at once, too_many() answers."""
    limiter = RateLimiter(per_minute=1)
    assert limiter.allow("one")
    started = time.monotonic()
    assert not limiter.allow("one")
    assert time.monotonic() - started < 0.5  # answered, not parked until capacity returns
    response = too_many(limiter)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert response.headers["Cache-Control"] == "no-store"


async def test_guessing_tokens_on_metrics_is_rate_limited_but_monitoring_is_not(start_client) -> None:
    client = await start_client(rate_limit_per_ip=60)
    statuses = [
        (await client.get("/metrics", headers={"Authorization": f"Bearer wrong-{i:04d}-guess"})).status for i in range(300)
    ]
    assert statuses.count(401) <= 61 and statuses.count(429) >= 239
    limited = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert limited.headers["Retry-After"] and (await limited.json())["detail"] == "Rate limit exceeded"
    for _ in range(100):  # the real token, from the same address, is never held up
        assert (await client.get("/metrics", headers=AUTH)).status == 200
