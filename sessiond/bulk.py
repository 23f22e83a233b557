"""POST /api/v1/sessions:batchDelete: delete many sessions by key or by filter, guarded.

`expect` ({key: version}, the version a list, detail or dry-run answer gave) deletes a
key only if its session is still that very file: one rewritten since stays and is
reported in `failed`. The comparison is the one retention relies on (store.delete with
the expected record: under the store's lock, and against the file's full stat as the
rename happens), so nothing written after the client looked can go.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from .appkeys import STORE
from .errors import DeleteFailed, SessionChanged, SessionNotFound
from .index import SessionIndex
from .params import flag, read_object, string_list
from .query import QueryError, parse_filter, select, version, whole_number
from .responses import NOT_FOUND, json_response

log = logging.getLogger(__name__)

FIELDS = frozenset({"keys", "filter", "dry_run", "max", "expect"})
CHANGED = "changed since it was shown; not deleted"
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
    expect = _expected(body, keys)
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
                if key in expect:
                    record = store.index.get(key)
                    if record is None:
                        raise SessionNotFound(key)
                    if version(record) != expect[key]:
                        raise SessionChanged(key)
                    # Only that very record, and only files unchanged since it was read.
                    await store.delete(key, expected=record)
                else:
                    await store.delete(key)
            except SessionNotFound:
                failed.append({"key": key, "reason": NOT_FOUND})
            except SessionChanged:
                failed.append({"key": key, "reason": CHANGED})
            except DeleteFailed as exc:
                failed.append({"key": key, "reason": f"Cannot delete: {exc}"})
            else:
                deleted.append(key)
    answer: dict[str, Any] = {"dry_run": dry_run, "matched": matched, "deleted": deleted, "failed": failed}
    if dry_run:
        # What each matched key is now, for a confirmed delete to hand back as `expect`.
        answer["versions"] = {key: version(r) for key in matched if (r := store.index.get(key)) is not None}
    return json_response(answer)


def _expected(body: dict[str, Any], keys: list[str]) -> dict[str, str]:
    """`expect`: the version each named key was shown with (only with `keys`)."""
    if "expect" not in body:
        return {}
    expect = body["expect"]
    if "keys" not in body:
        raise QueryError("expect", "goes with keys (the keys that were shown), not with filter")
    if not isinstance(expect, dict) or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in expect.values()):
        raise QueryError("expect", "must be an object of key: version (a string from a list, detail or dry-run answer)")
    named = set(keys)
    stray = [key for key in expect if key not in named]
    if stray:
        raise QueryError("expect", f"names {stray[0]!r}, which is not in keys")
    return expect


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
