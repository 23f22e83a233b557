"""Parameters of the endpoints beyond the seed, at the HTTP edge: JSON bodies and the 400."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sessiond.core.names import MAX_KEY_LENGTH
from sessiond.core.query import QueryError


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with 413 past *limit* bytes (which may exceed the app's own limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: web.Request, fields: frozenset[str], limit: int | None = None) -> dict[str, Any]:
    """The request's JSON object body; unknown fields are refused, never ignored."""
    raw = await request.read() if limit is None else await read_body(request, limit)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise QueryError("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise QueryError("body", "must be a JSON object")
    for name in body:
        if name not in fields:
            raise QueryError(name, f"unknown field; use {', '.join(sorted(fields))}")
    return body


def flag(body: dict[str, Any], name: str) -> bool:
    """A true/false field, false when absent."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise QueryError(name, "must be true or false")
    return value


def string_list(body: dict[str, Any], name: str, most: int) -> list[str]:
    """A non-empty list of distinct non-empty strings (keys, trash ids), in the order given."""
    value = body[name]
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise QueryError(name, f"must be a list of 1 to {most} strings")
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_KEY_LENGTH:
            raise QueryError(name, f"every item must be a string of 1 to {MAX_KEY_LENGTH} characters")
    return list(dict.fromkeys(value))
