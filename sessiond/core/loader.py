"""Turning files into index records: a pure parser, one-file reads, and the stat walk.

What a session is, in one rule: a top-level `*.json` file of the sessions folder
(hidden names included) whose bytes Python's `json.loads` accepts as an object
with a non-empty string `key` and a list `messages`, with exactly the values
`json.loads` gives (the agent writes with `json.dumps` and reads with
`json.loads`). simdjson is the fast path; whenever it refuses a document, the
document repeats a top-level member, or it is nested deeper than `json.loads`
reads, `json.loads` itself decides.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import pickle
import stat as stat_mod
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import simdjson

from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.index import FileStat, FileState, InvalidFile, SessionRecord, pack_stat
from sessiond.core.names import BAD_NAME, MAX_KEY_LENGTH, is_session_name, name_is_text

A = TypeVar("A")
T = TypeVar("T")


class InvalidSession(ValueError):
    """The bytes are not a session; the message says why (no paths, safe to show)."""


class NeedsChild(Exception):
    """The file is too big to parse in the daemon; read it with read_in_child."""

    def __init__(self, stat: FileStat) -> None:
        super().__init__("parse in a child process")
        self.stat = stat


class ParsedSession(NamedTuple):
    """What the index keeps from a session's content."""

    key: str
    message_count: int
    created_at: int | float | None
    updated_at: int | float | None


# How every session file is opened: never through a symlink, never blocking on a FIFO.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Files above this are parsed in a child process (read_in_child, below): parsing holds
# the GIL, so this keeps a parse within a few ms of loop stall.
INLINE_PARSE_BYTES = 4 * 1024 * 1024
# Integers the API can echo as stored (orjson writes 64-bit integers); others fall back.
_INT_RANGE = range(-(2**63), 2**64)


def _timestamp(value: object) -> int | float | None:
    # Echoed as stored: an integer stays an integer. Anything the API could not
    # write back as a JSON number (NaN, infinities, integers past 64 bits) falls back.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in _INT_RANGE else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


# simdjson reads documents up to 1,024 levels deep; json.loads stops sooner on some
# Pythons (near 990 on 3.11: the recursion limit, less the stack in use). A document is
# parsed inside as many extra levels as make simdjson refuse what is deeper than json.loads
# reads (see _padding), and then json.loads decides: the rule stays what json.loads reads.
_SIMDJSON_MAX_DEPTH = 1024
_BOM = b"\xef\xbb\xbf"  # simdjson skips it at the very start only, so it goes before the padding


class _Padding(NamedTuple):
    levels: int
    open: bytes
    close: bytes


_local = threading.local()
_JSON_TYPE = {simdjson.Array: "list", list: "list", type(None): "null", str: "str", int: "int", float: "float", bool: "bool"}


def _parser() -> simdjson.Parser:
    # A simdjson parser reuses its buffers between documents; one per thread.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def parse_session(data: bytes) -> ParsedSession:
    """Parse a session file's bytes exactly as `json.loads` reads them; raise InvalidSession with a short reason.

    simdjson validates the whole document but builds no Python objects for the
    messages: counting them is a length lookup, 3-4x cheaper than a full parse.
    It refuses what Python accepts (NaN, Infinity, integers past 64 bits, lone
    surrogates, UTF-16), and keeps the first of repeated members where Python
    keeps the last: those documents go to `json.loads` itself.
    """
    if not data.strip():
        raise InvalidSession("empty file")
    parser = _parser()
    pad = _padding()
    # A file shorter than twice as many bytes as json.loads reads levels cannot be deeper.
    padded = pad.levels and len(data) > 2 * (_SIMDJSON_MAX_DEPTH - pad.levels)
    try:
        if padded:
            # Refused when deeper than json.loads reads. Not unwrapped (66 calls into simdjson, 1.5 µs
            # of a 3 KB file's 4): the file is parsed again as it is, which also refuses a file that
            # closes the padding and opens more ("{…}],[…"), not one JSON value.
            probe = parser.parse(pad.open + (data[3:] if data.startswith(_BOM) else data) + pad.close)
            del probe  # the parser takes no next document while a proxy into this one lives
        doc = parser.parse(data)
    except (ValueError, RuntimeError):
        return _parse_reference(data)  # not JSON to simdjson, or deeper than json.loads reads
    try:
        if not isinstance(doc, simdjson.Object):
            raise InvalidSession(f"top level is a JSON {_JSON_TYPE.get(type(doc), 'value')}, not an object")
        names = list(doc.keys())
        if len(names) != len(set(names)):
            return _parse_reference(data)  # a repeated member: the last one counts
        return _session_from(doc.get, text_checked=True)
    finally:
        # The parser refuses the next document while proxies into this one live.
        del doc
        if len(data) > INLINE_PARSE_BYTES:
            _local.parser = None  # do not keep a huge document's buffers around


def on_a_fresh_stack(work: Callable[[A], T], arg: A) -> T:
    """`work(arg)`, tried again in a thread of its own if it hits the recursion limit.

    json.loads (and json.dumps) refuse a document nested deeper than the recursion
    limit less the frames already on the stack, so the same file would be read at one
    call site and refused at another. A thread's stack is the shallowest there is: the
    answer is the same from the daemon's executor, a big file's child process or a
    test. RecursionError if *work* hits the limit there too.
    """
    try:
        return work(arg)
    except RecursionError:
        return _in_a_thread(work, arg)


def _in_a_thread(work: Callable[[A], T], arg: A) -> T:
    outcome: list[T] = []
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            outcome.append(work(arg))  # no frame more than a thread's own: the rule is exact
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=attempt, name="fresh-stack")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _deepest_read(_: object) -> int:
    """The deepest nesting json.loads reads here (a frame deeper than json_loads's reads: one less at worst)."""
    low, high = 1, _SIMDJSON_MAX_DEPTH  # low reads; past high, simdjson refuses anyway
    while low < high:
        mid = (low + high + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid)
            low = mid
        except RecursionError:
            high = mid - 1
    return low


@functools.cache
def _padding() -> _Padding:
    """The levels that leave simdjson room for what json.loads reads on a fresh stack, and no more.

    Measured once (a few small parses in a thread): 33 levels on CPython 3.11 with
    the default recursion limit, none where json.loads reads all simdjson does.
    """
    levels = _SIMDJSON_MAX_DEPTH - _in_a_thread(_deepest_read, None)
    return _Padding(levels, b"[" * levels, b"]" * levels)


def json_loads(data: bytes | str) -> Any:
    """`json.loads(data)` as a fresh caller reads it (see on_a_fresh_stack): what a session is."""
    return on_a_fresh_stack(json.loads, data)


def _parse_reference(data: bytes) -> ParsedSession:
    try:
        doc = json_loads(data)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidSession(f"not valid JSON ({exc.msg} {where if exc.msg.endswith(' at') else 'at ' + where})") from None
    except UnicodeDecodeError as exc:
        raise InvalidSession(f"not valid JSON (not UTF-8 at byte {exc.start})") from None
    except RecursionError:
        raise InvalidSession("not valid JSON (nested too deeply for Python's json.loads)") from None
    if not isinstance(doc, dict):
        raise InvalidSession(f"top level is a JSON {_JSON_TYPE.get(type(doc), 'value')}, not an object")
    return _session_from(doc.get, text_checked=False)


def _session_from(get: Callable[[str], object], text_checked: bool) -> ParsedSession:
    key = get("key")
    if not isinstance(key, str) or not key:
        raise InvalidSession("no string 'key'")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidSession(f"'key' longer than {MAX_KEY_LENGTH} characters")
    if not text_checked and not name_is_text(key):
        raise InvalidSession("'key' holds a lone surrogate escape, which is not text")
    messages = get("messages")
    if not isinstance(messages, (simdjson.Array, list)):
        raise InvalidSession("'messages' is not a list")
    return ParsedSession(key, len(messages), _timestamp(get("created_at")), _timestamp(get("updated_at")))


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
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "error")


def read_state(dir_fd: int, name: str, max_bytes: int, inline_bytes: int = INLINE_PARSE_BYTES) -> FileState:
    """The current truth about file *name* in the folder open as *dir_fd*: a record, an InvalidFile, or None if gone.

    Blocking; call it from an executor. Symlinks and non-regular files are not
    sessions. No read goes past *inline_bytes* + 1 bytes, however the file grows
    meanwhile; a file bigger than that raises NeedsChild (read_in_child reads it with
    *inline_bytes* = *max_bytes*).
    """
    if not name_is_text(name):
        try:
            return InvalidFile(name, BAD_NAME, stat_of(os.lstat(name, dir_fd=dir_fd)))
        except FileNotFoundError:
            return None  # removed: forgotten, not listed as invalid for ever
        except OSError:
            return InvalidFile(name, BAD_NAME, FileStat(0, 0, 0, 0))
    try:
        fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return InvalidFile(name, "symlink (not followed)", _lstat_or_zero(dir_fd, name))
        if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
            return None
        return InvalidFile(name, f"cannot open ({_errno_name(exc)})", _lstat_or_zero(dir_fd, name))
    try:
        st = os.fstat(fd)
        fst = stat_of(st)
        if not stat_mod.S_ISREG(st.st_mode):
            return InvalidFile(name, "not a regular file", fst)
        if st.st_size > max_bytes:
            return InvalidFile(name, f"larger than max_file_bytes ({st.st_size} > {max_bytes})", fst)
        if st.st_size > inline_bytes:
            raise NeedsChild(fst)
        data = read_at_most(fd, st.st_size, inline_bytes + 1)
        if len(data) > inline_bytes:
            if inline_bytes >= max_bytes:
                return InvalidFile(name, f"larger than max_file_bytes (grew past {max_bytes} while read)", fst)
            raise NeedsChild(fst)
    except OSError as exc:
        return InvalidFile(name, f"cannot read ({_errno_name(exc)})", _lstat_or_zero(dir_fd, name))
    finally:
        os.close(fd)
    try:
        parsed = parse_session(data)
    except InvalidSession as exc:
        return InvalidFile(name, str(exc), fst)
    return make_record(name, parsed, fst)


def read_fully(folder: Folder, dir_fd: int, name: str, max_bytes: int) -> FileState:
    """read_state of *name* in *folder* (open as *dir_fd*), with a big file parsed in a child process."""
    try:
        return read_state(dir_fd, name, max_bytes)
    except NeedsChild as big:
        try:
            return read_in_child(folder, name, max_bytes)
        except ChildFailed as exc:
            return InvalidFile(name, str(exc), big.stat)


def read_at_most(fd: int, size_hint: int, limit: int) -> bytes:
    """The file's bytes from the current offset, but never more than *limit* of them."""
    want = min(max(size_hint, 0) + 1, limit)  # one extra byte notices a file that grew since fstat
    data = os.read(fd, want)
    if len(data) < want or len(data) >= limit:
        return data  # a short read of a regular file is the end: one syscall for most files
    chunks = [data]
    got = len(data)
    while got < limit and (chunk := os.read(fd, min(65536, limit - got))):
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _lstat_or_zero(dir_fd: int, name: str) -> FileStat:
    try:
        return stat_of(os.lstat(name, dir_fd=dir_fd))
    except OSError:
        return FileStat(0, 0, 0, 0)


def stale_names(dir_fd: int | None, known: Mapping[str, int]) -> list[tuple[str, FileStat | None]]:
    """Names whose stat on disk differs from *known* (name -> index.pack of the stat), with the disk's stat (None: gone).

    No folder (None) holds nothing, so then every known name is stale. One lstat a
    file and no object for a file that is as known (a walk after a scan of 100k files).
    """
    stale: list[tuple[str, FileStat | None]] = []
    listed: set[str] = set()
    if dir_fd is not None:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if not is_session_name(name := entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                listed.add(name)
                if known.get(name) != pack_stat(st):
                    stale.append((name, stat_of(st)))
    stale.extend((name, None) for name in known if name not in listed)
    return stale


# Big files: read and parse one oversized session file in a short-lived child process.
#
# Parsing a very large session file builds an object tree several times the
# file's size and holds the GIL while it does. Done in the daemon, that stalls
# the event loop for seconds and leaves the heap bloated long after. Done in a
# child, the daemon only waits (in an executor thread) for a small pickled
# result, and the child's memory goes back to the system when it exits.
#
# The child runs this module (`python -m sessiond.core.loader`, _child_main). A plain subprocess rather than a multiprocessing pool: `python -m sessiond` has
# no `__main__` guard for a spawned worker to respect, and a fork would copy the
# locks of the daemon's threads.

TIMEOUT = 300.0
CHILD = "sessiond.core.loader"  # `python -m` of this module: _child_main below
CHANGED = 4  # the child's exit code when the folder is no longer the one verified
# One child at a time: big parses queue instead of multiplying their memory.
_one_at_a_time = threading.Lock()
# The folder this sessiond package was imported from, so the child imports the same code.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ChildFailed(RuntimeError):
    """The child died or timed out; the message is a short reason, safe to show."""


def read_in_child(folder: Folder, name: str, max_bytes: int) -> FileState:
    """read_state of *name* run in a child process. Blocking: call from a thread.

    The child opens the folder itself and checks it is still the one verified.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_SOURCE_ROOT, os.environ.get("PYTHONPATH")]))}
    dev, ino = folder.ident
    # The name goes as bytes through argv (os.fsencode), so any file name survives the trip.
    cmd: list[str | bytes] = [sys.executable, "-m", CHILD, folder.path, str(dev), str(ino), os.fsencode(name), str(max_bytes)]
    with _one_at_a_time:
        try:
            proc = subprocess.run(cmd, capture_output=True, env=env, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"parse took over {TIMEOUT:.0f}s") from None
    if proc.returncode == CHANGED:
        raise ChildFailed("sessions folder changed")
    if proc.returncode != 0:
        # A negative code is a signal: SIGKILL here is almost always the out-of-memory killer.
        why = "killed (out of memory?)" if proc.returncode < 0 else f"failed (exit {proc.returncode})"
        raise ChildFailed(f"parse worker {why}")
    state: FileState = pickle.loads(proc.stdout)
    return state


def _child_main(argv: list[str]) -> None:
    """The child: read *argv*'s file and write its pickled state to stdout; exit 3 out of memory, CHANGED if the folder moved."""
    path, dev, ino, name, max_bytes = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    try:
        with Folder(path, (dev, ino)).open() as dir_fd:
            state = read_state(dir_fd, name, max_bytes, inline_bytes=max_bytes)
    except MemoryError:
        sys.exit(3)
    except FolderUnusable:
        sys.exit(CHANGED)
    sys.stdout.buffer.write(pickle.dumps(state))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
