"""Parameters of the endpoints beyond the seed, at the HTTP edge: JSON bodies and the 400."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .loader import MAX_KEY_LENGTH
from .query import QueryError
from .responses import json_response


def bad_parameter(exc: QueryError) -> web.Response:
    """400 naming the parameter, in the contract's error shape (plus `parameter`)."""
    return json_response({"detail": str(exc), "parameter": exc.param}, status=400)


async def read_object(request: web.Request, fields: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object body; unknown fields are refused, never ignored."""
    try:
        body = orjson.loads(await request.read())
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
