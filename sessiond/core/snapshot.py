"""Index snapshots: flat records for worker processes, and a columnar file for a fast restart.

A restart loads the last snapshot, stats every file, and re-reads only the
files whose (size, mtime, inode, ctime) differ, as git does with its index.
The ctime is what makes this safe: an edit that puts size and mtime back
(`touch -r`, `cp -p`, `rsync -t`) or a new file on a reused inode still moves
it. A file whose times are too close to the moment the snapshot was taken may
have changed again within the same timestamp tick, so it is re-read too.

The file is columnar (format 3): one JSON header line, then each field of
every session as one block: names and keys NUL-joined UTF-8, numbers as
machine arrays, and a small JSON side table for what the columns cannot hold
(a key with a NUL in it, a timestamp stored as an integer). A BLAKE2b checksum
covers the blocks. Records are in key order, so the index's sorted key list
is built from sorted input. A million sessions load without a large temporary
object graph: the only objects made are the records the index keeps.

A snapshot is data, not trust: the checksum, every column's length and every
value's range are checked on load, and anything wrong discards the whole
snapshot (one warning, then a full scan). Only valid sessions are kept in it;
every file found invalid before is looked at again, since a raised limit or
fixed permission does not change the file's stat.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import itertools
import logging
import math
import operator
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from sessiond.core.index import COLUMNS, FileState, Rows, SessionRecord, Table, pack_fields
from sessiond.core.names import MAX_KEY_LENGTH, is_session_name, name_is_text

log = logging.getLogger(__name__)

FORMAT = "sessiond-snapshot/3"
# Names of files that earlier versions wrote next to ours, removed at start.
OLDER_FILES = ("index.snapshot.json",)
# times this close to the snapshot's own time are not trusted (timestamp granularity).
RACY_SECONDS = 2.0
_WORD = 64
# The file is written this much at a time; a save told to stop looks between slices.
WRITE_SLICE = 1 << 20
STEP_ROWS = 1 << 16  # records between two looks at whether a save must stop
SLICE_ROWS = 1 << 14  # rows one C call of the encoding covers (a millisecond or two)

# The numeric columns, in file order, with their array type codes (machine byte order,
# recorded in the header: a snapshot moved to another architecture is simply not used).
NUMBERS = COLUMNS  # the index keeps its rows in the very same columns (index.Rows)
BLOCKS = ("names", "keys", *NUMBERS, "odd")


class BadSnapshot(ValueError):
    """A snapshot is not what save() writes."""


class Abandoned(Exception):
    """A save was told to stop before it finished: its temp file is gone, the previous snapshot stands."""


def _always() -> bool:
    return True


# -- writing -----------------------------------------------------------------------------


def encode(folder: str, taken_at: float, records: Iterable[SessionRecord]) -> tuple[bytes, int]:
    """The snapshot's bytes for *records* (sessions only), and how many it holds."""
    parts, count = _encode_parts(folder, taken_at, _table_of(records, lambda: None), _always)
    return b"".join(parts), count


def _table_of(records: Iterable[SessionRecord], step: Callable[[], None]) -> Table:
    """*records* as a Table, in (key, name) order."""
    rows = list(records)
    step()
    if not _in_order(rows, step):
        rows.sort(key=_order)  # one C call holding the GIL: 1.4 s at 1M records in random order
    step()
    built = Rows.of_records(rows)
    return Table(built.names, built.keys, built.columns, built.exact)


def _encode_parts(folder: str, taken_at: float, table: Table, go_on: Callable[[], bool]) -> tuple[list[bytes], int]:
    """The snapshot's bytes in parts (the header line, then each block), and the record count.

    Never joined into one: a copy of ~100 MB at 1M records is a C call that holds the
    GIL (and the event loop) for a few hundred ms. *go_on* is asked between steps (each
    well under a second at 1M records); when it says no, Abandoned is raised. The table's
    columns are sliced, not made into records: a save at 1M made a million records for a
    moment (~200 MB) before the index kept its rows as columns.
    """

    def step() -> None:
        if not go_on():
            raise Abandoned

    names, keys, numbers, exact = table
    if not all(map(str.isascii, names)) and not all(map(name_is_text, names)):  # (rare) a name that is not text
        wanted = [row for row, name in enumerate(names) if name_is_text(name)]
        at = {row: i for i, row in enumerate(wanted)}
        names, keys = [names[row] for row in wanted], [keys[row] for row in wanted]
        numbers = {field: array.array(code, [numbers[field][row] for row in wanted]) for field, code in NUMBERS.items()}
        exact = {at[row]: times for row, times in exact.items() if row in at}
    step()
    odd_keys: dict[str, str] = {}  # row -> a key holding NUL (it cannot be in the NUL-joined block)
    if any(map(operator.contains, keys, itertools.repeat("\0"))):
        keys = list(keys)
        for i, key in enumerate(keys):
            if "\0" in key:
                odd_keys[str(i)] = key
                keys[i] = "?"
    step()
    if exact:  # the float columns hold what a double makes of them (the load takes `exact` first)
        numbers = dict(numbers, created=array.array("d", numbers["created"]), updated=array.array("d", numbers["updated"]))
        for row, (made, changed) in exact.items():
            numbers["created"][row], numbers["updated"][row] = float(made), float(changed)
    # Every block in parts of SLICE_ROWS rows: each part is one C call (a join, an encode,
    # a slice), which holds the GIL throughout. Whole, at 1M records, each was tens of
    # ms, and the event loop, which needs the GIL for every step, waited behind them.
    blocks: dict[str, list[bytes]] = {
        "names": _joined(names, step),
        "keys": _joined(keys, step),  # the loader lets no lone surrogate into a key
    }
    for field in NUMBERS:
        step()
        column = numbers[field]
        blocks[field] = [column[i : i + SLICE_ROWS].tobytes() for i in range(0, len(column), SLICE_ROWS)]
    blocks["odd"] = [orjson.dumps({"keys": odd_keys, "exact": {str(row): list(exact[row]) for row in sorted(exact)}})]
    step()
    hasher = hashlib.blake2b(digest_size=16)
    for name in BLOCKS:
        for part in blocks[name]:
            hasher.update(part)  # releases the GIL
    header = {
        "format": FORMAT,
        "folder": folder,
        "taken_at": taken_at,
        "records": len(names),
        "byteorder": sys.byteorder,
        "blocks": [sum(map(len, blocks[name])) for name in BLOCKS],
        "checksum": hasher.hexdigest(),
    }
    return [orjson.dumps(header) + b"\n", *(part for name in BLOCKS for part in blocks[name])], len(names)


def _joined(strings: list[str], step: Callable[[], None]) -> list[bytes]:
    """The bytes of "\\0".join(strings).encode(), in parts of SLICE_ROWS strings."""
    parts: list[bytes] = []
    for start in range(0, len(strings), SLICE_ROWS):
        step()
        if start:
            parts.append(b"\0")
        parts.append("\0".join(strings[start : start + SLICE_ROWS]).encode())
    return parts


def _in_order(rows: list[SessionRecord], step: Callable[[], None]) -> bool:
    for start in range(0, len(rows), STEP_ROWS):
        piece = rows[start : start + STEP_ROWS + 1]
        if not all(map(_before, piece, itertools.islice(piece, 1, None))):
            return False
        step()
    return True


def _order(record: SessionRecord) -> tuple[str, str]:
    return record.key, record.name


def _before(a: SessionRecord, b: SessionRecord) -> bool:
    return (a.key, a.name) < (b.key, b.name)


def _checksum(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def save(path: Path, folder: str, rows: Table | Iterable[SessionRecord], go_on: Callable[[], bool] = _always) -> int:
    """Write a snapshot of *rows* (the index's Table, or records) atomically (temp file + rename);
    return the record count. Blocking.

    *go_on* is asked between steps and between slices of the write; when it says no,
    the temp file is removed and Abandoned raised: the snapshot already there (if any)
    was never touched, so it stays whole and trusted.
    """

    def step() -> None:
        if not go_on():
            raise Abandoned

    table = rows if isinstance(rows, Table) else _table_of(rows, step)
    parts, count = _encode_parts(folder, time.time(), table, go_on)
    if not go_on():
        raise Abandoned  # before the temp file: a stop that abandons the save finds none to remove
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")  # never shared
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                view = memoryview(part)
                for start in range(0, len(view), WRITE_SLICE):
                    if not go_on():
                        raise Abandoned
                    _write_slice(fh, view[start : start + WRITE_SLICE])
        if not go_on():
            raise Abandoned
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_slice(fh: Any, piece: memoryview) -> None:
    fh.write(piece)


def remove_own_temp(path: Path) -> None:
    """Delete this process's temp files beside *path*: those of a save it abandoned at its stop.

    The save's thread may still hold one open; it is told to stop, and removes (or finds
    removed) its file at its next step, or is ended with the process, which does not wait.
    """
    prefix = f"{path.name}.{os.getpid()}."
    with contextlib.suppress(OSError):
        for name in os.listdir(path.parent):
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    os.unlink(path.parent / name)


def remove_leftovers(path: Path) -> int:
    """Delete temp files of saves that never finished (a crash, kill -9) and snapshots of
    older formats; return how many."""
    removed = 0
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    for name in names:
        if (name.startswith(prefix) and name.endswith(".tmp")) or (name in OLDER_FILES and name != path.name):
            try:
                os.unlink(path.parent / name)
                removed += 1
            except OSError as exc:
                log.warning("cannot remove the leftover snapshot %s: %s", name, exc.strerror)
    return removed


# -- reading -----------------------------------------------------------------------------


class Columns:
    """A decoded, checked snapshot; records are made from it only for the files still as they were."""

    def __init__(
        self,
        taken_at: float,
        names: list[str],
        keys: list[str],
        numbers: dict[str, array.array[Any]],
        exact: dict[int, list[Any]],
    ) -> None:
        self.taken_at = taken_at
        self.names = names
        self.keys = keys
        self.numbers = numbers
        self.exact = exact
        self.checksum = ""  # the file's, as its header says (a worker that read the file's names names it too)

    def __len__(self) -> int:
        return len(self.names)

    def split(self, disk: dict[str, int], kept: list[tuple[str, FileState]]) -> list[str]:
        """Compare with the disk (name -> pack of its stat; emptied): append to *kept* the
        records still true, and return the names to read.

        A record is still true when the file's stat is exactly the one recorded and its
        times lie outside the racy window before the snapshot was taken. (*kept* is filled
        in place, not returned: a result handed back through an executor's future stays
        referenced by the future's cycle until the collector runs, and here that would be
        a million tuples.)
        """
        n = self.numbers
        racy_ns = int((self.taken_at - RACY_SECONDS) * 1e9)
        for (name, record), mtime, ctime in zip(self._records(0, len(self)), n["mtime"], n["ctime"], strict=True):
            on_disk = disk.pop(name, None)
            if on_disk is None:
                continue  # gone
            if on_disk != record.ident or mtime >= racy_ns or ctime >= racy_ns:
                disk[name] = on_disk  # back, to be read
                continue
            kept.append((name, record))
        return list(disk)

    def compare(self, lo: int, hi: int, disk: Stats, kept: list[int]) -> list[str]:
        """Rows lo..hi against *disk*, their files' stats taken in row order (stat_columns):
        append to *kept* the rows still true (as split judges) and return the names to read.
        No record is made: the index takes the kept rows as columns (SessionIndex.load).

        A slice whose four columns equal the snapshot's and whose times all lie before the
        racy window is compared in C, column by column; only a slice that differs is looked
        at row by row.
        """
        n = self.numbers
        racy_ns = int((self.taken_at - RACY_SECONDS) * 1e9)
        size, mtime, inode, ctime = disk
        if (
            n["size"][lo:hi] == size
            and n["mtime"][lo:hi] == mtime
            and n["inode"][lo:hi] == inode
            and n["ctime"][lo:hi] == ctime
            and (hi == lo or (max(mtime) < racy_ns and max(ctime) < racy_ns))
        ):
            kept.extend(range(lo, hi))
            return []
        read: list[str] = []
        names = self.names
        for row in range(lo, hi):
            i = row - lo
            if size[i] == -1:
                continue  # gone
            name = names[row]
            if (size[i], mtime[i], inode[i], ctime[i]) != (
                n["size"][row],
                n["mtime"][row],
                n["inode"][row],
                n["ctime"][row],
            ) or not (mtime[i] < racy_ns and ctime[i] < racy_ns):
                read.append(name)
            else:
                kept.append(row)
        return read

    def _records(self, lo: int, hi: int) -> list[tuple[str, SessionRecord]]:
        """(name, record) of rows lo..hi, as recorded."""
        n = self.numbers
        created, updated = n["created"][lo:hi].tolist(), n["updated"][lo:hi].tolist()
        for row, (exact_created, exact_updated) in self.exact.items():
            if lo <= row < hi:
                created[row - lo], updated[row - lo] = exact_created, exact_updated  # as stored: int, or beyond a double
        names = self.names[lo:hi]
        rows = zip(
            names,
            self.keys[lo:hi],
            n["count"][lo:hi],
            created,
            updated,
            n["size"][lo:hi],
            n["mtime"][lo:hi],
            n["inode"][lo:hi],
            n["ctime"][lo:hi],
            strict=True,
        )
        return [
            (
                name,
                SessionRecord(
                    key,
                    name,
                    count,
                    made,
                    changed,
                    pack_fields(size, mtime, inode, ctime),
                ),
            )
            for name, key, count, made, changed, size, mtime, inode, ctime in rows
        ]


# Four columns of file stats in the snapshot's types (size, mtime, inode, ctime): one row per
# name asked for, in that order; a size of -1 marks a file that is gone (or not stat-able), -2 one
# whose times no column holds (so it is read).
Stats = tuple["array.array[int]", "array.array[int]", "array.array[int]", "array.array[int]"]


def stat_columns(dir_fd: int, names: list[str]) -> Stats:
    """The stats of *names* (relative to *dir_fd*) as columns. Blocking: run in a worker process for many."""
    size, mtime, inode, ctime = array.array("q"), array.array("q"), array.array("Q"), array.array("q")
    lstat = os.lstat
    for name in names:
        try:
            st = lstat(name, dir_fd=dir_fd)
        except OSError:
            size.append(-1)
            mtime.append(0)
            inode.append(0)
            ctime.append(0)
            continue
        if -_I63 <= st.st_mtime_ns < _I63 and -_I63 <= st.st_ctime_ns < _I63:
            size.append(st.st_size)
            mtime.append(st.st_mtime_ns)
            inode.append(st.st_ino)
            ctime.append(st.st_ctime_ns)
        else:  # a time no snapshot column holds (past 2262): never as recorded, so read
            size.append(-2)
            mtime.append(0)
            inode.append(0)
            ctime.append(0)
    return size, mtime, inode, ctime


_I63 = 1 << 63


def names_of(path: Path) -> tuple[str, set[str]] | None:
    """The checksum a snapshot's header states and the file names it holds, unchecked (the
    checksum is load's to verify: the daemon uses these names only for a snapshot it loaded
    with the same checksum), or None if they cannot be read. For the worker process that
    lists a big folder against them."""
    try:
        with path.open("rb") as fh:
            header = orjson.loads(fh.readline())
            length = header["blocks"][0]
            if header.get("format") != FORMAT or header["records"] == 0 or not _count(length):
                return None
            block = fh.read(length)
        return str(header["checksum"]), set(block.decode().split("\0"))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def load(path: Path, folder: str) -> Columns | None:
    """The checked columns of a snapshot of *folder*, or None if there is none usable. Blocking."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring unreadable snapshot %s (%s); reading every file", path, exc)
        return None
    head, _, body = data.partition(b"\n")
    del data
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("folder") != folder:
        log.info("snapshot %s is for another folder or format; reading every file", path)
        return None
    if header.get("byteorder") != sys.byteorder:
        log.info("snapshot %s was written on another architecture; reading every file", path)
        return None
    try:
        return _decode(header, body)
    except (BadSnapshot, KeyError, TypeError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError too
        log.warning("ignoring malformed snapshot %s (%s); reading every file", path, exc)
        return None


def _decode(header: dict[str, Any], body: bytes) -> Columns:
    if _checksum(body) != header["checksum"]:
        raise BadSnapshot("checksum mismatch (truncated or altered)")
    taken_at, count, lengths = header["taken_at"], header["records"], header["blocks"]
    if not (_finite(taken_at) and _count(count) and isinstance(lengths, list) and len(lengths) == len(BLOCKS)):
        raise BadSnapshot("bad header")
    blocks: dict[str, bytes] = {}
    start = 0
    for name, length in zip(BLOCKS, lengths, strict=True):
        if not _count(length):
            raise BadSnapshot(f"bad length of {name}")
        blocks[name] = body[start : start + length]
        start += length
    if start != len(body):
        raise BadSnapshot("the blocks do not add up to the body")
    names = blocks["names"].decode().split("\0") if count else []
    keys = blocks["keys"].decode().split("\0") if count else []
    numbers: dict[str, array.array[Any]] = {}
    for field, code in NUMBERS.items():
        column = array.array(code)
        column.frombytes(blocks[field])  # ValueError unless a whole number of items
        numbers[field] = column
    if len(names) != count or len(keys) != count or any(len(column) != count for column in numbers.values()):
        raise BadSnapshot("columns of different lengths")
    odd = orjson.loads(blocks["odd"])
    for row, key in _rows(odd["keys"], count).items():
        if not isinstance(key, str):
            raise BadSnapshot("a record has a bad key")
        keys[row] = key
    exact = _rows(odd["exact"], count)
    _check(names, keys, numbers, exact)
    columns = Columns(float(taken_at), names, keys, numbers, exact)
    columns.checksum = header["checksum"]
    return columns


def _rows(table: object, count: int) -> dict[int, Any]:
    if not isinstance(table, dict):
        raise BadSnapshot("bad side table")
    rows = {int(row): value for row, value in table.items()}
    if any(row not in range(count) for row in rows):
        raise BadSnapshot("a side table names a record that is not there")
    return rows


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return type(value) is int and value >= 0


def _check(names: list[str], keys: list[str], numbers: dict[str, array.array[Any]], exact: dict[int, Any]) -> None:
    # Every value in range, a column at a time (loops in C where they can be).
    if not all(map(is_session_name, names)):
        raise BadSnapshot("a record has no session file name")
    if len(set(names)) != len(names):
        raise BadSnapshot("a file name appears twice")
    if names and (min(map(len, keys)) == 0 or max(map(len, keys)) > MAX_KEY_LENGTH):
        raise BadSnapshot("a record has a bad key")
    if names and (min(numbers["count"]) < 0 or min(numbers["size"]) < 0):
        raise BadSnapshot("a record has a bad message count or size")
    if not (all(map(math.isfinite, numbers["created"])) and all(map(math.isfinite, numbers["updated"]))):
        raise BadSnapshot("a record has a bad timestamp")
    for pair in exact.values():
        if not (isinstance(pair, list) and len(pair) == 2 and all(map(_finite, pair))):
            raise BadSnapshot("a record has a bad timestamp")
