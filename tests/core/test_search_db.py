"""The search index file's batches (SQLite FTS5, real, in memory): a row per file, and only its last text."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from sessiond.core import search_pack
from sessiond.core.index import FileStat, pack
from sessiond.core.search_db import Doc, Ident, SearchDB
from sessiond.core.search_query import parse, plan
from sessiond.core.search_text import for_index, forget_form, starts_of, words


def doc(name: str, text: str, inode: int = 1, dictionary: search_pack.Dictionary | None = None) -> Doc:
    form = forget_form(text)
    kept = search_pack.pack(form, dictionary)
    return Doc(name, name.removesuffix(".json"), Ident(len(text), 1, inode, 1), text[:10], text, *kept, *starts_of(form))


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


# -- what is kept to forget a row (search_text.forget_form, search_pack) ------------------------------------

_POOL = (
    [chr(c) for c in range(0x20, 0x250)]
    + list("東京都大阪市привет\u0301\u0300\u00a0\u2003\u200b\ufeff𝔘𝔫😀ﬁßẞİıǅ٣۳\x00\t\n")
    + ["abc", "Foo", "_x", ".", "123", " ", "src/foo_bar.py:12", "Ünïcödé", "e\u0301"]
)


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    pool = _POOL + [chr(rng.randrange(0x250, 0x30000)) for _ in range(2000)]
    out = []
    for _ in range(count):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 80)))
        out.append(for_index("".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)))
    return out


def _trace(db: SearchDB) -> list[tuple[list[tuple[str, int, int]], bytes]]:
    """What each FTS5 table holds once merged: every term with its rows and occurrences, and the totals."""
    con = db.con
    assert con is not None
    held = []
    for table in ("fts", "starts", "starts_other"):
        con.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        con.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{table}_vocab USING fts5vocab(main, {table}, row)")
        terms = con.execute(f"SELECT term, doc, cnt FROM temp.{table}_vocab ORDER BY term").fetchall()
        held.append((terms, bytes(con.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()[0])))
    return held


def test_a_row_is_forgotten_exactly_by_what_is_kept_of_it_whatever_its_characters() -> None:
    # Hostile text (combining marks, NUL, ligatures, CJK, astral planes, identifiers): each row written, then
    # removed through the kept text alone, leaves FTS5 holding exactly what a file that never had it holds.
    texts = _texts(600, seed=20)
    dictionary = search_pack.train([forget_form(text) for text in texts])
    assert dictionary is not None
    db = SearchDB(None)
    db.open()
    docs = [doc(f"{i}.json", text, inode=i, dictionary=dictionary) for i, text in enumerate(texts)]
    db.apply([*docs, doc("stay.json", "stays here")], [], dictionary)
    assert db.apply([], [d.name for d in docs]) == -len(docs)
    alone = SearchDB(None)
    alone.open()
    alone.apply([doc("stay.json", "stays here")], [])
    assert _trace(db) == _trace(alone) and db.count() == 1
    # The comparison sees a row not wholly forgotten (one word short).
    short = SearchDB(None)
    short.open()
    short.apply([doc("a.json", "alpha beta"), doc("stay.json", "stays here")], [])
    assert short.con is not None
    short.con.execute("INSERT INTO fts (fts, rowid, body) VALUES ('delete', 1, 'alpha')")
    short.con.execute("DELETE FROM docs WHERE rowid = 1")
    assert _trace(short) != _trace(alone)


def test_rows_kept_with_a_dictionary_are_forgotten_after_the_file_is_opened_again(tmp_path: Path) -> None:
    texts = [f"session {i} talks about refunds and delivery, order {i * 7}" for i in range(40)]
    dictionary = search_pack.train([forget_form(text) for text in texts])
    assert dictionary is not None
    db = SearchDB(tmp_path / "search.sqlite")
    db.open()
    db.apply([doc(f"{i}.json", text, dictionary=dictionary) for i, text in enumerate(texts)], [], dictionary)
    db.close()
    again = SearchDB(tmp_path / "search.sqlite")
    again.open()
    assert again.rebuilt_because is None and again.dictionary() == dictionary
    assert len(matches(again, "refunds")) == 40
    assert again.apply([], [f"{i}.json" for i in range(40)]) == -40
    assert matches(again, "refunds") == [] and [terms for terms, _ in _trace(again)] == [[], [], []]


def test_a_row_whose_kept_text_cannot_be_read_is_removed_and_never_found(caplog: pytest.LogCaptureFixture) -> None:
    db = SearchDB(None)
    db.open()
    db.apply([doc("a.json", "lost words"), doc("b.json", "other words")], [])
    assert db.con is not None
    db.con.execute("UPDATE docs SET kept = x'00ff' WHERE name = 'a.json'")
    assert db.apply([], ["a.json"]) == -1
    assert db.count() == 1 and matches(db, "lost") == [] and matches(db, "words") == ["b.json"]
    assert "cannot be read" in caplog.text and "'a.json'" in caplog.text


def test_a_dictionary_is_made_from_a_batch_big_enough_and_named_by_its_words() -> None:
    forms = [forget_form(f"Refund order {i}: the parcel is late") for i in range(search_pack.TRAIN_MIN)]
    assert search_pack.train(forms[:-1]) is None
    dictionary = search_pack.train(forms)
    assert dictionary is not None and dictionary == search_pack.dictionary_of(dictionary.words)
    assert b"refund" in dictionary.words and b"31" not in dictionary.words  # only words two sessions hold
    assert len(dictionary.words) <= search_pack.DICTIONARY_BYTES
    for used in (dictionary, None):
        number, kept = search_pack.pack(forms[0], used)
        assert number == (dictionary.id if used else search_pack.NO_DICTIONARY)
        assert search_pack.unpack(kept, used.words if used else None) == forms[0]
    with pytest.raises(zlib.error):
        search_pack.unpack(search_pack.pack(forms[0], dictionary)[1], None)  # without its dictionary


def test_a_short_prefix_finds_in_the_starts_table_exactly_what_fts5s_own_prefix_query_finds() -> None:
    # One or two characters, ASCII or not, alone, with other words, excluded: the same rows as FTS5's
    # own (slow) prefix expansion over the same hostile text.
    texts = [*_texts(300, seed=7), "Über naïve Ünïcödé", "ka kat katze kb k", "東京 привет ﬁle ǅemal", "x_y1 a1b2"]
    db = SearchDB(None)
    db.open()
    db.apply([doc(f"{i}.json", text, inode=i) for i, text in enumerate(texts)], [])
    con = db.con
    assert con is not None
    found_words = {w for text in texts for w in words(text)}
    prefixes = sorted({w[:n] for w in found_words for n in (1, 2)} | {"ub", "u", "東", "п", "ﬁ", "ǆ", "zz"})
    assert len(prefixes) > 500

    def by_starts(q: str) -> list[int]:
        found = db.window(plan(parse(q)), None, 100_000)
        assert not found.full
        return [row.rowid for row in found.rows]

    def by_fts5(q: str) -> list[int]:
        rows = con.execute("SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid DESC", (parse(q).fts(),))
        return [rowid for (rowid,) in rows]

    for prefix in prefixes:
        q = prefix.replace('"', "") + "*"
        if not words(q):
            continue
        assert plan(parse(q)).fts is None, q
        assert by_starts(q) == by_fts5(q), q
    for q in ("ka* ub*", "k* -ka*", "ka* -katze", "a* -e* -b", "katze -ka*", "ub* OR ka*"):
        assert by_starts(q) == by_fts5(q), q
    assert by_starts("ka*") and by_starts("k* -ka*") and not by_starts("zz*")
