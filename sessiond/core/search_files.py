"""Reading a session file for the search index and for snippets. Blocking: call it from a thread or a worker process.

A file is read only if it is still the file the in-memory index describes (same
size, mtime, inode and ctime, checked on the open descriptor): what is indexed
and what a snippet shows is always the text of that very file, never of an
older or newer one the index has not judged yet.

`prepare_batch` is all the Python work of indexing a batch of files (reading,
parsing, the text, what is kept to forget it, compressed); `index_batch` does it and writes the
batch into the index file with a connection of its own. The search keeper runs
one or the other in a worker process (started with core/workers.py's
`in_a_worker`) for big batches, so that work neither holds the daemon's GIL nor
shares its core: with an index file the daemon only waits for the worker's
commit; with the index in memory it hands SQLite the prepared batch.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat as stat_mod
from pathlib import Path
from typing import Any, NamedTuple

from sessiond.core import loader, search_pack, search_text
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.search_db import Doc, Ident, SearchDB
from sessiond.core.search_pack import Dictionary
from sessiond.core.search_text import Part, parts

# What indexing one file needs from it: (title, the text FTS5 is given, the dictionary's id, what is kept to
# forget it, what the `starts` and `starts_other` tables are given).
Prepared = tuple[str, str, int, bytes, str, str]


class Batch(NamedTuple):
    """A batch's files as prepared, in order (None: gone, changed or not a session), and the dictionary they were compressed with."""

    prepared: list[Prepared | None]
    dictionary: Dictionary | None  # the one given, or one made from this batch (the file keeps it with the rows)


def read_parts(dir_fd: int, name: str, ident: Ident, max_bytes: int) -> list[Part] | None:
    """The searchable parts of file *name* if it is still *ident*; None if it is gone, changed or not a session."""
    try:
        fd = os.open(name, loader.OPEN_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or Ident(*loader.stat_of(st)) != ident or st.st_size > max_bytes:
            return None
        data = loader.read_at_most(fd, st.st_size, st.st_size + 1)
        if len(data) != st.st_size or Ident(*loader.stat_of(os.fstat(fd))) != ident:
            return None  # written to while read
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        doc: Any = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return parts(doc)


def prepare(dir_fd: int, name: str, ident: Ident, max_bytes: int) -> tuple[str, str, bytes] | None:
    """(title, text, forget form) of file *name* if it is still *ident* (see read_parts); None if it is not."""
    pieces = read_parts(dir_fd, name, ident, max_bytes)
    if pieces is None:
        return None
    text = search_text.index_text(pieces)
    return search_text.title(pieces), text, search_text.forget_form(text)


def prepare_batch(
    folder: Folder, wanted: list[tuple[str, Ident]], max_bytes: int, dictionary: Dictionary | None = None
) -> Batch | None:
    """What the index keeps of each (name, identity), in order; None if the folder is no longer the one verified.

    Compressed with *dictionary*; without one, with one made from this batch if it is big enough.
    """
    try:
        with folder.open() as dir_fd:
            read = [prepare(dir_fd, name, Ident(*ident), max_bytes) for name, ident in wanted]
    except FolderUnusable:
        return None
    if dictionary is None:
        dictionary = search_pack.train([found[2] for found in read if found is not None])
    prepared: list[Prepared | None] = []
    for found in read:
        if found is None:
            prepared.append(None)
        else:
            title, text, form = found
            prepared.append((title, text, *search_pack.pack(form, dictionary), *search_text.starts_of(form)))
    return Batch(prepared, dictionary)


def docs_of(
    reads: list[tuple[str, str, Ident]], prepared: list[Prepared | None], removals: list[str]
) -> tuple[list[Doc], list[str]]:
    """The rows to write for *reads* as prepared, and the names to remove (*removals*, then those no longer true)."""
    upserts: list[Doc] = []
    removals = list(removals)
    for (name, key, ident), found in zip(reads, prepared, strict=True):
        if found is None:
            # Changed since the index read it (it will say so), gone, or no folder: what we hold is no longer true.
            removals.append(name)
        else:
            upserts.append(Doc(name, key, Ident(*ident), *found))
    return upserts, removals


_written: dict[Path, SearchDB] = {}  # in a worker process: its connection to each index file, opened once
# In a worker process: the thread that writes (started by its first batch; none in the daemon).
_writes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sessiond-search-worker-write")
_handed: dict[int, concurrent.futures.Future[int | None]] = {}  # ticket -> that batch's write


def index_batch(
    path: Path,
    cache_kib: int,
    folder: Folder,
    removals: list[str],
    reads: list[tuple[str, str, Ident]],
    max_bytes: int,
    ticket: int,
    dictionary: Dictionary | None = None,
) -> None:
    """In a worker process: prepare *reads* and hand the batch to the process's writer thread; `committed(ticket)` waits for it.

    The writer thread writes the batches in the order handed, each in one transaction,
    into the index file *path* (a connection of its own), while the next batch is
    prepared here: SQLite releases the GIL while it works. A worker killed before a
    COMMIT leaves the file as it was: SQLite rolls the transaction back.
    """
    batch = prepare_batch(folder, [(name, ident) for name, _, ident in reads], max_bytes, dictionary)
    _handed[ticket] = _writes.submit(_write, path, cache_kib, removals, reads, batch)


def committed(ticket: int) -> int | None:
    """In a worker process: wait for batch *ticket*'s COMMIT; the change in the row count, or None (the folder was gone: nothing written)."""
    return _handed.pop(ticket).result()


def _write(
    path: Path, cache_kib: int, removals: list[str], reads: list[tuple[str, str, Ident]], batch: Batch | None
) -> int | None:
    if batch is None:
        return None
    db = _written.get(path)
    if db is None:
        db = SearchDB(path, cache_kib)
        db.open_writer()
        _written[path] = db
    upserts, gone = docs_of(reads, batch.prepared, removals)
    return db.apply(upserts, gone, batch.dictionary)
