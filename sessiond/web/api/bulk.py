"""POST /api/v1/sessions:batchDelete: delete many sessions by key or by filter, guarded."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from sessiond.core.errors import DeleteFailed, SessionNotFound
from sessiond.core.index import SessionIndex
from sessiond.core.query import QueryError, parse_filter, select, whole_number
from sessiond.web.appkeys import STORE
from sessiond.web.params import flag, read_object, string_list
from sessiond.web.responses import NOT_FOUND, json_response

log = logging.getLogger(__name__)

FIELDS = frozenset({"keys", "filter", "dry_run", "max"})
DEFAULT_MAX = 1000
MOST = 1_000_000  # sessions one call may delete (max)
MOST_KEYS = 10_000  # keys one call may name
# 10,000 keys of 100 characters, JSON-escaped, fit; the app's 64 KiB limit would stop near 5,000.
BODY_LIMIT = 2 * 1024 * 1024


async def batch_delete(request: web.Request) -> web.Response:
    """Match keys or a filter; refuse more than `max`; unless `dry_run`, delete each one."""
    store = request.app[STORE]
    body = await read_object(request, FIELDS, BODY_LIMIT)
    dry_run = flag(body, "dry_run")
    most = whole_number("max", body["max"], 1, MOST) if "max" in body else DEFAULT_MAX
    keys = _keys_or_filter(store.index, body)
    matched: list[str] = []
    failed: list[dict[str, str]] = []
    for key in keys:
        # store.find, as for one DELETE: a session the agent saved a moment ago is found.
        if key in store.index or await store.find(key) is not None:
            matched.append(key)
        else:
            failed.append({"key": key, "reason": NOT_FOUND})
    if len(matched) > most:
        raise web.HTTPConflict(text=f"{len(matched)} sessions match, more than max ({most}); narrow the filter or raise max")
    deleted: list[str] = []
    if not dry_run:
        for key in matched:
            try:
                await store.delete(key)
            except SessionNotFound:
                failed.append({"key": key, "reason": NOT_FOUND})
            except DeleteFailed as exc:
                failed.append({"key": key, "reason": f"Cannot delete: {exc}"})
            else:
                deleted.append(key)
    return json_response({"dry_run": dry_run, "matched": matched, "deleted": deleted, "failed": failed})


def _keys_or_filter(index: SessionIndex, body: dict[str, Any]) -> list[str]:
    """The keys named, or the keys the filter matches now."""
    if ("keys" in body) == ("filter" in body):
        raise QueryError("keys", "give either keys or filter (not both, not neither)")
    if "keys" in body:
        return string_list(body, "keys", MOST_KEYS)
    if not isinstance(body["filter"], dict):
        raise QueryError("filter", "must be an object of filter parameters")
    if body["filter"].get("prefix") == "":
        raise QueryError("prefix", "is empty; leave it out, or name the prefix to delete")
    flt = parse_filter(body["filter"])
    if flt.is_empty():
        raise QueryError("filter", "is empty, which would match every session; name at least one bound")
    return [r.key for r in select(index, flt)]
