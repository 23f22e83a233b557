"""Give every request an id (the client's X-Request-ID when sane) and stamp every response.

Every response, errors included, carries X-Request-ID and (unless a handler chose
otherwise) `Cache-Control: no-store`: session data must not sit in shared caches.
"""

from __future__ import annotations

import os
import re

from aiohttp import web
from multidict import CIMultiDict

from ..keys import REQUEST_ID_HEADER, REQUEST_INFO
from ..typedefs import Handler

# Echo only ids that are safe to put in a header and a log line.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class RequestInfo:
    """Per-request facts shared by middlewares and the access log.

    One mutable object, because `request.clone()` copies the request's state
    shallowly: what a later middleware learns (the real client) reaches the log.
    """

    __slots__ = ("id", "client", "token_id")

    def __init__(self, rid: str, client: str | None) -> None:
        self.id = rid
        self.client = client
        self.token_id: str | None = None  # set by auth once the token is known good


def info_of(request: web.BaseRequest) -> RequestInfo | None:
    """The RequestInfo the middleware attached, if any."""
    return request.get(REQUEST_INFO)


def request_id_of(request: web.BaseRequest) -> str:
    """The id this request is known by."""
    info = info_of(request)
    return info.id if info else "-"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach a RequestInfo and stamp X-Request-ID and Cache-Control on the response."""
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    rid = sent if sent and _SAFE_ID.fullmatch(sent) else os.urandom(16).hex()
    request[REQUEST_INFO] = RequestInfo(rid, request.remote)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _stamp(exc.headers, rid)
        raise
    _stamp(response.headers, rid)
    return response


def _stamp(headers: CIMultiDict[str], rid: str) -> None:
    headers[REQUEST_ID_HEADER] = rid
    headers.setdefault("Cache-Control", "no-store")


async def stamp_streamed(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: stamp responses a handler streams itself (SSE, exports).

    Their headers leave when the handler prepares them, before the middleware could.
    """
    if (info := info_of(request)) is not None:
        _stamp(response.headers, info.id)
