"""GET /api/v1/trash, POST /api/v1/trash:restore, and the task that purges old entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from sessiond.core.errors import Unavailable
from sessiond.core.folder import FolderUnusable
from sessiond.core.query import QueryError
from sessiond.core.removal import RemovalFailed
from sessiond.core.trash import RestoreError, Trash, TrashEntry
from sessiond.web.appkeys import STORE, TRASH
from sessiond.web.params import read_object, string_list
from sessiond.web.responses import json_response

log = logging.getLogger(__name__)

TRASH_OFF = "Trash is off; set trash_days above 0 to keep deleted sessions for a while"
MOST = 10_000
PURGE_EVERY = 600.0


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
    try:
        return await asyncio.get_running_loop().run_in_executor(None, trash.entries, folder)
    except (FolderUnusable, RemovalFailed) as exc:
        raise Unavailable(f"Trash unavailable: {exc}") from None
    except OSError as exc:
        log.warning("cannot read the trash: %s", exc.strerror)
        raise Unavailable(f"Trash unavailable: {exc.strerror}") from None


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
        name = await asyncio.get_running_loop().run_in_executor(None, trash.restore, folder, entry.id)
    except (RestoreError, FolderUnusable, RemovalFailed) as exc:
        return str(exc)
    except OSError as exc:
        log.warning("cannot restore trash entry %s: %s", entry.id, exc.strerror)
        return f"Cannot restore: {exc.strerror}"
    await store.refresh([name])
    return None


async def purge_trash(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: purge expired trash now and then, while the app runs (if the trash is on)."""
    trash = app[TRASH]
    task = asyncio.create_task(_purge_forever(app, trash), name="sessiond-trash-purge") if trash else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _purge_forever(app: web.Application, trash: Trash) -> None:
    loop = asyncio.get_running_loop()
    every = min(PURGE_EVERY, max(1.0, trash.retention / 10))
    store = app[STORE]
    while True:
        folder = store.folder
        try:
            if folder is not None:
                await loop.run_in_executor(None, trash.purge, folder, time.time())
        except (FolderUnusable, RemovalFailed) as exc:
            log.warning("trash purge skipped: %s", exc)
        except OSError as exc:
            log.warning("trash purge failed: %s", exc.strerror)
        await asyncio.sleep(every)
