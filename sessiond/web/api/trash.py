"""GET /api/v1/trash and POST /api/v1/trash:restore (the purge task: live/trash.py)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from sessiond.core.errors import Unavailable
from sessiond.core.query import QueryError
from sessiond.core.trash import RestoreError, Trash, TrashEntry
from sessiond.live.trash import off_loop
from sessiond.web.appkeys import STORE, TRASH
from sessiond.web.params import read_object, string_list
from sessiond.web.responses import json_response

log = logging.getLogger(__name__)

TRASH_OFF = "Trash is off; set trash_days above 0 to keep deleted sessions for a while"
MOST = 10_000


def _show(trash: Trash, entry: TrashEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "key": entry.key,
        "deleted_at": entry.deleted_at,
        "purge_at": trash.purge_at(entry),
        "message_count": entry.message_count,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "size": entry.size,
    }


def _trash_of(request: web.Request) -> Trash:
    trash = request.app[TRASH]
    if trash is None:
        raise Unavailable(TRASH_OFF, status=404)
    return trash


async def list_trash(request: web.Request) -> web.Response:
    """Every trashed session, newest first."""
    trash = _trash_of(request)
    entries = await _entries(request.app, trash)
    return json_response({"items": [_show(trash, e) for e in reversed(entries)], "count": len(entries)})


async def _entries(app: web.Application, trash: Trash) -> list[TrashEntry]:
    folder = app[STORE].folder
    if folder is None:
        return []  # no sessions folder, no trash in it
    return await off_loop("Trash unavailable", trash.entries, folder)


async def restore(request: web.Request) -> web.Response:
    """Put trashed sessions back: the newest version of each key in `keys`, and each id in `ids`."""
    trash = _trash_of(request)
    body = await read_object(request, frozenset({"keys", "ids"}))
    if not body:
        raise QueryError("keys", "give keys or ids to restore")
    keys = string_list(body, "keys", MOST) if "keys" in body else []
    ids = string_list(body, "ids", MOST) if "ids" in body else []
    entries = await _entries(request.app, trash)
    newest = {e.key: e for e in entries}  # oldest first, so the newest of a key is kept
    by_id = {e.id: e for e in entries}
    wanted = [("key", k, newest.get(k)) for k in keys] + [("id", i, by_id.get(i)) for i in ids]
    restored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for field, value, entry in wanted:
        reason = await _put_back(request.app, entry)
        if reason is None and entry is not None:
            restored.append({"key": entry.key, "id": entry.id})
        else:
            failed.append({field: value, "reason": reason})
    return json_response({"restored": restored, "failed": failed})


async def _put_back(app: web.Application, entry: TrashEntry | None) -> str | None:
    """Restore *entry* and index it before answering; the reason it failed, or None."""
    if entry is None:
        return "Not in the trash"
    store = app[STORE]
    if entry.key is not None and entry.key in store.index:
        return "A session with this key exists; delete it first"
    folder, trash = store.folder, app[TRASH]
    if folder is None or trash is None:
        return "The sessions folder is gone"
    try:
        name = await off_loop("Cannot restore", trash.restore, folder, entry.id)
    except RestoreError as exc:
        return str(exc)
    except Unavailable as exc:
        return str(exc)
    await store.refresh([name])
    return None
