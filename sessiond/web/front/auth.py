"""Bearer-token authentication for everything but the public probes, and the scope a route needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from sessiond.core.tokens import NamedToken, Scope, digest_of
from sessiond.web.front.ratelimit import RateLimiter, client_key, too_many
from sessiond.web.front.request_id import info_of
from sessiond.web.responses import error_response

UNAUTHORIZED = "Authentication required"


class Credentials(Protocol):
    """What authentication reads, as of now (web.runtime.Runtime: a reload changes it)."""

    tokens: Mapping[bytes, NamedToken]
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


async def authenticate(request: web.Request, runtime: Credentials) -> NamedToken | web.Response:
    """The token the request carries (noted on the request), else the 401 (or 429).

    Tokens are looked up by the SHA-256 of what was presented, in one dict, however many
    there are: the time taken depends on that digest alone, never on how much of a real
    token a guess matches, nor on which token (or how many) exist.
    """
    token = presented_token(request)
    known = runtime.tokens.get(digest_of(token)) if token is not None else None
    if known is None:
        limiter = runtime.auth_failure_limiter
        if limiter is not None and not limiter.allow(client_key(request.remote)):
            return too_many(limiter)  # guessing tokens, on any path, is rate limited
        return error_response(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    if (info := info_of(request)) is not None:
        info.token = known
    return known


def forbidden(token: NamedToken, needs: Scope, doing: str) -> web.Response | None:
    """None when *token* may do what a route *needs*; else the 403 naming the token and what it may not do."""
    if token.scope >= needs:
        return None
    return error_response(403, f"The token '{token.name}' may not {doing}")
