"""GET /api/v1/trash, GET /api/v1/trash/{id}, POST /api/v1/trash:restore, and the task that purges old entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .appkeys import SETTINGS, STORE, TRASH
from .errors import Unavailable
from .export import open_file, send_file
from .folder import FolderUnusable
from .params import read_object, string_list
from .query import QueryError
from .removal import RemovalFailed
from .responses import json_response
from .trash import RestoreError, Trash, TrashEntry

log = logging.getLogger(__name__)

TRASH_OFF = "Trash is off; set trash_days above 0 to keep deleted sessions for a while"
NOT_IN_TRASH = "Not in the trash"
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
        return NOT_IN_TRASH
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
