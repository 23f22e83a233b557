"""SessionIndex: the in-memory truth the API answers from. Pure: no I/O, no event loop."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import orjson
from sortedcontainers import SortedList

if TYPE_CHECKING:
    import os


class FileStat(NamedTuple):
    """What a cheap stat tells about a file; equal stats mean an unchanged file.

    The change time is part of it because user space cannot set it back: `touch -r`,
    `cp -p` or `rsync -t` can restore size and mtime over new content, and a new
    file can reuse an inode, but every one of them moves the ctime.
    """

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int


_WORD = 64
# Records key_order_reader looks up per C call (~2 ms): the GIL can change hands between two.
READ_SLICE = 1 << 14
_MASK = (1 << _WORD) - 1
_TIME_OFFSET = 1 << 63  # times may lie before 1970


def pack(st: FileStat) -> int:
    """A file's identity as one int: a million of them cost a third of the tuples they replace."""
    return pack_fields(*st)


def pack_fields(size: int, mtime_ns: int, inode: int, ctime_ns: int) -> int:
    """pack(FileStat(...)) without the FileStat between (the search index's plan and the snapshot make one per row)."""
    return ((((size << _WORD) | (mtime_ns + _TIME_OFFSET)) << _WORD | inode) << _WORD) | (ctime_ns + _TIME_OFFSET)


def pack_stat(st: os.stat_result) -> int:
    """pack(loader.stat_of(st)) without the FileStat between: the stat walks make one per file."""
    return ((((st.st_size << _WORD) | (st.st_mtime_ns + _TIME_OFFSET)) << _WORD | st.st_ino) << _WORD) | (
        st.st_ctime_ns + _TIME_OFFSET
    )


def unpack(ident: int) -> FileStat:
    """The inverse of pack."""
    ctime_ns = (ident & _MASK) - _TIME_OFFSET
    ident >>= _WORD
    inode = ident & _MASK
    ident >>= _WORD
    mtime_ns = (ident & _MASK) - _TIME_OFFSET
    return FileStat(ident >> _WORD, mtime_ns, inode, ctime_ns)


class SessionRecord:
    """Metadata of one valid session file (kept small: there may be millions)."""

    __slots__ = ("created_at", "ident", "key", "message_count", "name", "updated_at")

    def __init__(
        self, key: str, name: str, message_count: int, created_at: float, updated_at: float, stat: FileStat | int
    ) -> None:
        self.key = key
        self.name = name
        self.message_count = message_count
        self.created_at = created_at
        self.updated_at = updated_at
        self.ident = stat if isinstance(stat, int) else pack(stat)  # the file's stat, packed (see pack)

    @property
    def stat(self) -> FileStat:
        """The file's stat when it was read."""
        return unpack(self.ident)

    @property
    def size(self) -> int:
        """The file's size in bytes when it was read."""
        return self.ident >> (3 * _WORD)

    def same_content(self, other: SessionRecord) -> bool:
        """True when a client could not tell the two apart."""
        return (
            self.key == other.key
            and self.message_count == other.message_count
            and self.created_at == other.created_at
            and self.updated_at == other.updated_at
            and self.size == other.size
        )

    def __repr__(self) -> str:
        return f"SessionRecord(key={self.key!r}, name={self.name!r}, messages={self.message_count})"


class InvalidFile(NamedTuple):
    """A file in the sessions folder that is not a valid session, and why."""

    name: str
    reason: str
    stat: FileStat


FileState = SessionRecord | InvalidFile | None


class Change(NamedTuple):
    """What a client sees change for one key.

    `compacted` and `resurrected` follow the `updated` or `created` change they explain
    (added by the store): *before* is the record replaced, *note* what the feed adds.
    """

    kind: Literal["created", "updated", "deleted", "compacted", "resurrected"]
    key: str
    record: SessionRecord | None
    before: SessionRecord | None = None
    note: Mapping[str, Any] | None = None


def _rank(record: SessionRecord) -> tuple[float, str]:
    # Newest updated_at wins a collision; the file name breaks ties so the choice is stable.
    return (record.updated_at, record.name)


class SessionIndex:
    """Session metadata by file and by key, with the list body cached between changes."""

    def __init__(self) -> None:
        self.version = 0
        self._reset()

    def _reset(self) -> None:
        """Empty every table (not the version, which only ever grows)."""
        self._files: dict[str, SessionRecord] = {}
        self._invalid: dict[str, InvalidFile] = {}
        self._served: dict[str, SessionRecord] = {}  # key -> the record answered for it
        # key -> the names of every file claiming it, only for keys claimed twice or more
        # (rare): the one claimant of any other key is its served record.
        self._multi: dict[str, set[str]] = {}
        self._keys: SortedList = SortedList()
        self._body: bytes | None = None
        self._etag = ""

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._served)

    def __contains__(self, key: object) -> bool:
        return key in self._served

    def get(self, key: str) -> SessionRecord | None:
        """The record served for *key*, or None."""
        return self._served.get(key)

    @property
    def served(self) -> Mapping[str, SessionRecord]:
        """Key -> the record answered for it (a live read-only view)."""
        return self._served

    def keys(self) -> SortedList:
        """All served keys, ascending (a live view; do not mutate)."""
        return self._keys

    def records(self) -> Iterator[SessionRecord]:
        """Served records in key order."""
        served = self._served
        return (served[key] for key in self._keys)

    def list_body(self) -> bytes:
        """The serialized `GET /api/v1/sessions` answer, rebuilt at most once per change of keys."""
        if self._body is None:
            self._body = orjson.dumps({"sessions": list(self._keys), "count": len(self._keys)})
            # A hash of the content, not a counter: it stays right across restarts.
            self._etag = '"' + hashlib.blake2b(self._body, digest_size=12).hexdigest() + '"'
        return self._body

    def list_etag(self) -> str:
        """The strong ETag of list_body()."""
        self.list_body()
        return self._etag

    def file_state(self, name: str) -> FileState:
        """What the index holds for file *name*."""
        return self._files.get(name) or self._invalid.get(name)

    def file_records(self) -> list[SessionRecord]:
        """Every valid file's record (a copy of the list, not of the records: a million
        pointers copied in a few ms, where (name, record) pairs cost a tuple each)."""
        return list(self._files.values())

    def key_order_reader(self) -> Callable[[], list[SessionRecord]]:
        """Every valid file's record, the served ones in key order, then any other claimant of
        a key (rare), in two halves: this call copies the key list (on the loop: ~10 ms at
        1M), the function returned makes the records (on another thread). The snapshot wants
        (key, name) order; given this, its sort is a check, not a sort of a million records.

        Made on the loop, the records were one C call of a million dict lookups: 130-240 ms
        at 1M during which nothing else ran. The function looks them up in slices (the GIL
        changes hands between them) in the live map: a record is never changed, only
        replaced, so each one read is whole and true of its file; a change made meanwhile
        may or may not be in, as if the copy had been taken a moment later (the snapshot
        re-stats every file at the next start anyway). A key removed meanwhile is skipped.
        """
        keys = list(self._keys)
        served = self._served
        # Every claimant of a key held by two files (rare); the served one is left out below.
        claimants = [self._files[name] for names in self._multi.values() for name in names]

        def read() -> list[SessionRecord]:
            found: list[SessionRecord | None] = []
            for start in range(0, len(keys), READ_SLICE):
                found.extend(map(served.get, keys[start : start + READ_SLICE]))
            # A claimant that is served now is in already (perhaps as a newer record of its file).
            others = [r for r in claimants if getattr(found[bisect.bisect_left(keys, r.key)], "name", None) != r.name]
            records = [r for r in found if r is not None] if None in found else cast("list[SessionRecord]", found)
            records.extend(others)
            return records

        return read

    def file_idents(self) -> dict[str, int]:
        """Name -> recorded identity (pack) of every known file (for reconciling against the disk)."""
        idents = {name: rec.ident for name, rec in self._files.items()}
        idents.update((name, pack(bad.stat)) for name, bad in self._invalid.items())
        return idents

    def files_for(self, key: str) -> list[str]:
        """Every file claiming *key*, the served one first."""
        served = self._served.get(key)
        if served is None:
            return []
        others = sorted(self._multi.get(key, set()) - {served.name})
        return [served.name, *others]

    @property
    def invalid(self) -> dict[str, InvalidFile]:
        """Files that are not valid sessions, by name (read-only by convention)."""
        return self._invalid

    @property
    def collision_count(self) -> int:
        """How many keys more than one file claims."""
        return len(self._multi)

    def collisions(self) -> dict[str, list[str]]:
        """Keys claimed by more than one file -> those file names, served first."""
        return {key: self.files_for(key) for key in sorted(self._multi)}

    # -- writing -----------------------------------------------------------

    def set_file(self, name: str, state: FileState) -> list[Change]:
        """Record the current truth about file *name*; return what changed for clients."""
        old = self._files.pop(name, None)
        self._invalid.pop(name, None)
        # key -> a record that may now serve it (None: look at the claims as they are)
        touched: dict[str, SessionRecord | None] = {}
        if old is not None:
            touched[old.key] = self._release(old)
        if isinstance(state, SessionRecord):
            self._files[name] = state
            # A collision that the release just ended may start again with this very file.
            self._take(state, touched.get(state.key))
            touched[state.key] = state
        elif isinstance(state, InvalidFile):
            self._invalid[name] = state
        return [change for key, candidate in touched.items() if (change := self._reselect(key, candidate)) is not None]

    def remove(self, name: str) -> list[Change]:
        """Forget file *name* (it is gone from disk)."""
        return self.set_file(name, None)

    def load(self, states: Iterable[tuple[str, FileState]]) -> list[Change]:
        """Replace everything with a full scan's results in one pass (one sort, not one per file).

        Returns what changed for clients compared with before (nothing on a first load,
        so a start-up does not announce every session as created).
        """
        before = self._served
        self._reset()
        files, served, multi = self._files, self._served, self._multi
        for name, state in states:
            if isinstance(state, SessionRecord):
                files[name] = state
                key = state.key
                rival = served.get(key)
                if rival is None:
                    served[key] = state
                    continue
                multi.setdefault(key, {rival.name}).add(name)
                if _rank(state) > _rank(rival):
                    served[key] = state
            elif isinstance(state, InvalidFile):
                self._invalid[name] = state
        self._keys = SortedList(served)
        self.version += 1
        if not before:
            return []
        changes = [Change("deleted", key, None) for key in before.keys() - served.keys()]
        for key, record in served.items():
            old = before.get(key)
            if old is None:
                changes.append(Change("created", key, record))
            elif not (old.name == record.name and old.same_content(record)):
                changes.append(Change("updated", key, record, old))
        return changes

    def _current(self, key: str) -> SessionRecord | None:
        """The served record of *key* if its file still holds it."""
        served = self._served.get(key)
        return served if served is not None and self._files.get(served.name) is served else None

    def _take(self, record: SessionRecord, left: SessionRecord | None = None) -> None:
        """Claim *record*'s key for its file; *left* is a claimant a release just left alone."""
        key, name = record.key, record.name
        others = self._multi.get(key)
        if others is not None:
            others.add(name)
        elif (sole := left or self._current(key)) is not None and sole.name != name:
            self._multi[key] = {sole.name, name}

    def _release(self, record: SessionRecord) -> SessionRecord | None:
        """Drop *record*'s claim; the one claimant left, if a collision just ended."""
        key = record.key
        others = self._multi.get(key)
        if others is None:
            return None
        others.discard(record.name)
        if len(others) > 1:
            return None
        del self._multi[key]
        return self._files[others.pop()] if others else None

    def _winner(self, key: str, candidate: SessionRecord | None) -> SessionRecord | None:
        others = self._multi.get(key)
        if others is not None:
            return max((self._files[name] for name in others), key=_rank)
        if candidate is not None and self._files.get(candidate.name) is candidate:
            return candidate
        return self._current(key)

    def _reselect(self, key: str, candidate: SessionRecord | None) -> Change | None:
        before = self._served.get(key)
        after = self._winner(key, candidate)
        if after is None:
            if before is None:
                return None
            del self._served[key]
            self._keys.remove(key)
            self._keys_changed()
            return Change("deleted", key, None)
        self._served[key] = after
        if before is None:
            self._keys.add(key)
            self._keys_changed()
            return Change("created", key, after)
        if before is after:
            return None
        self.version += 1
        if before.name == after.name and before.same_content(after):
            return None  # touched, not changed: nothing a client could see
        return Change("updated", key, after, before)

    def _keys_changed(self) -> None:
        self._body = None
        self.version += 1
