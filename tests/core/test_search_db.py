"""The search index file's batches (SQLite FTS5, real, in memory): a row per file, and only its last text."""

from __future__ import annotations

from sessiond.core.index import FileStat, pack
from sessiond.core.search_db import Doc, Ident, SearchDB, compress


def doc(name: str, text: str, inode: int = 1) -> Doc:
    return Doc(name, name.removesuffix(".json"), Ident(len(text), 1, inode, 1), text[:10], text, compress(text))


def matches(db: SearchDB, word: str) -> list[str]:
    return [c.name for c in db.candidates(f'"{word}"', None, 100)]


def test_a_file_written_again_in_a_later_batch_keeps_one_row_with_its_last_text() -> None:
    db = SearchDB(None)
    db.open()
    assert db.apply([doc("a.json", "first words"), doc("b.json", "other words")], []) == 2
    assert db.apply([doc("a.json", "second words", inode=2)], []) == 0
    assert db.count() == 2 and matches(db, "first") == [] and matches(db, "second") == ["a.json"]
    assert sorted(matches(db, "words")) == ["a.json", "b.json"]


def test_a_file_twice_in_one_batch_keeps_one_row_with_the_later_text() -> None:
    db = SearchDB(None)
    db.open()
    assert db.apply([doc("a.json", "first words"), doc("a.json", "second words", inode=2)], []) == 1
    assert db.count() == 1 and matches(db, "first") == [] and matches(db, "second") == ["a.json"]


def test_a_file_removed_and_written_in_one_batch_is_there_once() -> None:
    db = SearchDB(None)
    db.open()
    db.apply([doc("a.json", "first words")], [])
    assert db.apply([doc("a.json", "second words", inode=2)], ["a.json"]) == 0
    assert db.count() == 1 and matches(db, "first") == [] and matches(db, "second") == ["a.json"]
    assert db.apply([], ["a.json", "never.json"]) == -1 and db.count() == 0 and matches(db, "words") == []


def test_idents_are_packed_as_the_in_memory_index_packs_them_whatever_the_inode() -> None:
    # The plan compares them with each record's ident: an inode above 2**63 is stored signed and must come back whole.
    db = SearchDB(None)
    db.open()
    inodes = {"a.json": 7, "b.json": 1 << 63, "c.json": (1 << 64) - 1}
    for name, inode in inodes.items():
        db.apply([doc(name, "words", inode)], [])
    after, first = db.idents_page(0, 2)
    last, rest = db.idents_page(after, 2)
    assert (len(first), len(rest)) == (2, 1) and db.idents_page(last, 2) == (0, [])  # page by page, then the end
    known = dict(first + rest)
    for name, inode in inodes.items():
        ident = doc(name, "words", inode).ident
        assert known[name] == pack(FileStat(ident.size, ident.mtime_ns, inode, ident.ctime_ns))
