"""Bearer-token authentication for everything but the public probes."""

from __future__ import annotations

import hmac
from typing import Protocol

from aiohttp import web

from sessiond.web.front.ratelimit import RateLimiter, client_key, too_many
from sessiond.web.front.request_id import info_of
from sessiond.web.responses import error_response

UNAUTHORIZED = "Authentication required"


class Credentials(Protocol):
    """What authentication reads, as of now (web.runtime.Runtime: a reload changes it)."""

    token: bytes
    token_id: str
    auth_failure_limiter: RateLimiter | None


def presented_token(request: web.Request) -> bytes | None:
    """The bearer token of the request as bytes, or None (scheme is case-insensitive)."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token:
        return None
    # Header values arrive as str; non-ASCII bytes must compare (and fail), not raise.
    return token.encode("utf-8", "surrogateescape")


async def authenticate(request: web.Request, runtime: Credentials) -> web.Response | None:
    """None if the request carries the token (its id noted for the per-token limit), else the 401 (or 429)."""
    token = presented_token(request)
    # compare_digest on bytes runs in time independent of where they differ.
    if token is None or not hmac.compare_digest(token, runtime.token):
        limiter = runtime.auth_failure_limiter
        if limiter is not None and not await limiter.allow(client_key(request.remote)):
            return too_many(limiter)  # guessing tokens, on any path, is rate limited
        return error_response(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    if (info := info_of(request)) is not None:
        info.token_id = runtime.token_id
    return None
