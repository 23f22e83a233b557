"""The audit trail: one record per deletion, restore and purge, written before the answer.

Each record goes to the logger ``sessiond.audit`` (the journal, under systemd) and,
with a state directory, to ``audit.jsonl`` there: append-only JSON lines, fsynced,
bounded by rotating to ``audit.jsonl.1`` (one older file, then it is dropped). A
record that cannot be written raises AuditFailed, and the callers refuse what they
were about to do: nothing is deleted unaudited. Records are written as JSON with
every non-ASCII and control character escaped, so nothing in a key or a name can
forge a line of the file or of the log.

Every function blocks (a write is fsynced): call them from an executor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessiond.core.folder import Folder
from sessiond.core.index import FileStat, SessionRecord
from sessiond.core.removal import Destination, Parking, RemovalFailed

log = logging.getLogger("sessiond.audit")

FILE_NAME = "audit.jsonl"
OUTCOMES = ("deleted", "to trash", "restored", "purged", "refused")


class AuditFailed(Exception):
    """A record could not be written; the message says why (safe to show)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a token's name (never the token), or `retention` / `trash purge`; where from, which request."""

    name: str
    client: str | None = None
    request_id: str | None = None


RETENTION = Actor("retention")
TRASH_PURGE = Actor("trash purge")
SESSIOND = Actor("sessiond")  # a deletion no caller named (none today: every caller names itself)


def identity(stat: FileStat | None) -> dict[str, int] | None:
    """A file's identity as the audit shows it."""
    if stat is None:
        return None
    return {"inode": stat.inode, "size": stat.size, "mtime_ns": stat.mtime_ns}


@dataclass(frozen=True, slots=True)
class Page:
    """Records newest first, and the cursor of the next (older) page."""

    records: list[dict[str, Any]]
    next_cursor: str | None


class AuditTrail:
    """The trail's writer and reader (thread-safe: writes come from executor threads)."""

    def __init__(self, folder: Path | None, max_bytes: int) -> None:
        self.path = folder / FILE_NAME if folder is not None else None
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_id = 0
        self.written = 0
        self.failed = 0

    @property
    def older(self) -> Path | None:
        """The one rotated file."""
        return self.path.with_name(FILE_NAME + ".1") if self.path is not None else None

    def write(
        self,
        actor: Actor,
        action: str,
        outcome: str,
        key: str | None,
        name: str | None,
        stat: FileStat | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> None:
        """Write one record (file first, fsynced; then the log); AuditFailed if the file refused it."""
        with self._lock:
            self._last_id = max(time.time_ns(), self._last_id + 1)
            record = {
                "id": str(self._last_id),
                "time": self._last_id / 1e9,
                "actor": actor.name,
                "client": actor.client,
                "request_id": actor.request_id,
                "action": action,
                "key": key,
                "file": name,
                "identity": identity(stat),
                "outcome": outcome,
                "reason": reason,
                **extra,
            }
            # ensure_ascii: a newline, a control or direction character in a key is written escaped.
            line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n"
            if self.path is not None:
                try:
                    self._append(line.encode("ascii"))
                except OSError as exc:
                    self.failed += 1
                    log.error("audit record not written (%s), so the %s was refused: %s", exc.strerror, action, line.rstrip())
                    raise AuditFailed(f"the audit trail cannot be written ({exc.strerror or exc})") from None
            self.written += 1
            log.info("%s", line.rstrip())

    def _append(self, data: bytes) -> None:
        assert self.path is not None and self.older is not None
        new_name = False
        try:
            if self.path.stat().st_size + len(data) > self.max_bytes:
                os.replace(self.path, self.older)  # one older file is kept; the one before it goes
                new_name = True
        except FileNotFoundError:
            new_name = True
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if new_name:  # the file's name must outlive a crash too, not only its bytes
                _sync_folder(self.path.parent)
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(28, os.strerror(28))  # a short write: the disk filled up mid-record
                os.fsync(fd)
            except OSError:
                # No torn record stays behind to run into the next one.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def read(
        self,
        prefix: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Records matching the filters, newest first, older than *cursor* (an id), at most *limit*."""
        before = int(cursor) if cursor is not None else None
        found: list[dict[str, Any]] = []
        for record in self._newest_first():
            if before is not None and int(record["id"]) >= before:
                continue
            if until is not None and record["time"] > until:
                continue
            if since is not None and record["time"] < since:
                break  # newest first: everything further is older still
            if prefix is not None and not str(record.get("key") or "").startswith(prefix):
                continue
            if actor is not None and record.get("actor") != actor:
                continue
            found.append(record)
            if len(found) > limit:
                break
        more = len(found) > limit
        records = found[:limit]
        return Page(records, records[-1]["id"] if more else None)

    def _newest_first(self) -> Iterator[dict[str, Any]]:
        for path in (self.path, self.older):
            if path is None:
                continue
            try:
                lines = path.read_bytes().splitlines()
            except FileNotFoundError:
                continue
            for line in reversed(lines):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # not one of ours: skipped, never a 500
                if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"].isdigit():
                    yield record


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AuditedDestination:
    """A removal's destination that writes the record just before the file moves (removal.Destination).

    The record is written after every check a removal makes and before the rename: a
    record that cannot be written refuses the removal with nothing changed. When the
    file then does not go after all (another writer slipped in, the rename failed),
    `refuse` writes a second record saying so, with the reason.
    """

    def __init__(self, inner: Destination, trail: AuditTrail, actor: Actor, key: str, outcome: str) -> None:
        self.inner = inner
        self.trail = trail
        self.actor = actor
        self.key = key
        self.outcome = outcome
        self.pending: list[tuple[str, FileStat | None]] = []  # written, not yet known to have gone

    @contextlib.contextmanager
    def parking(self, folder: Folder, dir_fd: int, name: str, record: SessionRecord | None) -> Iterator[Parking]:
        """Write the record, then prepare the inner destination's place (RemovalFailed: nothing changed)."""
        stat = record.stat if record is not None else None
        try:
            self.trail.write(self.actor, "delete", self.outcome, self.key, name, stat)
        except AuditFailed as exc:
            raise RemovalFailed(f"{exc}; nothing was deleted") from None
        self.pending.append((name, stat))
        with self.inner.parking(folder, dir_fd, name, record) as parked:
            yield parked

    def done(self, name: str) -> None:
        """*name* went as its record says."""
        self.pending = [(n, s) for n, s in self.pending if n != name]

    def refuse(self, reason: str) -> None:
        """Every written record whose file did not go: a record saying so (best effort: logged if it cannot be)."""
        for name, stat in self.pending:
            with contextlib.suppress(AuditFailed):
                self.trail.write(self.actor, "delete", "refused", self.key, name, stat, reason=reason)
        self.pending = []
