"""SessionIndex: pure, synchronous tests."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.core.index import FileStat, InvalidFile, SessionIndex, SessionRecord, pack, pack_fields, pack_stat, unpack
from sessiond.core.loader import stat_of

ST = FileStat(100, 1, 1, 1)


def rec(key: str, name: str | None = None, updated: float = 10.0, messages: int = 1, size: int = 100) -> SessionRecord:
    return SessionRecord(key, name or key + ".json", messages, 1.0, updated, FileStat(size, 1, 1, 1))


def test_add_get_list_sorted() -> None:
    index = SessionIndex()
    for key in ["b", "a", "c:1", "A"]:
        index.set_file(key + ".json", rec(key))
    assert list(index.keys()) == ["A", "a", "b", "c:1"]
    assert orjson.loads(index.list_body()) == {"sessions": ["A", "a", "b", "c:1"], "count": 4}
    assert index.get("a").name == "a.json"
    assert index.get("zzz") is None
    assert len(index) == 4


def test_changes_reported() -> None:
    index = SessionIndex()
    assert [c.kind for c in index.set_file("a.json", rec("a"))] == ["created"]
    assert [c.kind for c in index.set_file("a.json", rec("a", messages=2))] == ["updated"]
    assert index.set_file("a.json", rec("a", messages=2)) == []  # same content: nothing to tell
    assert [c.kind for c in index.remove("a.json")] == ["deleted"]
    assert index.remove("a.json") == []


def test_key_inside_file_wins_over_name_and_rename_of_key() -> None:
    index = SessionIndex()
    index.set_file("x.json", rec("user:alice", "x.json"))
    assert index.get("user:alice").name == "x.json"
    changes = index.set_file("x.json", rec("user:bob", "x.json"))
    assert {(c.kind, c.key) for c in changes} == {("deleted", "user:alice"), ("created", "user:bob")}
    assert list(index.keys()) == ["user:bob"]


def test_list_body_cached_until_keys_change() -> None:
    index = SessionIndex()
    index.set_file("a.json", rec("a"))
    body = index.list_body()
    assert index.list_body() is body
    index.set_file("a.json", rec("a", messages=5))  # metadata only: the list is unchanged
    assert index.list_body() is body
    index.set_file("b.json", rec("b"))
    assert index.list_body() is not body
    assert orjson.loads(index.list_body())["count"] == 2


def test_collision_newer_updated_at_wins_then_falls_back() -> None:
    index = SessionIndex()
    index.set_file("one.json", rec("k", "one.json", updated=5))
    index.set_file("two.json", rec("k", "two.json", updated=9))
    assert index.get("k").name == "two.json"
    assert index.collisions() == {"k": ["two.json", "one.json"]}
    assert index.collision_count == 1
    assert list(index.keys()) == ["k"]
    index.remove("two.json")
    assert index.get("k").name == "one.json"
    assert index.collisions() == {}


def test_collision_tie_is_deterministic() -> None:
    first, second = SessionIndex(), SessionIndex()
    first.set_file("a.json", rec("k", "a.json"))
    first.set_file("b.json", rec("k", "b.json"))
    second.set_file("b.json", rec("k", "b.json"))
    second.set_file("a.json", rec("k", "a.json"))
    assert first.get("k").name == second.get("k").name == "b.json"


def test_invalid_kept_aside_and_replaced_when_fixed() -> None:
    index = SessionIndex()
    index.set_file("a.json", rec("a"))
    changes = index.set_file("a.json", InvalidFile("a.json", "not valid JSON", ST))
    assert [c.kind for c in changes] == ["deleted"]
    assert "a" not in index
    assert index.invalid["a.json"].reason == "not valid JSON"
    index.set_file("a.json", rec("a"))
    assert "a" in index and index.invalid == {}


def test_load_replaces_everything_in_one_pass() -> None:
    index = SessionIndex()
    index.set_file("old.json", rec("old"))
    version = index.version
    index.load(
        [
            ("b.json", rec("b")),
            ("a.json", rec("a")),
            ("dup.json", rec("a", "dup.json", updated=99)),
            ("bad.json", InvalidFile("bad.json", "empty file", ST)),
        ]
    )
    assert list(index.keys()) == ["a", "b"]
    assert index.get("a").name == "dup.json"
    assert set(index.invalid) == {"bad.json"}
    assert index.version > version
    assert index.file_idents().keys() == {"a.json", "b.json", "dup.json", "bad.json"}


def test_files_for_lists_every_claimant() -> None:
    index = SessionIndex()
    index.set_file("a.json", rec("k", "a.json", updated=1))
    index.set_file("b.json", rec("k", "b.json", updated=2))
    index.set_file("c.json", rec("k", "c.json", updated=0))
    assert index.files_for("k") == ["b.json", "a.json", "c.json"]
    assert index.files_for("nope") == []


def test_reload_reports_the_difference() -> None:
    index = SessionIndex()
    assert index.load([("a.json", rec("a")), ("b.json", rec("b"))]) == []  # first load: silent
    changes = index.load([("b.json", rec("b", messages=3)), ("c.json", rec("c"))])
    assert sorted((c.kind, c.key) for c in changes) == [("created", "c"), ("deleted", "a"), ("updated", "b")]


_NAMES = st.sampled_from([f"f{i}.json" for i in range(4)])
_KEYS = st.sampled_from(["alpha", "beta", "gamma"])
_STEP = st.tuples(_NAMES, st.one_of(st.none(), st.just("bad"), st.tuples(_KEYS, st.integers(0, 3))))


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, max_size=30))
def test_the_index_always_serves_what_a_recount_of_the_files_says(steps: list) -> None:
    index = SessionIndex()
    disk: dict[str, tuple[str, int]] = {}
    for name, what in steps:
        if what is None:
            disk.pop(name, None)
            index.set_file(name, None)
        elif what == "bad":
            disk.pop(name, None)
            index.set_file(name, InvalidFile(name, "bad", FileStat(1, 1, 1, 1)))
        else:
            key, updated = what
            disk[name] = (key, updated)
            index.set_file(name, rec(key, name=name, updated=float(updated)))
        # The naive truth: per key, the newest updated_at wins, ties to the later name.
        want: dict[str, str] = {}
        for fname, (key, updated) in sorted(disk.items()):
            if key not in want or (updated, fname) > (disk[want[key]][1], want[key]):
                want[key] = fname
        assert {k: r.name for k, r in index.served.items()} == want
        assert list(index.keys()) == sorted(want)
        claimants = {}
        for fname, (key, _) in disk.items():
            claimants.setdefault(key, set()).add(fname)
        assert {k: set(names) for k, names in index.collisions().items()} == {k: v for k, v in claimants.items() if len(v) > 1}
        for key, names in claimants.items():
            assert index.files_for(key)[0] == want[key] and set(index.files_for(key)) == names
    loaded = SessionIndex()
    loaded.load([(name, rec(key, name=name, updated=float(updated))) for name, (key, updated) in disk.items()])
    assert {k: r.name for k, r in loaded.served.items()} == {k: r.name for k, r in index.served.items()}
    assert loaded.collision_count == index.collision_count


def test_the_stat_walks_shortcut_packs_a_stat_exactly_as_pack_does(tmp_path: Path) -> None:
    # pack_stat skips the FileStat the walks would make per file; a walk and the index must agree bit for bit.
    for i, size in enumerate((0, 1, 3_400, 1 << 31)):
        path = tmp_path / f"f{i}.json"
        with path.open("wb") as fh:
            fh.truncate(size)
        os.utime(path, ns=(1, 1_700_000_000_123_456_789 + i))
        st = os.lstat(path)
        assert pack_stat(st) == pack(stat_of(st))
        assert unpack(pack_stat(st)) == stat_of(st)


@given(
    st.integers(0, (1 << 63) - 1),
    st.integers(-(1 << 62), 1 << 62),
    st.integers(0, (1 << 64) - 1),
    st.integers(-(1 << 62), 1 << 62),
)
def test_the_search_plans_shortcut_packs_fields_exactly_as_pack_does(size: int, mtime: int, inode: int, ctime: int) -> None:
    # The search index's plan packs each row's fields without a FileStat; it must match the index's records bit for bit.
    assert pack_fields(size, mtime, inode, ctime) == pack(FileStat(size, mtime, inode, ctime))
    assert unpack(pack_fields(size, mtime, inode, ctime)) == FileStat(size, mtime, inode, ctime)
