"""Removing a session file safely: only a file that still holds the session, decided on what we hold.

A DELETE acts on what the index read, and the disk may have moved on since: the
agent renamed a new version over the file, another session took its name, an
editor rewrote it in place. So:

1. the file's full stat (ctime included, which nothing can set back) is
   compared with what the index read; if it differs, the file is read again and
   removed only if it still holds the session (or is the same inode caught
   half-way through an in-place rewrite);
2. it is then renamed out of the way (into the trash, or to a hidden temp name),
   which is atomic, and what now sits at the new name is checked once more; if
   another writer slipped in between, the file is read again and put back when
   it is not ours (`link`, which never overwrites a newer file);
3. only then is it unlinked (or left in the trash with its record).

With the trash on, the record is written *before* the file moves, so a full
disk refuses the DELETE with nothing changed, and a crash never leaves a
trashed file nobody can list. Without it, a crash between 2 and 3 leaves a
hidden temp file that the next start puts back (`recover_interrupted`).
Every function blocks: call them from an executor.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from sessiond.core.folder import Folder
from sessiond.core.index import FileStat, FileState, InvalidFile, SessionRecord
from sessiond.core.loader import read_fully, stat_of
from sessiond.core.names import file_name_for, is_session_name

log = logging.getLogger(__name__)

HOLD_PREFIX = ".sessiond-delete."
_HOLD = re.compile(r"\.sessiond-delete\.[0-9a-f]{8}(?:\.(.+))?\.tmp", re.DOTALL)
NAME_MAX = 255
# Only the trash can be elsewhere (a hidden name beside the file never is).
CROSS_DEVICE = (
    "the trash folder sessions/.trash is on another file system, where a file cannot be moved"
    " (make it a plain folder of the sessions folder's file system); nothing was changed"
)


class RemovalFailed(Exception):
    """The file could not be removed and nothing was changed; the message is safe to show."""


class Outcome(NamedTuple):
    """What a removal did: whether the file went, and what the name holds now if it did not."""

    removed: bool
    now: FileState


class Destination(Protocol):
    """Where a removed file goes: nowhere (unlink) or the trash."""

    def parking(
        self, folder: Folder, dir_fd: int, name: str, record: SessionRecord | None
    ) -> contextlib.AbstractContextManager[Parking]:
        """Prepare a place for *name* (records first); raise OSError with nothing changed."""


class Parking(Protocol):
    """One prepared place: the folder and name the file is renamed to."""

    fd: int
    name: str
    path: str

    def keep(self, record: SessionRecord | None) -> None:
        """The parked file was ours: finish (unlink it, or keep it with its record)."""

    def undo(self) -> None:
        """The file never arrived or went back: remove what was prepared."""


def _ours(state: FileState, key: str, indexed: SessionRecord | None) -> bool:
    if isinstance(state, SessionRecord):
        return state.key == key
    # The same inode caught half-way through an in-place rewrite is the file the index read.
    return isinstance(state, InvalidFile) and indexed is not None and state.stat.inode == indexed.stat.inode


def remove_claimant(
    folder: Folder,
    name: str,
    key: str,
    indexed: SessionRecord | None,
    max_bytes: int,
    dest: Destination,
    unchanged_only: bool = False,
) -> Outcome:
    """Remove file *name* if it still holds session *key* (see the module docstring). Blocking.

    With *unchanged_only* (retention), only the very file the index read goes: a
    file changed since, even holding the same key, stays (its age was judged on
    what the index read, not on what it holds now).
    """
    if not is_session_name(name):
        raise ValueError(f"refusing to remove {name!r}")
    with folder.open() as dir_fd:
        try:
            before = stat_of(os.lstat(name, dir_fd=dir_fd))
        except FileNotFoundError:
            return Outcome(False, None)
        record = indexed
        if indexed is None or indexed.stat != before:
            if unchanged_only:
                return Outcome(False, read_fully(folder, dir_fd, name, max_bytes))
            now = read_fully(folder, dir_fd, name, max_bytes)
            if now is None or not _ours(now, key, indexed):
                return Outcome(False, now)
            before = now.stat
            record = now if isinstance(now, SessionRecord) else indexed
        with dest.parking(folder, dir_fd, name, record) as parked:
            try:
                os.rename(name, parked.name, src_dir_fd=dir_fd, dst_dir_fd=parked.fd)
            except OSError as exc:
                parked.undo()  # the file never moved: what was prepared for it (a trash record) goes too
                if isinstance(exc, FileNotFoundError):
                    return Outcome(False, None)
                if exc.errno == errno.EXDEV:
                    raise RemovalFailed(CROSS_DEVICE) from None
                raise
            if _same_file(os.lstat(parked.name, dir_fd=parked.fd), before):
                try:
                    parked.keep(record)
                except OSError:
                    _put_back(parked.fd, parked.name, dir_fd, name)  # not removed after all: as it was
                    raise
                return Outcome(True, None)
            # Another writer slipped in between the check and the rename: judge what we hold.
            held = read_fully(Folder(parked.path, _ident(parked.fd)), parked.fd, parked.name, max_bytes)
            if _ours(held, key, indexed) and not unchanged_only:
                parked.keep(held if isinstance(held, SessionRecord) else record)
                return Outcome(True, None)
            _put_back(parked.fd, parked.name, dir_fd, name)
            parked.undo()
            return Outcome(False, read_fully(folder, dir_fd, name, max_bytes))


def _same_file(st: os.stat_result, before: FileStat) -> bool:
    # The rename itself moves the ctime; inode, size and mtime say it is what we checked.
    return (st.st_ino, st.st_size, st.st_mtime_ns) == (before.inode, before.size, before.mtime_ns)


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _put_back(from_fd: int, held: str, to_fd: int, name: str) -> None:
    try:
        # link() never overwrites: a file written at the name meanwhile is newer and stays.
        os.link(held, name, src_dir_fd=from_fd, dst_dir_fd=to_fd, follow_symlinks=False)
    except FileExistsError:
        log.info("a newer file took %r while it was being checked; the older one is dropped", name)
    os.unlink(held, dir_fd=from_fd)


# -- without the trash: a hidden temp name, then unlink ---------------------------


class _Hold:
    def __init__(self, dir_fd: int, name: str, path: str) -> None:
        self.fd = dir_fd
        self.path = path
        tag = secrets.token_hex(4)
        hold = f"{HOLD_PREFIX}{tag}.{name}.tmp"
        # The original name rides along so an interrupted delete can be undone; when it
        # does not fit in a file name, the key inside gives it back (file_name_for).
        self.name = hold if len(os.fsencode(hold)) <= NAME_MAX else f"{HOLD_PREFIX}{tag}.tmp"

    def keep(self, record: SessionRecord | None) -> None:
        os.unlink(self.name, dir_fd=self.fd)

    def undo(self) -> None:
        pass


class Unlink:
    """The default destination: the file is gone for good."""

    @contextlib.contextmanager
    def parking(self, folder: Folder, dir_fd: int, name: str, record: SessionRecord | None) -> Iterator[_Hold]:
        """A hidden temp name beside the file."""
        yield _Hold(dir_fd, name, folder.path)


def recover_interrupted(folder: Folder, max_bytes: int, names: Iterable[str]) -> list[str]:
    """Put back files a crash left half-way through a delete (the DELETE was never answered).

    *names*: the folder's names that are not session files, from the listing the first
    scan makes anyway (a second listing costs ~0.4 s at a million files). Returns the
    names put back (or found taken by a newer file meanwhile), for the scan to read.
    """
    recovered: list[str] = []
    held = [(name, m.group(1)) for name in names if name.startswith(HOLD_PREFIX) and (m := _HOLD.fullmatch(name))]
    if not held:
        return recovered
    with folder.open() as dir_fd:
        for hold, named in held:
            original = named
            if original is None or not is_session_name(original):
                state = read_fully(folder, dir_fd, hold, max_bytes)
                original = file_name_for(state.key) if isinstance(state, SessionRecord) else None
            if original is None:
                log.warning("left %r alone: an interrupted delete whose session cannot be told", hold)
                continue
            _put_back(dir_fd, hold, dir_fd, original)
            log.warning("put %r back: a delete of it was interrupted before it answered", original)
            recovered.append(original)
    return recovered
