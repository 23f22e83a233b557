"""SessionIndex: the in-memory truth the API answers from. Pure: no I/O, no event loop."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal, NamedTuple

import orjson
from sortedcontainers import SortedList


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


class SessionRecord:
    """Metadata of one valid session file."""

    __slots__ = ("created_at", "key", "message_count", "name", "stat", "updated_at")

    def __init__(self, key: str, name: str, message_count: int, created_at: float, updated_at: float, stat: FileStat) -> None:
        self.key = key
        self.name = name
        self.message_count = message_count
        self.created_at = created_at
        self.updated_at = updated_at
        self.stat = stat

    def same_content(self, other: SessionRecord) -> bool:
        """True when a client could not tell the two apart."""
        return (
            self.key == other.key
            and self.message_count == other.message_count
            and self.created_at == other.created_at
            and self.updated_at == other.updated_at
            and self.stat.size == other.stat.size
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
    """What a client sees change for one key."""

    kind: Literal["created", "updated", "deleted"]
    key: str
    record: SessionRecord | None


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
        # key -> the one file claiming it, or the set of names when several do (rare;
        # a str per key instead of a set keeps a million sessions small).
        self._claims: dict[str, str | set[str]] = {}
        self._collided: set[str] = set()
        self._served: dict[str, SessionRecord] = {}  # key -> the record answered for it
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

    def file_states(self) -> list[tuple[str, FileState]]:
        """(name, state) of every known file, valid or not (a copy)."""
        states: list[tuple[str, FileState]] = list(self._files.items())
        states.extend(self._invalid.items())
        return states

    def file_stats(self) -> dict[str, FileStat]:
        """Name -> recorded stat for every known file (for reconciling against the disk)."""
        stats = {name: rec.stat for name, rec in self._files.items()}
        stats.update((name, bad.stat) for name, bad in self._invalid.items())
        return stats

    def files_for(self, key: str) -> list[str]:
        """Every file claiming *key*, the served one first."""
        served = self._served.get(key)
        if served is None:
            return []
        claims = self._claims[key]
        others = sorted(claims - {served.name}) if isinstance(claims, set) else []
        return [served.name, *others]

    @property
    def invalid(self) -> dict[str, InvalidFile]:
        """Files that are not valid sessions, by name (read-only by convention)."""
        return self._invalid

    @property
    def collision_count(self) -> int:
        """How many keys more than one file claims."""
        return len(self._collided)

    def collisions(self) -> dict[str, list[str]]:
        """Keys claimed by more than one file -> those file names, served first."""
        return {key: self.files_for(key) for key in sorted(self._collided)}

    # -- writing -----------------------------------------------------------

    def set_file(self, name: str, state: FileState) -> list[Change]:
        """Record the current truth about file *name*; return what changed for clients."""
        old = self._files.pop(name, None)
        self._invalid.pop(name, None)
        keys: list[str] = []
        if old is not None:
            keys.append(old.key)
            self._unclaim(old)
        if isinstance(state, SessionRecord):
            self._files[name] = state
            if state.key not in keys:
                keys.append(state.key)
            self._claim(state)
        elif isinstance(state, InvalidFile):
            self._invalid[name] = state
        return [change for key in keys if (change := self._reselect(key)) is not None]

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
        for name, state in states:
            if isinstance(state, SessionRecord):
                self._files[name] = state
                self._claim(state)
            elif isinstance(state, InvalidFile):
                self._invalid[name] = state
        for key in self._claims:
            self._served[key] = self._winner(key)  # type: ignore[assignment]
        self._keys = SortedList(self._served)
        self.version += 1
        if not before:
            return []
        changes = [Change("deleted", key, None) for key in before.keys() - self._served.keys()]
        for key, record in self._served.items():
            old = before.get(key)
            if old is None:
                changes.append(Change("created", key, record))
            elif not (old.name == record.name and old.same_content(record)):
                changes.append(Change("updated", key, record))
        return changes

    def _claim(self, record: SessionRecord) -> None:
        key, name = record.key, record.name
        current = self._claims.get(key)
        if current is None:
            self._claims[key] = name
        elif isinstance(current, str):
            if current != name:
                self._claims[key] = {current, name}
                self._collided.add(key)
        else:
            current.add(name)

    def _unclaim(self, record: SessionRecord) -> None:
        key, name = record.key, record.name
        current = self._claims.get(key)
        if isinstance(current, str):
            if current == name:
                del self._claims[key]
        elif current is not None:
            current.discard(name)
            if len(current) == 1:
                self._claims[key] = current.pop()
                self._collided.discard(key)

    def _winner(self, key: str) -> SessionRecord | None:
        current = self._claims.get(key)
        if current is None:
            return None
        if isinstance(current, str):
            return self._files[current]
        return max((self._files[name] for name in current), key=_rank)

    def _reselect(self, key: str) -> Change | None:
        before = self._served.get(key)
        after = self._winner(key)
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
        return Change("updated", key, after)

    def _keys_changed(self) -> None:
        self._body = None
        self.version += 1
