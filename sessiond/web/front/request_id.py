"""Give every request an id (the client's X-Request-ID when sane) and stamp every response (stamp).

Every response, errors included, carries X-Request-ID and (unless a handler chose
otherwise) `Cache-Control: no-store`: session data must not sit in shared caches.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import MutableMapping

from aiohttp import web

from sessiond.core.audit import Actor
from sessiond.core.tokens import NamedToken
from sessiond.web.typedefs import Handler

REQUEST_ID_HEADER = "X-Request-ID"

# Made-up ids: a random per-process prefix and a counter. Unique without a
# syscall per request (getrandom costs more than the rest of this middleware).
_PREFIX = os.urandom(6).hex()
_counter = itertools.count(1)


def _new_id() -> str:
    return f"{_PREFIX}{next(_counter):010x}"


# Echo only ids that are safe to put in a header and a log line.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestInfo:
    """Per-request facts shared by the front door's parts and the access log.

    One mutable object, because `request.clone()` copies the request's state
    shallowly: what a later part learns (the real client) reaches the log.
    """

    __slots__ = ("client", "id", "prepared", "token")

    def __init__(self, rid: str, client: str | None) -> None:
        self.id = rid
        self.client = client
        self.token: NamedToken | None = None  # set by auth once the token is known good
        self.prepared = False  # headers sent: an error now can only cut the connection


# Per-request state (one mutable object; see RequestInfo), beside the middleware that sets it.
REQUEST_INFO = web.RequestKey("info", RequestInfo)


def info_of(request: web.BaseRequest) -> RequestInfo | None:
    """The RequestInfo the front door (or the scrape listener's middleware) attached, if any."""
    return request.get(REQUEST_INFO)


def request_id_of(request: web.BaseRequest) -> str:
    """The id this request is known by."""
    info = info_of(request)
    return info.id if info else "-"


def actor_of(request: web.BaseRequest) -> Actor:
    """Who makes this request, for the audit: the token's name, the client as sessiond believes it, the request id."""
    info = info_of(request)
    if info is None:
        return Actor("-", request.remote)
    return Actor(info.token.name if info.token else "-", info.client or request.remote, info.id)


def begin(request: web.Request) -> RequestInfo:
    """Attach the request's RequestInfo (the client's X-Request-ID when sane, else a new id)."""
    sent = request.headers.get(REQUEST_ID_HEADER)
    rid = sent if sent and _SAFE_ID.fullmatch(sent) else _new_id()
    info = request[REQUEST_INFO] = RequestInfo(rid, request.remote)
    return info


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the RequestInfo; stamp_response puts its id on the way out."""
    begin(request)
    return await handler(request)


# The headers every response carries unless its handler chose its own (see stamp).
_NO_STORE = "no-store"
_NO_SNIFF = "nosniff"
_NO_FRAMES = "DENY"
_JSON_POLICY = "default-src 'none'"


def stamp(request: web.BaseRequest, headers: MutableMapping[str, str]) -> None:
    """X-Request-ID, Cache-Control and the security headers, on the headers of a response not yet sent.

    The security headers are the ones the agent's own API sends: no sniffing, no
    framing, and for JSON a policy that lets the body do nothing in a browser (a page
    with a policy of its own, the UI, keeps it). A plain call, not the
    on_response_prepare signal: the signal costs a coroutine and its dispatch on every
    response (~3 us). The front door stamps what a handler returns or raises; a
    handler that streams stamps before it prepares (prepare_stamped).
    """
    if (info := info_of(request)) is not None:
        headers[REQUEST_ID_HEADER] = info.id
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = _NO_STORE
    headers["X-Content-Type-Options"] = _NO_SNIFF
    if "X-Frame-Options" not in headers:
        headers["X-Frame-Options"] = _NO_FRAMES
    if "Content-Security-Policy" not in headers and headers.get("Content-Type", "").startswith("application/json"):
        headers["Content-Security-Policy"] = _JSON_POLICY


async def prepare_stamped(request: web.Request, response: web.StreamResponse) -> None:
    """Stamp and send the headers of a streamed response; an error after this can only cut the connection."""
    stamp(request, response.headers)
    if (info := info_of(request)) is not None:
        info.prepared = True
    await response.prepare(request)


async def stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare, for the scrape listener's small app (stamp, as a signal: not a hot path)."""
    stamp(request, response.headers)
    if (info := info_of(request)) is not None:
        info.prepared = True
