"""Index snapshots: flat records for worker processes and for a fast restart.

A restart loads the last snapshot, stats every file, and re-reads only the
files whose (size, mtime_ns, inode) differ, as git does with its index. A
file whose mtime is too close to the moment the snapshot was taken may have
changed again within the same timestamp tick, so it is re-read too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

from .index import FileStat, FileState, InvalidFile, SessionRecord

log = logging.getLogger(__name__)

FORMAT = "sessiond-snapshot/1"
# mtimes this close to the snapshot's own time are not trusted (timestamp granularity).
RACY_SECONDS = 2.0

# A flat record: (name, size, mtime_ns, inode, key, message_count, created_at, updated_at)
# for a session, (name, size, mtime_ns, inode, reason) for an invalid file.
Flat = tuple


def flatten(name: str, state: FileState) -> Flat | None:
    """A record of plain values (cheap to pickle and to serialise)."""
    if isinstance(state, SessionRecord):
        st = state.stat
        return (name, st.size, st.mtime_ns, st.inode, state.key, state.message_count, state.created_at, state.updated_at)
    if isinstance(state, InvalidFile):
        st = state.stat
        return (name, st.size, st.mtime_ns, st.inode, state.reason)
    return None


def unflatten(flat: Flat | list) -> tuple[str, FileState]:
    """The inverse of flatten."""
    name, size, mtime_ns, inode = flat[0], flat[1], flat[2], flat[3]
    st = FileStat(size, mtime_ns, inode)
    if len(flat) == 5:
        return name, InvalidFile(name, flat[4], st)
    return name, SessionRecord(flat[4], name, flat[5], flat[6], flat[7], st)


def save(path: Path, folder: str, states: Iterable[tuple[str, FileState]]) -> int:
    """Write a snapshot atomically (temp file + rename); return the record count. Blocking."""
    taken_at = time.time()
    records = [flat for name, state in states if (flat := flatten(name, state)) is not None]
    body = orjson.dumps({"format": FORMAT, "folder": folder, "taken_at": taken_at, "records": records})
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")  # never shared
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(records)


def load(path: Path, folder: str) -> tuple[float, dict[str, FileState]] | None:
    """(taken_at, name -> state) from a snapshot of *folder*, or None if there is none usable."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("ignoring unreadable snapshot %s: %s", path, exc)
        return None
    try:
        if doc.get("format") != FORMAT or doc.get("folder") != folder:
            log.info("snapshot %s is for another folder or format; scanning in full", path)
            return None
        return float(doc["taken_at"]), dict(unflatten(flat) for flat in doc["records"])
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        log.warning("ignoring malformed snapshot %s: %r", path, exc)
        return None


def still_valid(state: FileState, st: FileStat, taken_at: float) -> bool:
    """True if the snapshot's view of a file can be kept without reading it."""
    if state is None:
        return False
    recorded = state.stat
    return recorded == st and st.mtime_ns / 1e9 < taken_at - RACY_SECONDS
