"""The sessions folder as a verified handle: a real directory, never a symlink, never swapped unseen.

Every operation on session files goes through `Folder.open()`, which opens the
folder with O_NOFOLLOW | O_DIRECTORY and checks that it is still the very
directory (device, inode) the watcher verified. Files are then opened, renamed
and unlinked relative to that descriptor, so nothing outside the folder can be
reached, even if `sessions/` is replaced by a symlink a moment later.

Worker processes get the same picklable handle and open it themselves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import NamedTuple

FolderId = tuple[int, int]
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FolderUnusable(Exception):
    """The sessions folder is there but must not be used; the message says why (no paths)."""


class FolderChanged(FolderUnusable):
    """The folder was removed or replaced since it was verified."""


def _why(exc: OSError) -> str:
    return f"cannot be opened ({errno.errorcode.get(exc.errno or 0, 'error')})"


class Folder(NamedTuple):
    """The sessions folder's path and the identity it was verified with."""

    path: str
    ident: FolderId

    @contextlib.contextmanager
    def open(self) -> Iterator[int]:
        """A descriptor of the folder, if it is still the one verified; raises FolderChanged otherwise."""
        try:
            fd = os.open(self.path, DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise FolderUnusable(_why(exc)) from None
            raise FolderChanged("sessions folder changed") from None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.ident:
                raise FolderChanged("sessions folder changed")
            yield fd
        finally:
            os.close(fd)


def verify(path: str) -> Folder | None:
    """The real directory at *path* as a handle; None if nothing is there.

    Raises FolderUnusable for a symlink (never followed), anything that is not a
    directory, or a directory this process cannot read.
    """
    try:
        fd = os.open(path, DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if isinstance(exc, NotADirectoryError) or os.path.lexists(path):
            return _refuse(path, exc)
        return None
    except OSError as exc:
        return _refuse(path, exc)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return Folder(path, (st.st_dev, st.st_ino))


def _refuse(path: str, exc: OSError) -> Folder | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        raise FolderUnusable(_why(exc)) from None
    if stat.S_ISLNK(st.st_mode):
        raise FolderUnusable("is a symlink (not followed)")
    if not stat.S_ISDIR(st.st_mode):
        raise FolderUnusable("is not a directory")
    raise FolderUnusable(_why(exc))


def identity(path: str) -> FolderId | None:
    """(device, inode) of the real directory at *path*; None for anything else (a symlink is not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None
