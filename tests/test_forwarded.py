"""Trusted-proxy handling: who the client is, on a bare app with the middleware alone."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web

from sessiond.web.front.forwarded import TrustedProxies, forwarded_middleware

NETS = [ipaddress.ip_network(n) for n in ("127.0.0.1", "10.0.0.0/8", "::1")]


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),  # untrusted peer: header ignored
        ("127.0.0.1", [], "127.0.0.1"),  # trusted peer, nothing forwarded
        ("127.0.0.1", ["1.2.3.4"], "1.2.3.4"),
        ("127.0.0.1", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # left part is client-written
        ("127.0.0.1", ["1.2.3.4, 10.1.1.1"], "1.2.3.4"),  # trusted hops are skipped
        ("127.0.0.1", ["1.2.3.4", "10.1.1.1"], "1.2.3.4"),  # several header lines
        ("127.0.0.1", ["10.0.0.2, 10.1.1.1"], "10.0.0.2"),  # all trusted: the farthest
        ("127.0.0.1", ["garbage, 10.1.1.1"], "10.1.1.1"),  # stop at what cannot be parsed
        ("127.0.0.1", ["1.2.3.4, garbage"], "127.0.0.1"),
        ("::1", ["2001:db8::1"], "2001:db8::1"),
        ("::ffff:127.0.0.1", ["1.2.3.4"], "1.2.3.4"),  # v4-mapped peer
        ("", ["1.2.3.4"], "1.2.3.4"),  # unix-socket peer (nginx)
    ],
)
def test_client_of(peer: str, xff: list[str], client: str) -> None:
    assert TrustedProxies(NETS).client_of(peer, xff) == client


def test_nothing_trusted_by_default_over_tcp() -> None:
    assert TrustedProxies(()).client_of("127.0.0.1", ["1.2.3.4"]) == "127.0.0.1"


async def test_middleware_rewrites_remote(aiohttp_client) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.remote or "")

    proxies = TrustedProxies(NETS)
    app = web.Application(middlewares=[forwarded_middleware(lambda: proxies)])
    app.router.add_get("/", echo)
    client = await aiohttp_client(app)
    assert await (await client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})).text() == "198.51.100.7"
    assert await (await client.get("/")).text() == "127.0.0.1"
    proxies.networks = ()  # as after a reload that drops the proxy
    assert await (await client.get("/", headers={"X-Forwarded-For": "198.51.100.7"})).text() == "127.0.0.1"
