"""Who the client is behind a reverse proxy: X-Forwarded-For from trusted peers only.

Policy (like aiohttp-remotes' XForwardedStrict, minus its refusals):
- a peer that is not a trusted proxy is the client; its X-Forwarded-For is
  ignored (not refused: a stray header from a direct client is harmless when
  nothing believes it);
- from a trusted peer, the client is the right-most X-Forwarded-For address
  that is not itself a trusted proxy (entries to its left are client-written
  and never believed); an unparseable entry stops the walk at the last hop
  that was trustworthy;
- a peer on the unix socket is trusted: only local processes the socket's
  mode admits (nginx) can connect to it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web

from sessiond.config import IPNetwork
from sessiond.web.front.request_id import info_of


class TrustedProxies:
    """Decides the client address of a request from its peer and X-Forwarded-For."""

    def __init__(self, networks: Sequence[IPNetwork]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: str | None) -> bool:
        """True for the unix socket (no address) and addresses inside a trusted network."""
        if not address:
            return True
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def client_of(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client address: *peer* unless it is a trusted proxy forwarding for someone."""
        # Most requests carry no header: answer before parsing any address.
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                break
            client = address
            if not self.trusts(address):
                break
        return client


def as_client_sees_it(request: web.Request, proxies: TrustedProxies) -> web.Request:
    """*request* with `remote` the real client (a clone, only when a trusted proxy says so)."""
    forwarded_for = request.headers.getall(hdrs.X_FORWARDED_FOR, ())
    if not forwarded_for:
        return request  # most requests: nothing to parse
    peer = request.remote
    client = proxies.client_of(peer, forwarded_for)
    if client == peer or client is None:
        return request
    if (info := info_of(request)) is not None:
        info.client = client
    return request.clone(remote=client)
