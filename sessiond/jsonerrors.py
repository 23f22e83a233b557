"""Why a file is not JSON, in words an operator can act on.

simdjson reports only a code (`TAPE_ERROR`, `UTF8_ERROR`, ...). For the rare
file it refuses, the standard library's parser says where and what.
"""

from __future__ import annotations

import json


def describe_invalid_json(data: bytes, fallback: str) -> str:
    """Where and why *data* is not JSON ("Expecting ',' delimiter at line 3 column 5"), else *fallback*."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 at byte {exc.start}"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "nested too deeply"
    return fallback
