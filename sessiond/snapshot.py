"""Index snapshots: flat records for worker processes and for a fast restart.

A restart loads the last snapshot, stats every file, and re-reads only the
files whose (size, mtime, inode, ctime) differ, as git does with its index.
The ctime is what makes this safe: an edit that puts size and mtime back
(`touch -r`, `cp -p`, `rsync -t`) or a new file on a reused inode still moves
it. A file whose times are too close to the moment the snapshot was taken may
have changed again within the same timestamp tick, so it is re-read too.

A snapshot is data, not trust: every record is checked on load, and anything
wrong discards the whole snapshot (one warning, then a full scan). Only valid
sessions are kept in it; every file found invalid before is looked at again,
since a raised limit or fixed permission does not change the file's stat.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .index import FileStat, FileState, InvalidFile, SessionRecord
from .loader import MAX_KEY_LENGTH, is_session_name, name_is_text

log = logging.getLogger(__name__)

FORMAT = "sessiond-snapshot/2"
# times this close to the snapshot's own time are not trusted (timestamp granularity).
RACY_SECONDS = 2.0

# A flat record: (name, size, mtime_ns, inode, ctime_ns, key, message_count, created_at, updated_at)
# for a session, (name, size, mtime_ns, inode, ctime_ns, reason) for an invalid file.
Flat = tuple[Any, ...]


class BadSnapshot(ValueError):
    """A snapshot record is not what save() writes."""


def flatten(name: str, state: FileState) -> Flat | None:
    """A record of plain values (cheap to pickle and to serialise)."""
    if isinstance(state, SessionRecord):
        return (name, *state.stat, state.key, state.message_count, state.created_at, state.updated_at)
    if isinstance(state, InvalidFile):
        return (name, *state.stat, state.reason)
    return None


def unflatten(flat: Flat | list[Any]) -> tuple[str, FileState]:
    """The inverse of flatten."""
    name = flat[0]
    st = FileStat(flat[1], flat[2], flat[3], flat[4])
    if len(flat) == 6:
        return name, InvalidFile(name, flat[5], st)
    return name, SessionRecord(flat[5], name, flat[6], flat[7], flat[8], st)


def save(path: Path, folder: str, states: Iterable[tuple[str, FileState]]) -> int:
    """Write a snapshot atomically (temp file + rename); return the record count. Blocking."""
    taken_at = time.time()
    records = [
        flatten(name, state)
        for name, state in states
        if isinstance(state, SessionRecord) and name_is_text(name)  # orjson writes text only
    ]
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


def remove_leftovers(path: Path) -> int:
    """Delete temp files of saves that never finished (a crash, kill -9); return how many."""
    removed = 0
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(path.parent / name)
                removed += 1
            except OSError as exc:
                log.warning("cannot remove the unfinished snapshot %s: %s", name, exc.strerror)
    return removed


def load(path: Path, folder: str) -> tuple[float, dict[str, SessionRecord]] | None:
    """(taken_at, name -> record) from a snapshot of *folder*, or None if there is none usable."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("ignoring unreadable snapshot %s (%s); reading every file", path, exc)
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("folder") != folder:
        log.info("snapshot %s is for another folder or format; reading every file", path)
        return None
    try:
        taken_at = doc["taken_at"]
        if not _number(taken_at):
            raise BadSnapshot("taken_at is not a time")
        records = doc["records"]
        if not isinstance(records, list):
            raise BadSnapshot("records is not a list")
        states = dict(_checked(flat) for flat in records)
        if len(states) != len(records):
            raise BadSnapshot("a file name appears twice")
    except (KeyError, BadSnapshot) as exc:
        log.warning("ignoring malformed snapshot %s (%s); reading every file", path, exc)
        return None
    return float(taken_at), states


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _checked(flat: object) -> tuple[str, SessionRecord]:
    if not isinstance(flat, list) or len(flat) != 9:
        raise BadSnapshot("a record is not a session record")
    name, size, mtime_ns, inode, ctime_ns, key, count, created, updated = flat
    if not (isinstance(name, str) and is_session_name(name)):
        raise BadSnapshot("a record has no session file name")
    if not (_count(size) and type(mtime_ns) is int and _count(inode) and type(ctime_ns) is int and _count(count)):
        raise BadSnapshot(f"record {name!r} has a bad stat or message count")
    if not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH):
        raise BadSnapshot(f"record {name!r} has a bad key")
    if not (_number(created) and _number(updated)):
        raise BadSnapshot(f"record {name!r} has a bad timestamp")
    return name, SessionRecord(key, name, count, created, updated, FileStat(size, mtime_ns, inode, ctime_ns))


def still_valid(record: SessionRecord, st: FileStat, taken_at: float) -> bool:
    """True if the snapshot's record of a file can be kept without reading it."""
    return record.stat == st and max(st.mtime_ns, st.ctime_ns) / 1e9 < taken_at - RACY_SECONDS
