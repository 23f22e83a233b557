"""SessionIndex: the in-memory truth the API answers from. Pure: no I/O, no event loop."""

from __future__ import annotations

import array
import bisect
import hashlib
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

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

    def same_version(self, other: object) -> bool:
        """True when *other* says the same of the same file as this record.

        The index makes a record afresh each time it is asked for one it keeps in its rows
        (Rows), so two answers about one unchanged file are equal, not the same object.
        """
        return other is self or (
            isinstance(other, SessionRecord)
            and self.ident == other.ident
            and self.name == other.name
            and self.key == other.key
            and self.message_count == other.message_count
            and self.created_at == other.created_at
            and self.updated_at == other.updated_at
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


class FileVersions(NamedTuple):
    """Every valid file, no record made: its name (in name order), its updated_at and identity on demand."""

    names: list[str]  # ascending
    updated: Callable[[int], float]  # position -> the file's updated_at (a float)
    ident: Callable[[int], int]  # position -> the file's packed identity (pack)
    every_updated: Callable[[], Iterable[float]] | None = None  # each position's updated_at, in order, faster than one by one

    def in_order(self) -> Iterable[float]:
        """Every file's updated_at, in name order."""
        return self.every_updated() if self.every_updated is not None else map(self.updated, range(len(self.names)))


class Table(NamedTuple):
    """Every valid file as columns in (key, name) order, as a snapshot holds them (no record made)."""

    names: list[str]
    keys: list[str]
    numbers: dict[str, array.array[Any]]  # COLUMNS; created and updated hold 0.0 where `exact` has the times
    exact: dict[int, tuple[Any, Any]]  # row -> (created, updated) as written, where a double would not echo them


def _rank(record: SessionRecord) -> tuple[float, str]:
    # Newest updated_at wins a collision; the file name breaks ties so the choice is stable.
    return (record.updated_at, record.name)


SEPARATOR = "\0"  # between the strings of SessionIndex.settle: no file name holds one, few keys do
_MAX_COUNT = 1 << 63


_KEY, _NAME, _COUNT = operator.attrgetter("key"), operator.attrgetter("name"), operator.attrgetter("message_count")
_KEY_NAME = operator.attrgetter("key", "name")
_CREATED, _UPDATED, _IDENT = operator.attrgetter("created_at"), operator.attrgetter("updated_at"), operator.attrgetter("ident")


def _fits(record: SessionRecord) -> bool:
    """True when a row's columns can hold *record* exactly (anything a real file gives)."""
    return record.ident.bit_length() <= 4 * _WORD - 1 and record.message_count < _MAX_COUNT


def _all_fit(records: list[SessionRecord]) -> bool:
    """_fits for every record, in two C loops."""
    return not records or (max(map(_IDENT, records)).bit_length() <= 4 * _WORD - 1 and max(map(_COUNT, records)) < _MAX_COUNT)


class ColumnSource(Protocol):
    """Sessions as columns in key order, as a snapshot (snapshot.Columns) or a scan (Sheet) holds them."""

    names: list[str]
    keys: list[str]
    numbers: dict[str, array.array[Any]]  # COLUMNS: count, created, updated, size, mtime, inode, ctime

    @property
    def exact(self) -> Mapping[int, Sequence[Any]]:
        """Row -> (created, updated) as written, where a double would not echo them."""


# The columns of Rows with their array types: a snapshot's own (snapshot.NUMBERS).
COLUMNS = {"count": "q", "created": "d", "updated": "d", "size": "q", "mtime": "q", "inode": "Q", "ctime": "q"}


def _columns_of(
    records: list[SessionRecord],
) -> tuple[list[str], list[str], dict[str, array.array[Any]], dict[int, tuple[Any, Any]]]:
    """The keys, names, COLUMNS and exact times of *records* (each `_fits`), each column in one C loop."""
    created = list(map(_CREATED, records))
    updated = list(map(_UPDATED, records))
    exact: dict[int, tuple[Any, Any]] = {}
    if not {*map(type, created), *map(type, updated)} <= {float}:
        exact = {
            row: (made, changed)
            for row, (made, changed) in enumerate(zip(created, updated, strict=True))
            if type(made) is not float or type(changed) is not float
        }
        for row in exact:
            created[row] = updated[row] = 0.0
    idents = list(map(_IDENT, records))
    mask = (1 << _WORD) - 1
    columns = {
        "count": array.array("q", map(_COUNT, records)),
        "created": array.array("d", created),
        "updated": array.array("d", updated),
        "size": array.array("q", [i >> (3 * _WORD) for i in idents]),
        "mtime": array.array("q", [((i >> (2 * _WORD)) & mask) - _TIME_OFFSET for i in idents]),
        "inode": array.array("Q", [(i >> _WORD) & mask for i in idents]),
        "ctime": array.array("q", [(i & mask) - _TIME_OFFSET for i in idents]),
    }
    return list(map(_KEY, records)), list(map(_NAME, records)), columns, exact


def _record_at(
    keys: list[str], names: list[str], c: Mapping[str, array.array[Any]], exact: Mapping[int, Sequence[Any]], row: int
) -> SessionRecord:
    """The record of row *row* of columns (made afresh)."""
    times = exact.get(row) if exact else None
    made, changed = times if times is not None else (c["created"][row], c["updated"][row])
    ident = pack_fields(c["size"][row], c["mtime"][row], c["inode"][row], c["ctime"][row])
    return SessionRecord(keys[row], names[row], c["count"][row], made, changed, ident)


class Sheet:
    """Files a scan read, as columns, with no record kept: a ColumnSource once in `order`.

    A scan's worker reads its slice of the folder into a Sheet (its sessions sorted by
    key and name, each column made in one C loop); the daemon appends the slices to one
    Sheet, whose rows the index takes as they are (SessionIndex.load's *kept*). Made into
    records instead, a million files cost ~1 s more and ~400 MB more at the peak. Invalid
    files and the rare record the columns cannot hold are `others`, as states.
    """

    __slots__ = ("exact", "keys", "names", "numbers", "others")

    def __init__(self, states: Iterable[tuple[str, FileState]] = ()) -> None:
        """A Sheet of *states* (name, state); a None state (a file gone) is left out."""
        sessions: list[SessionRecord] = []
        self.others: list[tuple[str, FileState]] = []
        for name, state in states:
            if isinstance(state, SessionRecord) and _fits(state):
                sessions.append(state)
            elif state is not None:
                self.others.append((name, state))
        sessions.sort(key=_KEY_NAME)
        self.keys, self.names, self.numbers, self.exact = _columns_of(sessions)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def files(self) -> int:
        """How many files it tells of."""
        return len(self.keys) + len(self.others)

    def take(self, other: Sheet) -> None:
        """Append *other*'s files (in key order again only after `order`), leaving *other* empty:
        the future that returned it lies in a reference cycle until the next collection."""
        offset = len(self.keys)
        self.keys += other.keys
        self.names += other.names
        for field, column in self.numbers.items():
            column.extend(other.numbers[field])
        self.exact.update((offset + row, times) for row, times in other.exact.items())
        self.others += other.others
        other.clear()

    def clear(self) -> None:
        """Hold nothing more (whoever still holds the Sheet then keeps no string of the scan alive)."""
        self.keys, self.names, self.numbers, self.exact, self.others = [], [], {}, {}, []

    def order(self) -> None:
        """Put the rows in key order (the files of one key in no set order; SessionIndex.load holds
        those as objects anyway). Slices each in order are runs that one sort merges.

        Returns nothing: a future holding the Sheet as its result would keep its strings alive
        past SessionIndex.settle (a copy of every key and name, ~165 MB at 1M).
        """
        keys, names = self.keys, self.names
        if all(map(operator.le, keys, itertools.islice(keys, 1, None))):
            return
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self.keys = [keys[row] for row in order]
        self.names = [names[row] for row in order]
        del keys, names
        for field, column in self.numbers.items():
            self.numbers[field] = array.array(column.typecode, map(column.__getitem__, order))
        if exact := self.exact:
            self.exact = {row: exact[was] for row, was in enumerate(order) if was in exact}

    def states(self) -> list[tuple[str, FileState]]:
        """Every file as a state (a record made for each row)."""
        keys, names, numbers, exact = self.keys, self.names, self.numbers, self.exact
        return [*((names[row], _record_at(keys, names, numbers, exact, row)) for row in range(len(keys))), *self.others]


class Rows:
    """What a load found, as columns: one row per file that alone claims its key, in key order.

    Kept as an object, a record costs ~450 bytes at 1M (the object, its numbers as
    objects, an entry in two dicts); a row costs its key and name and ~70 bytes of
    columns, and no dict entry (a key or a name is found by bisection). A record is
    made from its row each time one is asked for (~1 µs). Rows never change but for
    `dead`: a row the index takes back as an object (`record`, then `kill`) is dead.
    """

    __slots__ = ("columns", "dead", "exact", "keys", "live", "name_rows", "names", "sorted_names")

    def __init__(
        self, keys: list[str], names: list[str], columns: dict[str, array.array[Any]], exact: dict[int, tuple[Any, Any]]
    ) -> None:
        """Rows of *keys* (ascending, none twice) and *names*, with COLUMNS' columns; *exact*: row ->
        (created, updated) as written where the float columns would not give them back."""
        self.keys = keys
        self.names = names
        order = sorted(range(len(names)), key=names.__getitem__)  # names follow their keys: mostly runs
        self.sorted_names = [names[i] for i in order]
        self.name_rows = array.array("q", order)
        self.columns = columns
        self.exact = exact
        self.dead = bytearray(len(keys))
        self.live = len(keys)

    @classmethod
    def of_records(cls, records: list[SessionRecord]) -> Rows:
        """Rows of *records* (in key order, no key twice, each `_fits`): each column in one C loop."""
        return cls(*_columns_of(records))

    @classmethod
    def of_columns(cls, source: ColumnSource, rows: Sequence[int]) -> Rows:
        """Rows of *source*'s *rows* (ascending; their keys ascending, none twice): no record made."""
        whole = len(rows) == len(source.names)  # every row: the columns as they are
        pick = (lambda column: column) if whole else (lambda column: [column[row] for row in rows])
        columns = {field: array.array(code, pick(source.numbers[field])) for field, code in COLUMNS.items()}
        exact: dict[int, tuple[Any, Any]] = {}
        if source.exact:
            at = {row: i for i, row in enumerate(rows)}
            exact = {at[row]: (made, changed) for row, (made, changed) in source.exact.items() if row in at}
        return cls(list(pick(source.keys)), list(pick(source.names)), columns, exact)

    def __len__(self) -> int:
        return len(self.keys)

    def row_of_key(self, key: str) -> int:
        """The live row of *key*, or -1."""
        keys = self.keys
        row = bisect.bisect_left(keys, key)
        return row if row < len(keys) and keys[row] == key and not self.dead[row] else -1

    def row_of_name(self, name: str) -> int:
        """The live row of file *name*, or -1."""
        names = self.sorted_names
        at = bisect.bisect_left(names, name)
        if at < len(names) and names[at] == name:
            row = self.name_rows[at]
            if not self.dead[row]:
                return row
        return -1

    def record(self, row: int) -> SessionRecord:
        """The record of *row* (made afresh)."""
        return _record_at(self.keys, self.names, self.columns, self.exact, row)

    def ident(self, row: int) -> int:
        """The packed identity of *row*'s file."""
        c = self.columns
        return pack_fields(c["size"][row], c["mtime"][row], c["inode"][row], c["ctime"][row])

    def kill(self, row: int) -> None:
        """Mark *row* as no longer this index's truth (its file is now held as an object, or gone)."""
        if not self.dead[row]:
            self.dead[row] = 1
            self.live -= 1

    def revive(self, row: int) -> None:
        """Mark *row* as this index's truth again (a compaction folds its object into it)."""
        if self.dead[row]:
            self.dead[row] = 0
            self.live += 1


def _served_records(rows: Rows, served: Mapping[str, SessionRecord], keys: Iterable[str]) -> Iterator[SessionRecord]:
    """The records serving *keys* (ascending), from *rows* or else *served*; a key neither holds is skipped.

    Rows are walked beside the keys, not bisected for each one. A key is looked for in its
    row first, then among the objects: an index taking a row back as an object puts the
    object in first, so a reader on another thread never misses it between the two.
    """
    row_keys, dead, record = rows.keys, rows.dead, rows.record
    count = len(row_keys)
    row = -1
    for key in keys:
        if row < 0:
            row = bisect.bisect_left(row_keys, key)
        while row < count and row_keys[row] < key:
            row += 1
        if row < count and row_keys[row] == key and not dead[row]:
            yield record(row)
        elif (found := served.get(key)) is not None:
            yield found


def _table(rows: Rows, dead: bytes, held: list[SessionRecord]) -> Table:
    """The live rows of *rows* (by *dead*) and the records *held*, merged in (key, name) order."""
    if dead.count(1):
        live = [row for row in range(len(dead)) if not dead[row]]
        base_keys, base_names = [rows.keys[r] for r in live], [rows.names[r] for r in live]
        base = {field: array.array(code, [rows.columns[field][r] for r in live]) for field, code in COLUMNS.items()}
        at = {row: i for i, row in enumerate(live)} if rows.exact else {}
        base_exact = {at[row]: times for row, times in rows.exact.items() if row in at}
    else:
        base_keys, base_names, base, base_exact = rows.keys, rows.names, rows.columns, rows.exact
    if not held:
        return Table(base_names, base_keys, base, base_exact)
    held.sort(key=_KEY_NAME)
    names: list[str] = []
    keys: list[str] = []
    numbers = {field: array.array(code) for field, code in COLUMNS.items()}
    exact: dict[int, tuple[Any, Any]] = {}

    def take(lo: int, hi: int) -> None:
        start = len(names)
        names.extend(base_names[lo:hi])
        keys.extend(base_keys[lo:hi])
        for field in COLUMNS:
            numbers[field].extend(base[field][lo:hi])
        exact.update((start + row - lo, times) for row, times in base_exact.items() if lo <= row < hi)

    done = 0
    for record in held:
        point = bisect.bisect_left(base_keys, record.key, done)
        while point < len(base_keys) and base_keys[point] == record.key and base_names[point] < record.name:
            point += 1  # (no live row shares a key with an object: only a race could bring one)
        take(done, point)
        done = point
        made, changed = record.created_at, record.updated_at
        if type(made) is not float or type(changed) is not float:
            exact[len(names)] = (made, changed)
            made = changed = 0.0
        st = unpack(record.ident)
        values: tuple[Any, ...] = (record.message_count, made, changed, st.size, st.mtime_ns, st.inode, st.ctime_ns)
        for field, value in zip(COLUMNS, values, strict=True):
            numbers[field].append(value)
        names.append(record.name)
        keys.append(record.key)
    take(done, len(base_keys))
    return Table(names, keys, numbers, exact)


def _kept_rows(source: ColumnSource, rows: Sequence[int]) -> tuple[Rows, list[tuple[str, FileState]]]:
    """Rows of *source*'s *rows*, but for rows whose key another kept row claims too (rare):
    those come back as records."""
    keys = source.keys
    row_keys = keys if len(rows) == len(keys) else [keys[row] for row in rows]
    taken: list[int] = []
    if not all(map(operator.lt, row_keys, itertools.islice(row_keys, 1, None))):
        if all(map(operator.le, row_keys, itertools.islice(row_keys, 1, None))):
            twice = {row_keys[i] for i in range(len(row_keys) - 1) if row_keys[i] == row_keys[i + 1]}
            taken = [i for i, key in enumerate(row_keys) if key in twice]
        else:  # not in key order (a snapshot is): every row as a record
            taken = list(range(len(rows)))
    del row_keys
    if not taken:
        return Rows.of_columns(source, rows), []
    apart = Rows.of_columns(source, [rows[i] for i in taken])
    records: list[tuple[str, FileState]] = [(apart.names[row], apart.record(row)) for row in range(len(apart))]
    chosen = set(taken)
    return Rows.of_columns(source, [row for i, row in enumerate(rows) if i not in chosen]), records


class Compaction:
    """Sessions held as objects folded back into rows, in three steps: made on the loop
    (SessionIndex.compaction copies what it needs: ~10 ms for 200k objects), `build` on
    another thread (new Rows of the live rows and the objects, merged in key order: ~2 s at
    1M), then SessionIndex.compact on the loop, slice by slice (the new rows put in place,
    then each object that did not change meanwhile dropped for its row)."""

    def __init__(
        self, rows: Rows, files: list[tuple[str, SessionRecord]], served: dict[str, SessionRecord], multi: set[str]
    ) -> None:
        self.rows = rows
        self.dead = bytes(rows.dead)
        self._copy = (files, served, multi)
        self.taken: list[str] = []  # files whose rows the index took back since the copy
        self.new: Rows | None = None
        self.folds: list[tuple[int, str, SessionRecord]] = []  # (new row, name, record) of each object to fold

    def build(self) -> None:
        """Make the new rows, every object's row dead until SessionIndex.compact folds it (no record made)."""
        files, served, multi = self._copy
        singles = [r for _, r in files if r.key not in multi and served.get(r.key) is r and _fits(r)]  # alone on their key
        self._copy = ([], {}, set())
        if not singles:
            return  # every object shares its key with another: nothing to fold (compact abandons it)
        table = _table(self.rows, self.dead, singles)
        new = Rows(table.keys, table.names, table.numbers, table.exact)
        for record in singles:
            row = new.row_of_name(record.name)
            new.kill(row)
            self.folds.append((row, record.name, record))
        self.new = new


class SessionIndex:
    """Session metadata by file and by key, with the list body cached between changes.

    What a load found lives in `Rows` (columns, no object per session); a file that
    changes after it, or whose key two files claim, is held as a SessionRecord in the
    dicts, and its row is dead. Invariant: a key is served either by a live row or by
    `_served`, never both, and a live row's key has no other claimant.
    """

    def __init__(self) -> None:
        self.version = 0
        self._reset()

    def _reset(self) -> None:
        """Empty every table (not the version, which only ever grows)."""
        self._rows = Rows.of_records([])
        self._files: dict[str, SessionRecord] = {}  # name -> record, for files not in a live row
        self._invalid: dict[str, InvalidFile] = {}
        self._served: dict[str, SessionRecord] = {}  # key -> the record answered for it, not in a live row
        # key -> the names of every file claiming it, only for keys claimed twice or more
        # (rare): the one claimant of any other key is its served record.
        self._multi: dict[str, set[str]] = {}
        self._keys: SortedList = SortedList()
        self._body: bytes | None = None
        self._etag = ""
        self._compacting: Compaction | None = None  # a load abandons one under way
        self._folding: Compaction | None = None  # whose objects are being folded, slice by slice

    # -- reading -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._served) + self._rows.live

    def __contains__(self, key: object) -> bool:
        return key in self._served or (isinstance(key, str) and self._rows.row_of_key(key) >= 0)

    def get(self, key: str) -> SessionRecord | None:
        """The record served for *key*, or None."""
        record = self._served.get(key)
        if record is not None:
            return record
        row = self._rows.row_of_key(key)
        return self._rows.record(row) if row >= 0 else None

    @property
    def held_as_objects(self) -> int:
        """Session files held as objects, not in the rows (changed since the last load, or a key
        claimed twice): ~470 bytes each against ~240; a compaction or a restart folds them back into rows."""
        return len(self._files)

    def keys(self) -> SortedList:
        """All served keys, ascending (a live view; do not mutate)."""
        return self._keys

    def records(self) -> Iterator[SessionRecord]:
        """Served records in key order."""
        return self.records_of(self._keys)

    def records_of(self, keys: Iterable[str]) -> Iterator[SessionRecord]:
        """The served records of *keys* (served keys, in ascending order; a key gone meanwhile is skipped)."""
        return _served_records(self._rows, self._served, keys)

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
        state = self._files.get(name) or self._invalid.get(name)
        if state is None and (row := self._rows.row_of_name(name)) >= 0:
            return self._rows.record(row)
        return state

    def table_reader(self) -> Callable[[], Table]:
        """Every valid file as a Table (the snapshot's save), in two halves: this call copies the
        rows' dead marks and the list of what is held as objects (on the loop: ~1 ms at 1M), the
        function returned merges them (on another thread; rows are sliced, not made into records).
        The table is the index at the copy: rows never change but for their dead marks, and a
        record is never changed, only replaced. (A load meanwhile makes new Rows: these stay.)"""
        rows, dead, held = self._rows, bytes(self._rows.dead), list(self._files.values())
        return lambda: _table(rows, dead, held)

    def versions_reader(self) -> Callable[[], FileVersions]:
        """Every valid file's name, updated_at and identity (the search's plan), in two halves:
        this call copies the rows' dead marks and what is held as objects (on the loop: ~1 ms
        at 1M), the function returned reads the rows (on another thread; no record and no
        string made): the index at the copy, as for table_reader."""
        rows, dead, held = self._rows, bytes(self._rows.dead), list(self._files.values())
        # Taken here, on the loop: settle() swaps the rows' lists for new ones (the same names).
        row_names, sorted_names = rows.names, rows.sorted_names

        def read() -> FileVersions:
            held.sort(key=_NAME)  # here, not on the loop: ~100 ms for 200k objects
            order = rows.name_rows  # the rows in name order
            if dead.count(1):
                order = array.array("q", [row for row in order if not dead[row]])
                names = [row_names[row] for row in order]
            else:  # every row: the rows' own list in name order (never changed, only replaced), not a copy
                names = sorted_names
            count = len(names)
            at: array.array[int] | None = None  # position -> where in the rows (or past them, the objects)
            if held:  # two runs in name order, which one sort merges
                names = [*names, *map(_NAME, held)]  # a new list: *names* may be the rows' own
                merged = sorted(range(len(names)), key=names.__getitem__)
                names = [names[i] for i in merged]
                at = array.array("q", merged)

            def updated(i: int) -> float:
                where = i if at is None else at[i]
                if where >= count:
                    return float(held[where - count].updated_at)
                row = order[where]
                times = rows.exact.get(row) if rows.exact else None
                return float(times[1]) if times is not None else rows.columns["updated"][row]

            def ident(i: int) -> int:
                where = i if at is None else at[i]
                return rows.ident(order[where]) if where < count else held[where - count].ident

            def every_updated() -> Iterable[float]:
                if at is not None:  # objects among the rows: one by one
                    return map(updated, range(len(names)))
                column, exact = rows.columns["updated"], rows.exact
                if not exact:  # every time a double: read in C
                    return map(column.__getitem__, order)
                return (float(exact[row][1]) if row in exact else column[row] for row in order)

            return FileVersions(names, updated, ident, every_updated)

        return read

    def idents_reader(self) -> Callable[[], dict[str, int]]:
        """Name -> recorded identity (pack) of every known file (for reconciling against the
        disk), in two halves: this call copies what is held as objects (on the loop:
        few), the function returned reads the rows (on another thread: ~1 s at 1M, which on
        the loop would hold it that long). A change made meanwhile may or may not be in."""
        rows, dead = self._rows, bytes(self._rows.dead)  # the index at the copy, as for table_reader
        held = [(name, rec.ident) for name, rec in self._files.items()]
        held += [(name, pack(bad.stat)) for name, bad in self._invalid.items()]

        def read() -> dict[str, int]:
            idents = {rows.names[row]: rows.ident(row) for row in range(len(dead)) if not dead[row]}
            idents.update(held)
            return idents

        return read

    def files_for(self, key: str) -> list[str]:
        """Every file claiming *key*, the served one first."""
        served = self.get(key)
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
        # The rows this write touches become objects first: the logic below knows only those.
        self._take_back(self._rows.row_of_name(name))
        if isinstance(state, SessionRecord):
            self._take_back(self._rows.row_of_key(state.key))
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

    def load(
        self, states: Iterable[tuple[str, FileState]], kept: tuple[ColumnSource, Sequence[int]] | None = None
    ) -> list[Change]:
        """Replace everything with a full scan's results in one pass (one sort, not one per file).

        *kept*: rows (ascending) of a snapshot whose files are as it says (a restart)
        or of what a scan read (a Sheet), taken as columns with no record made, unless
        *states* or another kept row claims the same key or file. Returns what changed for clients compared with
        before (nothing on a first load, so a start-up does not announce every session
        as created).
        """
        before = dict(zip(self._keys, self.records(), strict=True)) if len(self) else {}
        self._reset()
        states = list(states)
        rows = self._rows
        if kept is not None:
            rows, taken = _kept_rows(*kept)
            for name, state in states:  # what was read wins over a kept row of the same file or key
                if (row := rows.row_of_name(name)) >= 0:
                    rows.kill(row)
                if isinstance(state, SessionRecord) and (row := rows.row_of_key(state.key)) >= 0:
                    taken.append((rows.names[row], rows.record(row)))
                    rows.kill(row)
            states = taken + states
        files: dict[str, SessionRecord] = {}
        served: dict[str, SessionRecord] = {}
        multi = self._multi
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
        del states
        ordered = sorted(served)
        if kept is None:
            solo = list(map(served.__getitem__, ordered))
            if multi or not _all_fit(solo):
                # A key two files claim, or a record the columns cannot hold (rare): kept as objects.
                solo = [r for r in solo if r.key not in multi and _fits(r)]
            rows = Rows.of_records(solo)
            in_rows = {r.key for r in solo} if len(solo) != len(served) else None
            del solo
        else:
            in_rows = set()  # at a restart, what was read stays as objects
        for key in ordered:
            if in_rows is None or key in in_rows:
                continue
            self._served[key] = served[key]
            for name in multi.get(key, (served[key].name,)):
                self._files[name] = files[name]
        del files
        self._rows = rows
        if kept is None:
            self._keys = SortedList(ordered)  # sorted already: one pass
        else:
            dead = rows.dead
            self._keys = SortedList([*(key for row, key in enumerate(rows.keys) if not dead[row]), *ordered])
        self.version += 1
        if not before:
            return []
        changes = [Change("deleted", key, None, record) for key, record in before.items() if key not in self]
        for record in self.records():
            old = before.get(record.key)
            if old is None:
                changes.append(Change("created", record.key, record))
            elif not (old.name == record.name and old.same_content(record)):
                changes.append(Change("updated", record.key, record, old))
        return changes

    def settle(self) -> None:
        """Once whoever made the records of a load has let them go: hold new copies of their strings.

        A scan's strings lie in the heap among the records, tuples and numbers made with
        them. Once those are freed, an arena (pymalloc's 1 MiB block) still holding one
        string in use cannot go back to the system: at 1M, 439 arenas stayed for 184 MB in
        use. So the keys and names are joined into one string each, every reference to the
        old ones dropped (their arenas go back whole), and split again: the copies fill new
        arenas side by side. ~0.3 s at 1M.
        """
        rows = self._rows
        joined = [(SEPARATOR.join(strings), len(strings)) for strings in (rows.keys, rows.names)]
        if any(text.count(SEPARATOR) != max(count - 1, 0) for text, count in joined):
            return  # a key holds the separator (rare): keep them as they are
        rows.keys = rows.names = rows.sorted_names = []
        self._keys = SortedList()
        self._body = None
        (keys, count), (names, _) = joined
        del joined
        rows.keys = keys.split(SEPARATOR) if count else []
        del keys
        rows.names = names.split(SEPARATOR) if count else []
        del names
        rows.sorted_names = [rows.names[row] for row in rows.name_rows]
        dead = rows.dead
        self._keys = SortedList([*(key for row, key in enumerate(rows.keys) if not dead[row]), *self._served])

    def _take_back(self, row: int) -> None:
        """Hold *row* (if any) as an object from now on; its row is dead."""
        if row >= 0:
            record = self._rows.record(row)
            # The object first, then the row dead: see records_of.
            self._files[record.name] = record
            self._served[record.key] = record
            self._rows.kill(row)
            if self._compacting is not None:
                self._compacting.taken.append(record.name)

    def compaction(self) -> Compaction | None:
        """A compaction of what is held as objects (see Compaction), or None: nothing to fold,
        or the objects of another are still being folded.

        A session taken back as an object (its file changed since the load) costs ~470 bytes
        against ~240 in a row, and stays one until the next load: a daemon under steady churn
        drifts back towards the cost of keeping every session as an object. Only objects that
        alone claim their key are folded; the claimants of a key two files claim stay objects.
        """
        if not self._files or self._folding is not None:
            return None
        self._compacting = Compaction(self._rows, list(self._files.items()), dict(self._served), set(self._multi))
        return self._compacting

    def compact(self, job: Compaction, step: int = 1 << 14) -> Iterator[int]:
        """Put *job*'s new rows in place now (on the loop, once job.build ended; before, *job* is
        abandoned); the iterator returned folds its objects *step* at a time (on the loop too),
        each slice giving how many it folded.

        What changed since the copy stays as the index holds it now: a row taken back meanwhile
        is dead in the new rows too, and an object replaced, gone or now in a collision keeps
        its place among the objects (its new row dead). Between two slices the index is whole:
        each object not folded yet still serves its file. Nothing a client sees changes.
        """
        if job is not self._compacting:
            return iter(())  # a load came between, or another compaction
        self._compacting = None  # done, or abandoned: rows not built (a stop) or replaced (a load)
        new = job.new
        if job.rows is not self._rows or new is None:
            return iter(())
        for name in job.taken:
            if (row := new.row_of_name(name)) >= 0:
                new.kill(row)
        self._rows = new
        self._folding = job
        return self._fold(job, new, step)

    def _fold(self, job: Compaction, new: Rows, step: int) -> Iterator[int]:
        files, served, multi = self._files, self._served, self._multi
        try:
            for start in range(0, len(job.folds), step):
                if self._rows is not new:
                    return  # a load between two slices
                folded = 0
                for row, name, record in job.folds[start : start + step]:
                    if files.get(name) is record and served.get(record.key) is record and record.key not in multi:
                        new.revive(row)  # the row first, then the object gone: see records_of
                        del files[name], served[record.key]
                        folded += 1
                yield folded
        finally:
            if self._folding is job:
                self._folding = None

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
            return Change("deleted", key, None, before)
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
