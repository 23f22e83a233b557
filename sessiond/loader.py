"""Turning files into index records: a pure parser, one-file reads, and the full scan."""

from __future__ import annotations

import codecs
import errno
import math
import os
import stat as stat_mod
import threading
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import simdjson

from . import bigfile
from .index import FileStat, FileState, InvalidFile, SessionRecord
from .jsonerrors import describe_invalid_json


class InvalidSession(ValueError):
    """The bytes are not a session; the message says why (no paths, safe to show)."""


class ParsedSession(NamedTuple):
    """What the index keeps from a session's content."""

    key: str
    message_count: int
    created_at: float | None
    updated_at: float | None


MAX_KEY_LENGTH = 4096
# How every session file is opened: never through a symlink, never blocking on a FIFO.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Files above this are parsed in a child process (see bigfile.py): parsing holds
# the GIL, so this keeps a parse within a few ms of loop stall.
INLINE_PARSE_BYTES = 4 * 1024 * 1024


def is_session_name(name: str) -> bool:
    """True for a top-level file name that can hold a session (`*.json`, not hidden)."""
    return name.endswith(".json") and not name.startswith(".") and "/" not in name and "\0" not in name


def _timestamp(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


_local = threading.local()
_JSON_TYPE = {simdjson.Array: "list", type(None): "null", str: "str", int: "int", float: "float", bool: "bool"}


def _parser() -> simdjson.Parser:
    # A simdjson parser reuses its buffers between documents; one per thread.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def parse_session(data: bytes) -> ParsedSession:
    """Parse a session file's bytes; raise InvalidSession with a short reason.

    simdjson validates the whole document (syntax, UTF-8, depth) but builds no
    Python objects for the messages: counting them is a length lookup. That is
    3-4x cheaper than a full orjson parse of a typical session.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # editors on Windows add one; JSON parsers refuse it
    if not data.strip():
        raise InvalidSession("empty file")
    parser = _parser()
    try:
        doc = parser.parse(data)
    except (ValueError, RuntimeError) as exc:
        raise InvalidSession(f"not valid JSON ({describe_invalid_json(data, str(exc).split(':')[0].rstrip('.'))})") from None
    try:
        if not isinstance(doc, simdjson.Object):
            raise InvalidSession(f"top level is a JSON {_JSON_TYPE.get(type(doc), 'value')}, not an object")
        key = doc.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidSession("no string 'key'")
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidSession(f"'key' longer than {MAX_KEY_LENGTH} characters")
        messages = doc.get("messages")
        if not isinstance(messages, simdjson.Array):
            raise InvalidSession("'messages' is not a list")
        return ParsedSession(key, len(messages), _timestamp(doc.get("created_at")), _timestamp(doc.get("updated_at")))
    finally:
        # The parser refuses the next document while proxies into this one live.
        del doc
        if len(data) > INLINE_PARSE_BYTES:
            _local.parser = None  # do not keep a huge document's buffers around


def make_record(name: str, parsed: ParsedSession, st: FileStat) -> SessionRecord:
    """Combine parsed content and stat; missing timestamps fall back to the file's mtime."""
    mtime = st.mtime_ns / 1e9
    created = parsed.created_at
    updated = parsed.updated_at
    if created is None:
        created = updated if updated is not None else mtime
    if updated is None:
        updated = max(created, mtime)
    return SessionRecord(parsed.key, name, parsed.message_count, created, updated, st)


def stat_of(st: os.stat_result) -> FileStat:
    """The parts of a stat that tell whether a file changed."""
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ino)


def read_state(folder: str, name: str, max_bytes: int, inline_bytes: int = INLINE_PARSE_BYTES) -> FileState:
    """The current truth about *folder/name*: a record, an InvalidFile, or None if gone.

    Blocking; call it from an executor. Symlinks and non-regular files are not sessions.
    Files over *inline_bytes* are read and parsed in a child process.
    """
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _not_regular(path, name)
        if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
            return None
        return InvalidFile(name, f"cannot open ({errno.errorcode.get(exc.errno or 0, 'error')})", _lstat_or_zero(path))
    try:
        st = os.fstat(fd)
        fst = stat_of(st)
        if not stat_mod.S_ISREG(st.st_mode):
            return InvalidFile(name, "not a regular file", fst)
        if st.st_size > max_bytes:
            return InvalidFile(name, f"larger than max_file_bytes ({st.st_size} > {max_bytes})", fst)
        if st.st_size > inline_bytes:
            return _read_isolated(folder, name, max_bytes, fst)
        data = _read_all(fd, st.st_size)
    except OSError as exc:
        return InvalidFile(name, f"cannot read ({errno.errorcode.get(exc.errno or 0, 'error')})", _lstat_or_zero(path))
    finally:
        os.close(fd)
    try:
        parsed = parse_session(data)
    except InvalidSession as exc:
        return InvalidFile(name, str(exc), fst)
    return make_record(name, parsed, fst)


def _read_isolated(folder: str, name: str, max_bytes: int, fst: FileStat) -> FileState:
    # The child opens the file itself, so the daemon never holds its bytes.
    try:
        return bigfile.read_in_child(folder, name, max_bytes)
    except bigfile.ChildFailed as exc:
        return InvalidFile(name, str(exc), fst)


def _read_all(fd: int, size_hint: int) -> bytes:
    want = max(size_hint, 0) + 1  # one extra byte notices a file that grew since fstat
    data = os.read(fd, want)
    if len(data) < want:
        return data  # a short read of a regular file is the end: one syscall for most files
    chunks = [data]
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _not_regular(path: str, name: str) -> InvalidFile:
    return InvalidFile(name, "symlink (not followed)", _lstat_or_zero(path))


def _lstat_or_zero(path: str) -> FileStat:
    try:
        return stat_of(os.lstat(path))
    except OSError:
        return FileStat(0, 0, 0)


def list_session_files(folder: str) -> Iterator[tuple[str, FileStat]]:
    """Stat-only walk of the top level: (name, stat) of every candidate session file."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if not is_session_name(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield entry.name, stat_of(st)


def stale_names(folder: str, known: Mapping[str, FileStat]) -> list[tuple[str, FileStat | None]]:
    """Names whose stat on disk differs from *known*, with the disk's stat (None: gone).

    A missing folder holds nothing, so then every known name is stale.
    """
    try:
        listing = dict(list_session_files(folder))
    except (FileNotFoundError, NotADirectoryError):
        listing = {}
    stale = [(name, st) for name, st in listing.items() if known.get(name) != st]
    stale.extend((name, None) for name in known if name not in listing)
    return stale


def scan_names(folder: str, names: list[str], max_bytes: int) -> list[tuple[str, FileState]]:
    """Read every named file (for an executor or a worker process)."""
    return [(name, read_state(folder, name, max_bytes)) for name in names]
