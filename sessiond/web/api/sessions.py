"""The sessions resource: GET /api/v1/sessions (the list, with or without query parameters),
GET and DELETE /api/v1/sessions/{key}, and POST /api/v1/sessions:batchDelete."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from sessiond.core.errors import DeleteFailed, SessionChanged, SessionNotFound
from sessiond.core.index import SessionIndex
from sessiond.core.names import MAX_KEY_LENGTH
from sessiond.core.query import (
    LIST_PARAMS,
    QueryError,
    meta,
    parse_filter,
    parse_query,
    run,
    select,
    single_values,
    version,
    whole_number,
)
from sessiond.web.appkeys import RUNTIME, SEARCH, STORE
from sessiond.web.front.request_id import actor_of
from sessiond.web.params import flag, read_object, string_list
from sessiond.web.responses import NOT_FOUND, etag_matches, json_response

log = logging.getLogger(__name__)

FIELDS = frozenset({"keys", "filter", "dry_run", "max", "expect"})
CHANGED = "changed since it was shown; not deleted"
DEFAULT_MAX = 1000
MOST = 1_000_000  # sessions one call may delete (max)
MOST_KEYS = 10_000  # keys one call may name
# 10,000 keys of 100 characters, JSON-escaped, fit; the app's 64 KiB limit would stop near 5,000.
BODY_LIMIT = 2 * 1024 * 1024


def _key(request: web.Request) -> str:
    # The route's tail is decoded once by aiohttp (so %2F is a slash, %252F is "%2F").
    key = request.match_info["key"]
    if len(key) > MAX_KEY_LENGTH:
        raise web.HTTPBadRequest(text=f"Session key longer than {MAX_KEY_LENGTH} characters")
    return key


async def list_sessions(request: web.Request) -> web.Response:
    """GET /api/v1/sessions: every key, ascending; the body is cached by the index.

    With If-None-Match equal to the current ETag the answer is an empty 304, so a
    monitor polling the list costs almost nothing while nothing changes.
    """
    if request.query_string and (answer := await _query_response(request)) is not None:
        return answer
    index = request.app[STORE].index
    body = index.list_body()
    etag = index.list_etag()
    if etag_matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, headers={"Content-Type": "application/json", "ETag": etag})


async def get_session(request: web.Request) -> web.Response:
    """GET /api/v1/sessions/{key}: one session's metadata."""
    key = _key(request)
    store = request.app[STORE]
    # As fresh as the disk: one stat of the file, re-read first if the agent rewrote it since.
    record = await store.current(key)
    if record is None:
        raise SessionNotFound(key)
    answer: dict[str, Any] = {
        "key": record.key,
        "message_count": record.message_count,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "age_seconds": round(time.time() - record.created_at, 1),
        "version": version(record),
    }
    if (mark := store.deletions.mark_of(record)) is not None:
        # Deleted through sessiond, then written back by the agent with its old history.
        answer["resurrected"] = mark.show()
    if request.query_string and request.query.get("include") == "title" and (search := request.app[SEARCH]) is not None:
        # Asked for only: the seed's answer keeps its shape. From the search index; null until
        # it holds the file as it is now.
        answer["title"] = (await search.titles([record])).get(record.key)
    return json_response(answer)


async def delete_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/sessions/{key}: remove the file; the index knows before we answer."""
    key = _key(request)
    store = request.app[STORE]
    if await store.current(key) is None:  # saved a moment ago: found; removed a moment ago: 404
        raise SessionNotFound(key)
    record = await store.delete(key, actor=actor_of(request))  # SessionNotFound, DeleteFailed: mapped by the front door
    return json_response({"deleted": True, "key": record.key})


async def _query_response(request: web.Request) -> web.Response | None:
    """The list answer for a request with list parameters; None when it has none.

    None sends the caller down the cached fast path, so a request without
    parameters (or with only unknown ones, like a cache-buster) is answered as before.
    """
    values = single_values(request.query.items(), LIST_PARAMS)  # QueryError: a 400, mapped at the edge
    if not values:
        return None
    query = parse_query(values, request.app[RUNTIME].cursor_key)
    page = run(request.app[STORE].index, query)
    items: list[Any] = [meta(r) for r in page.records] if query.include_meta else [r.key for r in page.records]
    if query.include_meta and (search := request.app[SEARCH]) is not None:
        titles = await search.titles(page.records)
        for item in items:
            item["title"] = titles.get(item["key"])
    return json_response({"sessions": items, "count": page.total, "next_cursor": page.next_cursor})


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
    actor = actor_of(request)
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
                    await store.delete(key, expected=record, actor=actor)
                else:
                    await store.delete(key, actor=actor)
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
    for name in ("prefix", "contains"):
        if body["filter"].get(name) == "":
            raise QueryError(name, f"is empty; leave it out, or name the {name} text of the keys to delete")
    flt = parse_filter(body["filter"])
    if flt.is_empty():
        raise QueryError("filter", "is empty, which would match every session; name at least one bound")
    return [r.key for r in select(index, flt)]
