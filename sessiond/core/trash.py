"""The trash: with trash_days > 0, deleted session files wait in `sessions/.trash/` for a while.

Each trashed file is kept as `<id>.json` (its bytes, untouched) beside `<id>.meta` (what the
index knew: the true key, since file names are lossy, and the name to restore it under).
An id is the deletion time in hex plus a random tail, so two trashed versions of one key
never clash, the newest sorts last, and the purge can read a file's age from its name.

The `.meta` is written before the file moves (removal.py), so a full disk refuses the
DELETE with nothing changed and no trashed file is ever without its record. The folder
is hidden and below the sessions folder, so the watcher and the scan ignore it; it is
opened without following symlinks, relative to the verified sessions folder.

A restore puts the file back as it was, mtime and `updated_at` included, so retention
would judge it exactly as before and delete it again. So a restore first writes a mark,
`.trash/restored/<id>.json`, naming the file by what it is (inode, size, mtime): while
the session file is still that very file, retention leaves it alone (an operator's restore
sticks); once the agent writes it (a new inode or mtime), the rules judge it again and
retention drops the mark. The mark is on disk, in the sessions folder, so it survives a
restart and the trash being turned off; it is written before the link, so a restore
whose mark cannot be written changes nothing. (The link moves the file's ctime, which is
why the mark does not name it.)

Every method blocks: call them from an executor.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import stat as stat_mod
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson

from sessiond.core.audit import TRASH_PURGE, AuditFailed, AuditTrail
from sessiond.core.folder import DIR_FLAGS, Folder
from sessiond.core.index import FileStat, SessionRecord
from sessiond.core.loader import OPEN_FLAGS
from sessiond.core.names import is_session_name
from sessiond.core.removal import RemovalFailed

log = logging.getLogger(__name__)

TRASH_DIR = ".trash"
RESTORED_DIR = "restored"  # inside TRASH_DIR: the marks of restored files (see above)
_ID = re.compile(r"[0-9a-f]{16}[0-9a-f]{8}")
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": (str, type(None)),
    "name": str,
    "message_count": int,
    "created_at": (int, float),
    "updated_at": (int, float),
    "size": int,
}


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


class RestoreMark(NamedTuple):
    """A file put back from the trash, as it was put back: retention leaves it alone while it is."""

    id: str  # the trash entry it came from, and the mark's file name
    name: str  # the session file
    key: str | None
    inode: int
    size: int
    mtime_ns: int
    restored_at: float

    @property
    def identity(self) -> tuple[str, int, int, int]:
        """(name, inode, size, mtime_ns): what retention compares with the index's file."""
        return (self.name, self.inode, self.size, self.mtime_ns)


class RestoreError(Exception):
    """A trashed file cannot be put back; the message says why (no paths)."""


class _Parked:
    """A trash slot: the record is on disk already; the file is renamed in next."""

    def __init__(self, trash_fd: int, path: str, entry_id: str, name: str, written: SessionRecord | None) -> None:
        self.fd = trash_fd
        self.path = path
        self.id = entry_id
        self.name = entry_id + ".json"
        self.original = name
        self.written = written  # the record already on disk

    def keep(self, record: SessionRecord | None) -> None:
        if record is self.written:
            return
        try:
            _write_meta(self.fd, self.id, self.original, record)  # what the file holds now
        except OSError as exc:
            log.warning("trash entry %s keeps the record written before the move: %s", self.id, exc.strerror)

    def undo(self) -> None:
        _unlink_quietly(self.fd, self.id + ".meta")


class Trash:
    """Moves session files into the trash, lists, restores and purges them."""

    def __init__(self, days: float) -> None:
        self.retention = days * 86400.0

    # -- opening ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _opened(self, dir_fd: int, create: bool = False) -> Iterator[int | None]:
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(TRASH_DIR, 0o750, dir_fd=dir_fd)
        try:
            fd = os.open(TRASH_DIR, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RemovalFailed("the trash folder sessions/.trash is not a directory; move it away") from None
            raise
        try:
            yield fd
        finally:
            os.close(fd)

    # -- removal.Destination ---------------------------------------------------------

    @contextlib.contextmanager
    def parking(self, folder: Folder, dir_fd: int, name: str, record: SessionRecord | None) -> Iterator[_Parked]:
        """A trash slot for *name*, its record written first (an OSError here changes nothing)."""
        with self._opened(dir_fd, create=True) as trash_fd:
            assert trash_fd is not None
            entry_id = f"{time.time_ns():016x}{secrets.token_hex(4)}"
            _write_meta(trash_fd, entry_id, name, record)
            yield _Parked(trash_fd, os.path.join(folder.path, TRASH_DIR), entry_id, name, record)

    # -- reading -------------------------------------------------------------------

    def entries(self, folder: Folder) -> list[TrashEntry]:
        """Every restorable entry, oldest first."""
        with folder.open() as dir_fd, self._opened(dir_fd) as trash_fd:
            if trash_fd is None:
                return []
            names = os.listdir(trash_fd)
            present = set(names)
            found = []
            for name in sorted(names):
                entry_id, _, ext = name.partition(".")
                if ext != "meta" or not _ID.fullmatch(entry_id) or entry_id + ".json" not in present:
                    continue
                entry = _read_meta(trash_fd, entry_id)
                if entry is not None:
                    found.append(entry)
            return found

    def entry(self, folder: Folder, entry_id: str) -> TrashEntry | None:
        """Entry *entry_id* (its record), or None when the trash holds no such entry."""
        if not _ID.fullmatch(entry_id):  # also keeps any path out of the names below
            return None
        with folder.open() as dir_fd, self._opened(dir_fd) as trash_fd:
            return None if trash_fd is None else _read_meta(trash_fd, entry_id)

    def opener(self, folder: Folder, entry_id: str) -> Callable[[str, int], int]:
        """An `open(..., opener=)` for entry *entry_id*'s file: in the trash, never through a
        symlink, a regular file only (the name `open` passes is ignored)."""
        if not _ID.fullmatch(entry_id):
            raise FileNotFoundError(errno.ENOENT, "not a trash entry id")

        def open_trashed(_name: str, _flags: int) -> int:
            with folder.open() as dir_fd, self._opened(dir_fd) as trash_fd:
                if trash_fd is None:
                    raise FileNotFoundError(errno.ENOENT, "no trash folder")
                fd = os.open(entry_id + ".json", OPEN_FLAGS, dir_fd=trash_fd)
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            return fd

        return open_trashed

    def purge_at(self, entry: TrashEntry) -> float:
        """When *entry* will be purged (Unix seconds)."""
        return entry.deleted_at + self.retention

    # -- writing -------------------------------------------------------------------

    def restore(self, folder: Folder, entry_id: str) -> str:
        """Put entry *entry_id* back under its old name and return that name; never overwrites."""
        with folder.open() as dir_fd, self._opened(dir_fd) as trash_fd:
            entry = _read_meta(trash_fd, entry_id) if trash_fd is not None and _ID.fullmatch(entry_id) else None
            if trash_fd is None or entry is None or not is_session_name(entry.name):
                raise RestoreError("Not in the trash")
            try:
                held = os.stat(entry_id + ".json", dir_fd=trash_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise RestoreError("Not in the trash") from None
            _write_mark(
                trash_fd, RestoreMark(entry_id, entry.name, entry.key, held.st_ino, held.st_size, held.st_mtime_ns, time.time())
            )
            try:
                # link() fails when the target exists, so a file written meanwhile is never clobbered.
                os.link(entry_id + ".json", entry.name, src_dir_fd=trash_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    _drop_marks_in(trash_fd, [entry_id])  # nothing was restored
                if isinstance(exc, FileExistsError):
                    raise RestoreError("Another session file has its file name; delete or rename that first") from None
                if isinstance(exc, FileNotFoundError):
                    raise RestoreError("Not in the trash") from None
                raise
            _drop(trash_fd, entry_id)
            return entry.name

    def purge(self, folder: Folder, now: float, audit: AuditTrail | None = None) -> int:
        """Remove every entry (and any leftover piece of one) older than the retention.

        Each entry's audit record is written first; an entry whose record cannot be
        written stays (the next purge tries again).
        """
        with folder.open() as dir_fd, self._opened(dir_fd) as trash_fd:
            if trash_fd is None:
                return 0
            expired = set()
            for name in os.listdir(trash_fd):
                entry_id = name.partition(".")[0]
                if _ID.fullmatch(entry_id) and _deleted_at(entry_id) + self.retention <= now:
                    expired.add(entry_id)
            for entry_id in sorted(expired):
                if audit is not None and not _audit_purge(audit, trash_fd, entry_id):
                    expired.discard(entry_id)
                    continue
                _drop(trash_fd, entry_id)
        if expired:
            log.info("purged %d trashed sessions older than %.1f days", len(expired), self.retention / 86400)
        return len(expired)


def restore_marks(folder: Folder) -> list[RestoreMark]:
    """Every restore mark (whether the trash is on or not: a mark outlives turning it off)."""
    with folder.open() as dir_fd:
        try:
            trash_fd = os.open(TRASH_DIR, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return []
        try:
            try:
                marks_fd = os.open(RESTORED_DIR, DIR_FLAGS, dir_fd=trash_fd)
            except FileNotFoundError:
                return []
            try:
                return [
                    mark
                    for name in sorted(os.listdir(marks_fd))
                    if name.endswith(".json") and _ID.fullmatch(name[:-5]) and (mark := _read_mark(marks_fd, name[:-5]))
                ]
            finally:
                os.close(marks_fd)
        finally:
            os.close(trash_fd)


def drop_restore_marks(folder: Folder, ids: list[str]) -> None:
    """Forget the marks *ids* (their files changed or went)."""
    with folder.open() as dir_fd:
        try:
            trash_fd = os.open(TRASH_DIR, DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        try:
            _drop_marks_in(trash_fd, ids)
        finally:
            os.close(trash_fd)


def _write_mark(trash_fd: int, mark: RestoreMark) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(RESTORED_DIR, 0o750, dir_fd=trash_fd)
    try:
        marks_fd = os.open(RESTORED_DIR, DIR_FLAGS, dir_fd=trash_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise RestoreError(
                "sessions/.trash/restored, where restores are remembered, is not a directory; move it away"
            ) from None
        raise
    try:
        tmp = mark.id + ".json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640, dir_fd=marks_fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(mark._asdict()))
            os.replace(tmp, mark.id + ".json", src_dir_fd=marks_fd, dst_dir_fd=marks_fd)
        except BaseException:
            _unlink_quietly(marks_fd, tmp)
            raise
    finally:
        os.close(marks_fd)


def _read_mark(marks_fd: int, mark_id: str) -> RestoreMark | None:
    try:
        fd = os.open(mark_id + ".json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=marks_fd)
        with os.fdopen(fd, "rb") as fh:
            raw = orjson.loads(fh.read(65536))
        mark = RestoreMark(**raw) if isinstance(raw, dict) else None
        if mark is None or mark.id != mark_id or not isinstance(mark.name, str):
            raise ValueError("not a restore mark")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (mark.inode, mark.size, mark.mtime_ns)):
            raise ValueError("not a restore mark")
        if not isinstance(mark.restored_at, (int, float)) or isinstance(mark.restored_at, bool):
            raise ValueError("not a restore mark")
        return mark
    except (OSError, ValueError, TypeError) as exc:
        log.warning("ignoring restore mark %s: %s", mark_id, exc)
        return None


def _drop_marks_in(trash_fd: int, ids: list[str]) -> None:
    try:
        marks_fd = os.open(RESTORED_DIR, DIR_FLAGS, dir_fd=trash_fd)
    except FileNotFoundError:
        return
    try:
        for mark_id in ids:
            _unlink_quietly(marks_fd, mark_id + ".json")
    finally:
        os.close(marks_fd)


def _write_meta(trash_fd: int, entry_id: str, name: str, record: SessionRecord | None) -> None:
    meta: dict[str, Any] = {"key": None, "name": name, "message_count": 0, "created_at": 0.0, "updated_at": 0.0, "size": 0}
    if record is not None:
        meta.update(
            key=record.key,
            message_count=record.message_count,
            created_at=record.created_at,
            updated_at=record.updated_at,
            size=record.size,
        )
    tmp = entry_id + ".meta.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640, dir_fd=trash_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(meta))
        os.replace(tmp, entry_id + ".meta", src_dir_fd=trash_fd, dst_dir_fd=trash_fd)
    except BaseException:
        _unlink_quietly(trash_fd, tmp)
        raise


def _read_meta(trash_fd: int, entry_id: str) -> TrashEntry | None:
    try:
        fd = os.open(entry_id + ".meta", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=trash_fd)
        with os.fdopen(fd, "rb") as fh:
            meta = orjson.loads(fh.read(65536))
        if not isinstance(meta, dict) or set(meta) != set(_FIELDS):
            raise ValueError("not a trash record")
        for field, types in _FIELDS.items():
            if not isinstance(meta[field], types) or isinstance(meta[field], bool):
                raise ValueError(f"{field} has the wrong type")
        return TrashEntry(id=entry_id, deleted_at=_deleted_at(entry_id), **meta)
    except (OSError, ValueError) as exc:
        log.warning("ignoring trash entry %s: %s", entry_id, exc)
        return None


def _unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _audit_purge(audit: AuditTrail, trash_fd: int, entry_id: str) -> bool:
    """Write the purge's record of *entry_id*; False (and a warning) when it cannot be written."""
    entry = _read_meta(trash_fd, entry_id)
    try:
        held = os.stat(entry_id + ".json", dir_fd=trash_fd, follow_symlinks=False)
        stat = FileStat(held.st_size, held.st_mtime_ns, held.st_ino, held.st_ctime_ns)
    except OSError:
        stat = None  # a leftover piece of an entry: its file is gone already
    key, name = (entry.key, entry.name) if entry is not None else (None, None)
    try:
        audit.write(TRASH_PURGE, "purge", "purged", key, name, stat, trash_id=entry_id)
    except AuditFailed as exc:
        log.warning("trash entry %s kept for now: %s", entry_id, exc)
        return False
    return True


def _drop(trash_fd: int, entry_id: str) -> None:
    for suffix in (".json", ".meta", ".meta.tmp"):
        _unlink_quietly(trash_fd, entry_id + suffix)
