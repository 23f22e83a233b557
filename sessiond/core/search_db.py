"""The search index file: SQLite FTS5, one contentless row per session file. Blocking; one thread owns it.

Layout (why, measured in bench/search.py):

- `fts`: FTS5, `content=''` (the files are the content: the index is about half the
  text), `unicode61 remove_diacritics 2`, one row per session file, so a word in
  every message is one posting per session, not one per message.
- `docs`: per file its name, key, identity (size, mtime, inode, ctime), title and
  what is kept to forget its FTS5 row. A contentless FTS5 table can only forget a row
  when handed text giving the words it indexed ('delete' command; `contentless_delete`
  needs SQLite 3.43, this is 3.40): its distinct words, compressed with a dictionary
  of the index's common words (search_pack; about a quarter of the text).
- `dicts`: those dictionaries, by id.
- `starts`, `starts_other`: FTS5 again, `detail=none`, of every ASCII word's first two
  characters, and of every piece holding a non-ASCII character as it is (for unicode61
  to cut): an ASCII prefix of one or two characters is one term there (one letter: the
  OR of its 37 two-character terms), which FTS5 walks newest first and stops, plus the
  few words of `starts_other` it begins; the main table would merge the postings of
  every word it begins (1.7 s at 1M). About 0.02x the text.

A row's rowid grows with every write, so `ORDER BY rowid DESC` is "most recently
indexed first": the query ranks a bounded window of the newest matches by bm25
instead of every match (see `candidates`).

An index file that is not ours (application_id), of another layout (user_version),
or damaged (quick_check, or any error opening it) is deleted and built again,
never trusted: it is only ever a copy of what the files say.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import urllib.parse
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from sessiond.core import search_pack
from sessiond.core.index import pack_fields
from sessiond.core.search_pack import Dictionary
from sessiond.core.search_query import Plan
from sessiond.core.search_text import starts_of

log = logging.getLogger(__name__)

APPLICATION_ID = 0x53534E31  # "SSN1": a sessiond search index
SCHEMA = 2  # 2: the forget form with a dictionary instead of the text through zlib; the `starts` tables; no key index
_I64 = 1 << 63
INSERT_ROWS = 256  # rows one INSERT writes (10 values each: SQLite takes up to 32,766)
BUSY_MS = 10_000  # a writer waits this long for the other (daemon or worker) to commit; they take turns, so only a dying one's lock is met


class Ident(NamedTuple):
    """A file's identity as stored (the index's FileStat)."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int


class Doc(NamedTuple):
    """One session file as indexed."""

    name: str
    key: str
    ident: Ident
    title: str
    text: str  # exactly what FTS5 was given
    dictionary: int  # the id of the dictionary *kept* was compressed with (search_pack.NO_DICTIONARY: none)
    kept: bytes  # search_pack.pack(forget_form(text)): what is kept to make FTS5 forget the row
    starts: str  # search_text.starts_of(forget_form(text)): what the `starts` table is given,
    others: str  # and `starts_other`


class Candidate(NamedTuple):
    """A row that matched, with what is needed to check it against the in-memory index."""

    rowid: int
    score: float  # bm25: lower is better
    name: str
    key: str
    ident: Ident
    title: str


def _ino_in(inode: int) -> int:
    return inode - (1 << 64) if inode >= _I64 else inode  # SQLite integers are signed 64-bit


def _ino_out(inode: int) -> int:
    return inode + (1 << 64) if inode < 0 else inode


_CREATE = f"""
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA};
CREATE TABLE docs (
    rowid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    title TEXT NOT NULL,
    dictionary INTEGER NOT NULL,
    kept BLOB NOT NULL
);
CREATE TABLE dicts (id INTEGER PRIMARY KEY, words BLOB NOT NULL);
CREATE VIRTUAL TABLE starts USING fts5(
    body, content='', detail='none', columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE starts_other USING fts5(
    body, content='', detail='none', columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE fts USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2');
"""


class Window(NamedTuple):
    """One window of matches, newest first."""

    rows: list[Candidate]
    full: bool  # *limit* rows were found (before the checks): more may follow below *last*
    last: int | None  # the last rowid found


class Unusable(Exception):
    """The index file is not a sessiond search index we can trust."""


class SearchDB:
    """The index file (or memory, without a state directory), used from one thread only."""

    def __init__(self, path: Path | None, cache_kib: int = 16 * 1024) -> None:
        self.path = path
        self.cache_kib = cache_kib
        self.con: sqlite3.Connection | None = None
        self.rebuilt_because: str | None = None  # why the file found at open was thrown away
        self._words: dict[int, bytes] = {}  # the dictionaries read so far, by id (never changed once written)

    # -- opening -----------------------------------------------------------------------

    def open(self) -> None:
        """Open the index, or start a new one when there is none or it cannot be trusted."""
        if self.path is None:
            self.con = self._connect(":memory:")
            self.con.executescript(_CREATE)
            return
        if self.path.exists() or self.path.is_symlink():
            try:
                self.con = self._check(self.path)
                return
            except (Unusable, sqlite3.Error, OSError) as exc:
                self.rebuilt_because = str(exc) or type(exc).__name__
                log.warning("search index %s cannot be trusted (%s); building it again", self.path, self.rebuilt_because)
                self._remove_files()
        self.con = self._create(self.path)

    def open_reader(self) -> None:
        """Open a second, read-only connection to the file another SearchDB writes (WAL: readers never wait)."""
        assert self.path is not None
        self.con = self._connect("file:" + urllib.parse.quote(str(self.path)) + "?mode=ro", uri=True)

    def open_writer(self) -> None:
        """Open a second writing connection to the file the daemon opened (the worker process's: it writes big batches).

        Never creates the file (the daemon checked or made it); WAL mode is the file's.
        """
        assert self.path is not None
        self.con = self._connect("file:" + urllib.parse.quote(str(self.path)) + "?mode=rw", uri=True)
        self.con.execute("PRAGMA synchronous = NORMAL")

    def _connect(self, where: str, uri: bool = False) -> sqlite3.Connection:
        con = sqlite3.connect(where, isolation_level=None, check_same_thread=False, uri=uri)
        con.execute(f"PRAGMA cache_size = {-int(self.cache_kib)}")
        con.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        return con

    def _check(self, path: Path) -> sqlite3.Connection:
        if path.is_symlink() or not path.is_file():
            raise Unusable("not a regular file")
        os.chmod(path, 0o600)
        con = self._connect(str(path))
        try:
            if con.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise Unusable("not a sessiond search index")
            if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA:
                raise Unusable("an index of another layout")
            result = con.execute("PRAGMA quick_check").fetchall()
            if result != [("ok",)]:
                raise Unusable("damaged: " + "; ".join(str(r[0]) for r in result[:3]))
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("SELECT count(*) FROM docs").fetchone()
            con.execute("SELECT rowid FROM fts WHERE fts MATCH '\"x\"' LIMIT 1").fetchall()
            return con
        except BaseException:
            con.close()
            raise

    def _create(self, path: Path) -> sqlite3.Connection:
        # Made 0600 before SQLite writes a byte: it holds the conversations. SQLite gives
        # its -wal and -shm files the mode of the database file.
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        con = self._connect(str(path))
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        con.executescript(_CREATE)
        return con

    def _remove_files(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        if self.con is not None:
            with contextlib.suppress(sqlite3.Error):
                self.con.execute("PRAGMA optimize")
            self.con.close()
            self.con = None

    def _db(self) -> sqlite3.Connection:
        if self.con is None:
            raise RuntimeError("search index not open")
        return self.con

    # -- reading -----------------------------------------------------------------------

    def idents_page(self, after: int, limit: int) -> tuple[int, list[tuple[str, int]]]:
        """(name, identity packed as the in-memory index packs it) of up to *limit* indexed files past
        row *after*, in row order (the table's own), and the last row given (0 at the end).

        Page by page: all of them at once, at 1M, were a dict of a million names and identities
        (~200 MB, whose heap stayed the process's after)."""
        rows = (
            self._db()
            .execute(
                "SELECT rowid, name, size, mtime_ns, ino, ctime_ns FROM docs WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        page = [(name, pack_fields(size, mtime, _ino_out(ino), ctime)) for _, name, size, mtime, ino, ctime in rows]
        return (rows[-1][0] if rows else 0), page

    def dictionary(self) -> Dictionary | None:
        """A dictionary the file holds, to compress new rows with (None before one was made)."""
        row = self._db().execute("SELECT id, words FROM dicts ORDER BY id LIMIT 1").fetchone()
        return None if row is None else Dictionary(int(row[0]), bytes(row[1]))

    def count(self) -> int:
        """How many files are indexed."""
        return int(self._db().execute("SELECT count(*) FROM docs").fetchone()[0])

    def size_bytes(self) -> int:
        """The bytes the index takes (file plus write-ahead log; memory pages without a file)."""
        if self.path is None:
            db = self._db()
            return int(db.execute("PRAGMA page_count").fetchone()[0]) * int(db.execute("PRAGMA page_size").fetchone()[0])
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def candidates(self, match: str, below: int | None, limit: int, prefix: str = "", ranked: bool = True) -> list[Candidate]:
        """Rows matching the FTS5 expression *match*, newest first, rowid < *below*, at most *limit*.

        Ordered by rowid (FTS5 walks its postings in that order and stops at the limit).
        With *ranked*, each has its bm25 (else 0): computed for *limit* rows only, but
        its IDF walks every row holding each phrase, the most of a common phrase's
        cost. With *prefix*, only keys starting so (checked before bm25 is computed).
        """
        score = "bm25(fts)" if ranked else "0.0"
        sql = (
            f"SELECT fts.rowid, {score}, docs.name, docs.key, docs.size, docs.mtime_ns, docs.ino, docs.ctime_ns, docs.title"
            " FROM fts JOIN docs ON docs.rowid = fts.rowid"
            " WHERE fts MATCH ? AND fts.rowid < ?"
        )
        args: list[object] = [match, _I64 - 1 if below is None else below]
        if prefix:
            sql += " AND substr(docs.key, 1, ?) = ?"
            args += [len(prefix), prefix]
        rows = self._db().execute(sql + " ORDER BY fts.rowid DESC LIMIT ?", (*args, limit))
        return [
            Candidate(rowid, score, name, key, Ident(size, mtime, _ino_out(ino), ctime), title)
            for rowid, score, name, key, size, mtime, ino, ctime, title in rows
        ]

    def window(self, plan: Plan, below: int | None, limit: int, prefix: str = "", rank: bool = True) -> Window:
        """The rows matching *plan* among the *limit* newest below rowid *below* that FTS5 (or `starts`) finds.

        FTS5 finds them as in `_fts_window`; without an FTS5 expression, the first short
        prefix finds them (`_starting`; score 0: bm25 says nothing of a word's first letters).
        Then the other short prefixes and the exclusions are checked over the rowids found.
        """
        if plan.fts is not None:
            rows, full, last = self._fts_window(plan.fts, below, limit, prefix, rank)
            checks = plan.starts
        else:
            rowids = self._starting(plan.starts[0], below, limit, prefix)
            full, last = len(rowids) == limit, (rowids[-1] if rowids else None)
            rows = self._rows(rowids)
            checks = plan.starts[1:]
        if rows and (checks or plan.not_starts or plan.not_fts):
            low, high = rows[-1].rowid, rows[0].rowid
            keep = {row.rowid for row in rows}
            for word in checks:
                keep &= self._holding_start(word, low, high)
            for word in plan.not_starts:
                keep -= self._holding_start(word, low, high)
            if plan.not_fts is not None:
                keep -= self._holding("fts", plan.not_fts, low, high)
            rows = [row for row in rows if row.rowid in keep]
        return Window(rows, full, last)

    def _starting(self, word: str, below: int | None, limit: int, prefix: str) -> list[int]:
        """The *limit* newest rowids below *below* holding a word that begins with *word* (one or two
        characters), of keys starting with *prefix*: the newest of each of the two tables, merged."""
        db = self._db()
        found: set[int] = set()
        for table, match in zip(("starts", "starts_other"), _short_matches(word), strict=True):
            sql = f"SELECT {table}.rowid FROM {table}"
            args: list[object] = [match, _I64 - 1 if below is None else below]
            if prefix:
                sql += f" JOIN docs ON docs.rowid = {table}.rowid"
            sql += f" WHERE {table} MATCH ? AND {table}.rowid < ?"
            if prefix:
                sql += " AND substr(docs.key, 1, ?) = ?"
                args += [len(prefix), prefix]
            found.update(rowid for (rowid,) in db.execute(sql + f" ORDER BY {table}.rowid DESC LIMIT ?", (*args, limit)))
        return sorted(found, reverse=True)[:limit]

    def _holding_start(self, word: str, low: int, high: int) -> set[int]:
        """The rowids from *low* to *high* holding a word that begins with *word* (one or two characters)."""
        exact, other = _short_matches(word)
        return self._holding("starts", exact, low, high) | self._holding("starts_other", other, low, high)

    def _holding(self, table: str, match: str, low: int, high: int) -> set[int]:
        """The rowids from *low* to *high* that *match* finds in FTS5 table *table*."""
        found = self._db().execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid BETWEEN ? AND ?", (match, low, high)
        )
        return {rowid for (rowid,) in found}

    def _fts_window(
        self, match: str, below: int | None, limit: int, prefix: str, rank: bool
    ) -> tuple[list[Candidate], bool, int | None]:
        """Like `candidates`, ranked by bm25 (with *rank*) only when fewer than *limit* rows match;
        with whether *limit* matched (more may follow) and the last rowid found.

        Without a key prefix, the rowids come first on their own (FTS5 alone, the cheapest
        walk); a full window then reads its rows from `docs`, and a smaller one is asked
        for again with bm25, which is cheap then (few rows hold the words).
        """
        if prefix:
            rows = self.candidates(match, below, limit, prefix, ranked=False)
            full, last = len(rows) == limit, (rows[-1].rowid if rows else None)
            if not full and rank and rows:
                rows = self.candidates(match, below, limit, prefix)
            return rows, full, last
        bound = _I64 - 1 if below is None else below
        found = self._db().execute(
            "SELECT rowid FROM fts WHERE fts MATCH ? AND rowid < ? ORDER BY rowid DESC LIMIT ?", (match, bound, limit)
        )
        rowids = [rowid for (rowid,) in found]
        if not rowids:
            return [], False, None
        full = len(rowids) == limit
        rows = self._rows(rowids) if full or not rank else self.candidates(match, below, limit)
        return rows, full, rowids[-1]

    def _rows(self, rowids: list[int]) -> list[Candidate]:
        """The candidates (score 0) of *rowids*, in that order; rows deleted since are left out."""
        db = self._db()
        by_rowid: dict[int, Candidate] = {}
        for i in range(0, len(rowids), 500):
            chunk = rowids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for rowid, name, key, size, mtime, ino, ctime, title in db.execute(
                f"SELECT rowid, name, key, size, mtime_ns, ino, ctime_ns, title FROM docs WHERE rowid IN ({marks})", chunk
            ):
                by_rowid[rowid] = Candidate(rowid, 0.0, name, key, Ident(size, mtime, _ino_out(ino), ctime), title)
        return [by_rowid[rowid] for rowid in rowids if rowid in by_rowid]

    def idents_of(self, names: Sequence[str]) -> dict[str, Ident]:
        """Name -> identity for the named files that are indexed."""
        return {name: ident for name, (ident, _) in self.titles(names).items()}

    def titles(self, names: Sequence[str]) -> dict[str, tuple[Ident, str]]:
        """Name -> (identity, title) for the named files that are indexed."""
        out: dict[str, tuple[Ident, str]] = {}
        db = self._db()
        names = [name for name in names if _utf8(name)]  # the others cannot be rows
        for i in range(0, len(names), 500):
            chunk = list(names[i : i + 500])
            marks = ",".join("?" * len(chunk))
            for name, size, mtime, ino, ctime, title in db.execute(
                f"SELECT name, size, mtime_ns, ino, ctime_ns, title FROM docs WHERE name IN ({marks})", chunk
            ):
                out[name] = (Ident(size, mtime, _ino_out(ino), ctime), title)
        return out

    # -- writing -----------------------------------------------------------------------

    def apply(self, upserts: Iterable[Doc], removals: Iterable[str], dictionary: Dictionary | None = None) -> int:
        """Write one batch in one transaction (with *dictionary*, the one its rows were compressed with); return the change in the row count."""
        db = self._db()
        delta = 0
        db.execute("BEGIN")
        try:
            if dictionary is not None:
                db.execute("INSERT OR IGNORE INTO dicts (id, words) VALUES (?, ?)", dictionary)
            for name in removals:
                delta -= self._forget(db, name)
            latest = {doc.name: doc for doc in upserts}  # a file twice in one batch: its later text
            # Each statement's return takes the GIL back, which waits while the worker's other thread
            # parses the next batch: one statement finds the files indexed already, and one inserts a
            # slice of rows (not one per file), so a batch needs the GIL a few times, not twice a file.
            for name in set(self.titles(list(latest))):
                delta -= self._forget(db, name)
            rows = list(latest.values())
            rowid = int(db.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0])
            for start in range(0, len(rows), INSERT_ROWS):
                chunk = rows[start : start + INSERT_ROWS]
                docs: list[object] = []
                texts: list[object] = []
                starts: list[object] = []
                others: list[object] = []
                for doc in chunk:
                    rowid += 1
                    ident = doc.ident
                    docs += (
                        rowid,
                        doc.name,
                        doc.key,
                        ident.size,
                        ident.mtime_ns,
                        _ino_in(ident.inode),
                        ident.ctime_ns,
                        doc.title,
                        doc.dictionary,
                        doc.kept,
                    )
                    texts += (rowid, doc.text)
                    starts += (rowid, doc.starts)
                    others += (rowid, doc.others)
                db.execute(
                    "INSERT INTO docs (rowid, name, key, size, mtime_ns, ino, ctime_ns, title, dictionary, kept) VALUES "
                    + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                    docs,
                )
                db.execute("INSERT INTO fts (rowid, body) VALUES " + ",".join(["(?, ?)"] * len(chunk)), texts)
                db.execute("INSERT INTO starts (rowid, body) VALUES " + ",".join(["(?, ?)"] * len(chunk)), starts)
                db.execute("INSERT INTO starts_other (rowid, body) VALUES " + ",".join(["(?, ?)"] * len(chunk)), others)
            delta += len(rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return delta

    def _forget(self, db: sqlite3.Connection, name: str) -> int:
        if not _utf8(name):
            return 0  # a name that is not UTF-8 is never a session, so never a row
        row = db.execute("SELECT rowid, dictionary, kept FROM docs WHERE name = ?", (name,)).fetchone()
        if row is None:
            return 0
        rowid, dictionary, kept = row
        try:
            form = search_pack.unpack(kept, self._dictionary_words(db, dictionary))
            text = form.decode("utf-8", "surrogatepass")
        except (zlib.error, UnicodeDecodeError, LookupError) as exc:
            # Never met: only a file written by something else gets here (quick_check passed). The row goes
            # from `docs`, so no query finds it; its postings stay in FTS5, unreachable (every candidate is
            # a `docs` row), until the index is built again.
            log.warning("search index: the kept text of %r cannot be read (%s); its postings stay unused", name, exc)
        else:
            # A contentless table forgets a row only when handed its words (search_text.forget_form).
            db.execute("INSERT INTO fts (fts, rowid, body) VALUES ('delete', ?, ?)", (rowid, text))
            short, other = starts_of(form)
            db.execute("INSERT INTO starts (starts, rowid, body) VALUES ('delete', ?, ?)", (rowid, short))
            db.execute("INSERT INTO starts_other (starts_other, rowid, body) VALUES ('delete', ?, ?)", (rowid, other))
        db.execute("DELETE FROM docs WHERE rowid = ?", (rowid,))
        return 1

    def _dictionary_words(self, db: sqlite3.Connection, dictionary: int) -> bytes | None:
        if dictionary == search_pack.NO_DICTIONARY:
            return None
        words = self._words.get(dictionary)
        if words is None:
            row = db.execute("SELECT words FROM dicts WHERE id = ?", (dictionary,)).fetchone()
            if row is None:
                raise LookupError(f"no dictionary {dictionary}")
            words = self._words[dictionary] = bytes(row[0])
        return words


_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def _short_matches(word: str) -> tuple[str, str]:
    """The MATCH expressions of `starts` and `starts_other` for the words beginning with *word* (one or two characters, folded).

    An ASCII *word* is what FTS5 folds it to, and `starts` holds only ASCII words' first two
    characters: two characters are one term, one character is itself (a one-letter word) or
    any of the 36 terms it begins. Those are whole terms, which FTS5 walks newest first and
    stops at the limit; a prefix query merges every term it begins before it returns a row.
    Any other *word*: a prefix query, FTS5 folding it as it folds the main table's query.
    """
    quoted = '"' + word.replace('"', '""') + '"'
    if not word.isascii():
        return quoted + "*", quoted + "*"
    if len(word) == 1:
        return " OR ".join([quoted, *(f'"{word}{c}"' for c in _ALNUM)]), quoted + "*"
    return quoted, quoted + "*"


def _utf8(name: str) -> bool:
    """Whether SQLite can hold *name* (os keeps the bytes of a name that is not UTF-8 as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
