"""The trash: with trash_days > 0, deleted session files wait in `sessions/.trash/` for a while.

Each trashed file is kept as `<id>.json` (its bytes, untouched) beside `<id>.meta` (what the
index knew: the true key, since file names are lossy, and the name to restore it under).
An id is the deletion time in hex plus a random tail, so two trashed versions of one key
never clash, the newest sorts last, and the purge can read a file's age from its name.
The folder is hidden and below the sessions folder, so the watcher and the scan ignore it.
Every method blocks: call them from an executor.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import NamedTuple

import orjson

from .index import FileState, SessionRecord
from .loader import is_session_name, read_state, stat_of

log = logging.getLogger(__name__)

TRASH_DIR = ".trash"
_ID = re.compile(r"[0-9a-f]{16}[0-9a-f]{8}")


def _deleted_at(entry_id: str) -> float:
    return int(entry_id[:16], 16) / 1e9


class TrashEntry(NamedTuple):
    """One trashed session file and what it was."""

    id: str
    key: str | None  # None only if the file was no longer a valid session when deleted
    name: str
    deleted_at: float
    message_count: int
    created_at: float
    updated_at: float
    size: int


class RestoreError(Exception):
    """A trashed file cannot be put back; the message says why (no paths)."""


class Trash:
    """Moves session files into the trash, lists, restores and purges them."""

    def __init__(
        self, folder: str, days: float, lookup: Callable[[str], FileState], max_file_bytes: int
    ) -> None:
        self.folder = folder
        self.dir = os.path.join(folder, TRASH_DIR)
        self.retention = days * 86400.0
        self.max_file_bytes = max_file_bytes
        self._lookup = lookup  # the index's view of a file name (read-only, from a thread)

    # -- the store's FileRemover ---------------------------------------------------

    def move(self, folder: str, name: str) -> bool:
        """Move *folder/name* into the trash with its metadata; False if it was already gone."""
        if folder != self.folder or not is_session_name(name):
            raise ValueError(f"refusing to trash {name!r}")
        os.makedirs(self.dir, mode=0o750, exist_ok=True)
        known = self._lookup(name)
        record = known if isinstance(known, SessionRecord) else None
        entry_id = f"{time.time_ns():016x}{secrets.token_hex(4)}"
        target = os.path.join(self.dir, entry_id + ".json")
        try:
            os.rename(os.path.join(folder, name), target)
        except FileNotFoundError:
            return False
        if record is None or stat_of(os.lstat(target)) != record.stat:
            # The file changed since it was indexed: what it holds now is the truth.
            fresh = read_state(self.dir, entry_id + ".json", self.max_file_bytes)
            record = fresh if isinstance(fresh, SessionRecord) else record
        self._write_meta(entry_id, name, record)
        return True

    def _write_meta(self, entry_id: str, name: str, record: SessionRecord | None) -> None:
        meta = {"key": None, "name": name, "message_count": 0, "created_at": 0.0, "updated_at": 0.0, "size": 0}
        if record is not None:
            meta.update(key=record.key, message_count=record.message_count, created_at=record.created_at,
                        updated_at=record.updated_at, size=record.stat.size)
        tmp = os.path.join(self.dir, entry_id + ".meta.tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(meta))
        os.replace(tmp, os.path.join(self.dir, entry_id + ".meta"))

    # -- reading -------------------------------------------------------------------

    def entries(self) -> list[TrashEntry]:
        """Every restorable entry, oldest first."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        present = set(names)
        found = []
        for name in sorted(names):
            entry_id, _, ext = name.partition(".")
            if ext != "meta" or not _ID.fullmatch(entry_id) or entry_id + ".json" not in present:
                continue
            entry = self._read_meta(entry_id)
            if entry is not None:
                found.append(entry)
        return found

    def _read_meta(self, entry_id: str) -> TrashEntry | None:
        try:
            with open(os.path.join(self.dir, entry_id + ".meta"), "rb") as fh:
                meta = orjson.loads(fh.read())
            return TrashEntry(id=entry_id, deleted_at=_deleted_at(entry_id), **meta)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring trash entry %s: %s", entry_id, exc)
            return None

    def purge_at(self, entry: TrashEntry) -> float:
        """When *entry* will be purged (Unix seconds)."""
        return entry.deleted_at + self.retention

    # -- writing -------------------------------------------------------------------

    def restore(self, entry_id: str) -> str:
        """Put entry *entry_id* back under its old name and return that name; never overwrites."""
        entry = self._read_meta(entry_id) if _ID.fullmatch(entry_id) else None
        if entry is None or not is_session_name(entry.name):
            raise RestoreError("Not in the trash")
        source = os.path.join(self.dir, entry_id + ".json")
        try:
            # link() fails when the target exists, so a file written meanwhile is never clobbered.
            os.link(source, os.path.join(self.folder, entry.name))
        except FileExistsError:
            raise RestoreError("Another session file has its file name; delete or rename that first") from None
        except FileNotFoundError:
            raise RestoreError("Not in the trash") from None
        self._drop(entry_id)
        return entry.name

    def purge(self, now: float) -> int:
        """Remove every entry (and any leftover piece of one) older than the retention."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        expired = set()
        for name in names:
            entry_id = name.partition(".")[0]
            if _ID.fullmatch(entry_id) and _deleted_at(entry_id) + self.retention <= now:
                expired.add(entry_id)
        for entry_id in expired:
            self._drop(entry_id)
        if expired:
            log.info("purged %d trashed sessions older than %.1f days", len(expired), self.retention / 86400)
        return len(expired)

    def _drop(self, entry_id: str) -> None:
        for suffix in (".json", ".meta", ".meta.tmp"):
            try:
                os.unlink(os.path.join(self.dir, entry_id + suffix))
            except FileNotFoundError:
                pass
