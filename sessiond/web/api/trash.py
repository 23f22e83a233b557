"""GET /api/v1/trash, GET /api/v1/trash/{id}, POST /api/v1/trash:restore (the purge task: live/trash.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiohttp import web

from sessiond.core.audit import Actor, AuditFailed
from sessiond.core.errors import Unavailable
from sessiond.core.folder import FolderUnusable
from sessiond.core.query import QueryError
from sessiond.core.removal import RemovalFailed
from sessiond.core.trash import RestoreError, Trash, TrashEntry
from sessiond.live.trash import off_loop, restore_audited
from sessiond.web.appkeys import AUDIT, SETTINGS, STORE, TRASH
from sessiond.web.files import open_file, send_file
from sessiond.web.front.request_id import actor_of
from sessiond.web.params import read_object, string_list
from sessiond.web.responses import json_response

log = logging.getLogger(__name__)

TRASH_OFF = "Trash is off; set trash_days above 0 to keep deleted sessions for a while"
NOT_IN_TRASH = "Not in the trash"
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


async def read_trashed(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/trash/{id}: the trashed file as stored (as export serves a session), to read
    before restoring it. Bounded by max_file_bytes; errors never name a path."""
    trash = _trash_of(request)
    entry_id = request.match_info["id"]
    folder = request.app[STORE].folder
    if folder is None:
        raise Unavailable(NOT_IN_TRASH, status=404)
    entry = raw = None
    try:
        entry = await asyncio.get_running_loop().run_in_executor(None, trash.entry, folder, entry_id)
        raw = await open_file(entry_id, trash.opener(folder, entry_id)) if entry is not None else None
    except (FileNotFoundError, IsADirectoryError):
        pass  # purged or restored meanwhile, or not a file of ours
    except (FolderUnusable, RemovalFailed) as exc:
        raise Unavailable(f"Trash unavailable: {exc}") from None
    except OSError as exc:
        log.warning("cannot read trash entry %s: %s", entry_id, exc.strerror)
        raise Unavailable(f"Trash unavailable: {exc.strerror}") from None
    if entry is None or raw is None:
        raise Unavailable(NOT_IN_TRASH, status=404)
    max_bytes = request.app[SETTINGS].max_file_bytes
    size = os.fstat(raw.fileno()).st_size
    if size > max_bytes:
        raw.close()
        raise Unavailable(
            f"The trashed file is larger than max_file_bytes ({size} > {max_bytes}); raise max_file_bytes to read it", status=413
        )
    return await send_file(request, raw, entry.name, max_bytes)


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
    actor = actor_of(request)
    for field, value, entry in wanted:
        reason = await _put_back(request.app, entry, actor)
        if reason is None and entry is not None:
            restored.append({"key": entry.key, "id": entry.id})
        else:
            failed.append({field: value, "reason": reason})
    return json_response({"restored": restored, "failed": failed})


async def _put_back(app: web.Application, entry: TrashEntry | None, actor: Actor) -> str | None:
    """Restore *entry* and index it before answering; the reason it failed, or None."""
    if entry is None:
        return NOT_IN_TRASH
    store = app[STORE]
    if entry.key is not None and entry.key in store.index:
        return "A session with this key exists; delete it first"
    folder, trash = store.folder, app[TRASH]
    if folder is None or trash is None:
        return "The sessions folder is gone"
    if entry.key is not None:
        store.deletions.forget(entry.key)  # back through sessiond: not a resurrection
    try:
        name = await off_loop("Cannot restore", restore_audited, trash, folder, entry, app[AUDIT], actor)
    except AuditFailed as exc:
        return f"{exc}; not restored"
    except RestoreError as exc:
        return str(exc)
    except Unavailable as exc:
        return str(exc)
    await store.refresh([name])
    return None
