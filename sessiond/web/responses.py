"""Response builders shared by handlers and the front door."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

NOT_FOUND = "Session not found"
# A client that takes no byte of a streamed response for this long is dropped, so a
# stalled reader cannot hold a handler (or a stop) for ever.
WRITE_TIMEOUT = 30.0


# What every JSON answer carries (request_id.stamp adds its request id): no shared caching,
# no sniffing, no framing, and a policy that lets the body do nothing in a browser. Built
# with the response once, instead of stamped on one by one (a plain header is also cheaper
# than content_type=, which re-parses and re-sets it).
JSON_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'",
}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson, with the headers every JSON answer carries (*headers* win)."""
    return web.Response(body=orjson.dumps(data), status=status, headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """True if an If-None-Match header names *etag* (or is `*`); weak tags compare too."""
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The contract's error shape: `{"detail": ...}`."""
    return json_response({"detail": detail}, status=status, headers=headers)


async def write_or_drop(request: web.BaseRequest, response: web.StreamResponse, data: bytes) -> None:
    """Write *data*; a client that takes none of it within WRITE_TIMEOUT is cut (ConnectionResetError)."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write(data)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("client stopped reading") from None
