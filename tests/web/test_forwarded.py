"""Trusted-proxy handling: who the client is, on a bare app with the middleware alone."""

from __future__ import annotations

import ipaddress
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from sessiond.web.front.forwarded import TrustedProxies, as_client_sees_it

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


def test_as_client_sees_it_rewrites_remote_only_behind_a_trusted_proxy() -> None:
    """The front door's step 4, as it calls it: the request as the client sees it."""
    proxies = TrustedProxies(NETS)

    def remote(headers: dict[str, str]) -> str | None:
        request = make_mocked_request("GET", "/", headers=headers, transport=_peer("127.0.0.1"))
        return as_client_sees_it(request, proxies).remote

    assert remote({"X-Forwarded-For": "198.51.100.7"}) == "198.51.100.7"
    assert remote({}) == "127.0.0.1"
    proxies.networks = ()  # as after a reload that drops the proxy
    assert remote({"X-Forwarded-For": "198.51.100.7"}) == "127.0.0.1"


def _peer(address: str) -> mock.Mock:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (address, 40000) if name == "peername" else default
    return transport
