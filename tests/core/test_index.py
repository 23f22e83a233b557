"""SessionIndex: pure, synchronous tests."""

from __future__ import annotations

import array
import gc
import os
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.core.index import (
    FileStat,
    InvalidFile,
    SessionIndex,
    SessionRecord,
    Sheet,
    pack,
    pack_fields,
    pack_stat,
    unpack,
)
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
    assert index.idents_reader()().keys() == {"a.json", "b.json", "dup.json", "bad.json"}


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
_LOADS = st.sampled_from(["load", "load kept", "load half kept", "load read"])
_FOLDS = st.sampled_from(["compact", "fold"])  # a compaction copied; its rows built and put in place
_STEP = st.tuples(_NAMES, st.one_of(st.none(), st.just("bad"), _LOADS, _FOLDS, st.tuples(_KEYS, st.integers(0, 3))))


class _Snapshot:
    """A ColumnSource of some records, in (key, name) order, as a snapshot holds them."""

    def __init__(self, records: list[SessionRecord]) -> None:
        records = sorted(records, key=lambda r: (r.key, r.name))
        self.names = [r.name for r in records]
        self.keys = [r.key for r in records]
        stats = [r.stat for r in records]
        self.numbers = {
            "count": array.array("q", [r.message_count for r in records]),
            "created": array.array("d", [r.created_at for r in records]),
            "updated": array.array("d", [r.updated_at for r in records]),
            "size": array.array("q", [s.size for s in stats]),
            "mtime": array.array("q", [s.mtime_ns for s in stats]),
            "inode": array.array("Q", [s.inode for s in stats]),
            "ctime": array.array("q", [s.ctime_ns for s in stats]),
        }
        self.exact: dict[int, list[object]] = {}


@settings(max_examples=500, deadline=None)
@given(st.lists(_STEP, max_size=30))
def test_the_index_always_serves_what_a_recount_of_the_files_says(steps: list) -> None:
    # "load" reloads the index from the disk as it is: its sessions then live in rows, and
    # the steps after it take them back as objects one by one.
    index = SessionIndex()
    disk: dict[str, tuple[str, int]] = {}
    bad: set[str] = set()
    job, folding = None, iter(())
    for name, what in steps:
        if what == "compact":
            job = index.compaction() or job
        elif what == "fold":
            if job is not None:  # built (on another thread in the daemon: the steps between ran meanwhile), put in place
                job.build()
                folding = index.compact(job, step=1)
                job = None
            objects = index.held_as_objects
            folded = next(folding, 0)  # one object a slice: the steps between run between slices
            assert index.held_as_objects == objects - folded
        elif what == "load read":
            # A scan as the daemon makes one: slices read into Sheets, appended, put in order.
            found = {n: rec(key, name=n, updated=float(updated)) for n, (key, updated) in disk.items()}
            states = [*found.items(), *((n, InvalidFile(n, "bad", FileStat(1, 1, 1, 1))) for n in bad)]
            sheet = Sheet(states[::2])
            sheet.take(Sheet(states[1::2]))
            sheet.order()
            index.load(sheet.others, (sheet, range(len(sheet))))
        elif isinstance(what, str) and what.startswith("load"):
            # A restart keeps some files from its snapshot (as columns) and reads the others.
            found = {n: rec(key, name=n, updated=float(updated)) for n, (key, updated) in disk.items()}
            kept = sorted(found)[: 0 if what == "load" else len(found) if what == "load kept" else len(found) // 2]
            snap = _Snapshot([found.pop(n) for n in kept])
            index.load(
                [*found.items(), *((n, InvalidFile(n, "bad", FileStat(1, 1, 1, 1))) for n in bad)],
                (snap, list(range(len(snap.names)))) if what != "load" else None,
            )
        elif what is None:
            bad.discard(name)
            disk.pop(name, None)
            index.set_file(name, None)
        elif what == "bad":
            disk.pop(name, None)
            bad.add(name)
            index.set_file(name, InvalidFile(name, "bad", FileStat(1, 1, 1, 1)))
        else:
            key, updated = what
            bad.discard(name)
            disk[name] = (key, updated)
            index.set_file(name, rec(key, name=name, updated=float(updated)))
        # The naive truth: per key, the newest updated_at wins, ties to the later name.
        want: dict[str, str] = {}
        for fname, (key, updated) in sorted(disk.items()):
            if key not in want or (updated, fname) > (disk[want[key]][1], want[key]):
                want[key] = fname
        assert {r.key: r.name for r in index.records()} == want
        assert list(index.keys()) == sorted(want)
        assert [(r.key, r.name) for r in index.records()] == [(k, want[k]) for k in sorted(want)]
        assert len(index) == len(want) and all(k in index for k in want) and "nothing" not in index
        for fname in [f"f{i}.json" for i in range(4)]:
            state = index.file_state(fname)
            if fname in disk:
                assert isinstance(state, SessionRecord) and (state.key, state.updated_at) == (
                    disk[fname][0],
                    float(disk[fname][1]),
                )
            else:
                assert state is None if fname not in bad else isinstance(state, InvalidFile)
        assert set(index.idents_reader()()) == set(disk) | bad
        table = index.table_reader()()
        assert list(zip(table.keys, table.names, strict=True)) == sorted((k, n) for n, (k, _) in disk.items())
        claimants = {}
        for fname, (key, _) in disk.items():
            claimants.setdefault(key, set()).add(fname)
        assert {k: set(names) for k, names in index.collisions().items()} == {k: v for k, v in claimants.items() if len(v) > 1}
        for key, names in claimants.items():
            assert index.files_for(key)[0] == want[key] and set(index.files_for(key)) == names
    loaded = SessionIndex()
    loaded.load([(name, rec(key, name=name, updated=float(updated))) for name, (key, updated) in disk.items()])
    assert {r.key: r.name for r in loaded.records()} == {r.key: r.name for r in index.records()}
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


def _records_alive() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is SessionRecord)


def test_a_loaded_index_keeps_no_object_per_session_only_rows() -> None:
    """At 1M a record kept as an object cost ~450 bytes (the object, its numbers, two
    dict entries): what a load finds is kept in columns, and a record made when asked."""
    before = _records_alive()
    states = [(f"k{i:05d}.json", rec(f"k{i:05d}", updated=float(i))) for i in range(5000)]
    states.append(("copy.json", rec("k00007", name="copy.json", updated=1.5)))  # a collision: kept as objects
    index = SessionIndex()
    index.load(states)
    del states
    assert _records_alive() - before == 2  # the two claimants of k00007
    assert len(index) == 5000 and index.get("k04999").updated_at == 4999.0
    assert [r.key for r in index.records()][:3] == ["k00000", "k00001", "k00002"]
    index.set_file("k00100.json", rec("k00100", updated=7.0, messages=3))  # a change: that one becomes an object
    assert _records_alive() - before == 3
    assert index.get("k00100").message_count == 3 and index.get("k00101").updated_at == 101.0


def test_a_scans_slices_appended_and_put_in_order_load_as_rows_with_no_record_kept() -> None:
    """A scan's workers send columns, not records: at 1M the records made and kept until the
    load cost ~1 s and ~400 MB at the peak."""
    before = _records_alive()
    states = [(f"k{i:05d}.json", rec(f"k{i:05d}", updated=float(i))) for i in range(3000)]
    states[10] = ("k00010.json", SessionRecord("k00010", "k00010.json", 4, 7, None, FileStat(9, 8, 7, 6)))  # ints, None: exact
    states.append(("bad.json", InvalidFile("bad.json", "empty file", FileStat(0, 1, 2, 1))))
    states.append(("gone.json", None))  # gone since the listing: left out
    sheet = Sheet()
    for lo in (2000, 0, 1000):  # slices arrive as their workers finish
        part = Sheet(states[lo : lo + 1000] + (states[3000:] if lo == 2000 else []))
        sheet.take(part)
        assert part.files == 0  # left empty: what returned it may hold it a while
    assert sheet.files == 3001 and sheet.keys[:2] == ["k02000", "k02001"]
    sheet.order()
    assert sheet.keys == sorted(sheet.keys) and sheet.names == [f"{key}.json" for key in sheet.keys]
    assert sheet.exact == {10: (7, None)} and sheet.others == [states[3000]]
    index = SessionIndex()
    index.load(sheet.others, (sheet, range(len(sheet))))
    del states, sheet
    assert _records_alive() - before == 0 and index.held_as_objects == 0
    assert len(index) == 3000 and set(index.invalid) == {"bad.json"}
    odd = index.get("k00010")
    assert (odd.created_at, odd.updated_at, odd.message_count, odd.stat) == (7, None, 4, FileStat(9, 8, 7, 6))
    assert type(odd.created_at) is int and index.get("k02999").updated_at == 2999.0


def test_a_scans_files_of_one_key_in_two_slices_follow_the_collision_rule() -> None:
    sheet = Sheet([("a.json", rec("same", name="a.json", updated=5.0)), ("x.json", rec("x"))])
    sheet.take(Sheet([("b.json", rec("same", name="b.json", updated=9.0)), ("c.json", rec("c"))]))
    sheet.order()
    index = SessionIndex()
    index.load(sheet.others, (sheet, range(len(sheet))))
    assert list(index.keys()) == ["c", "same", "x"] and index.get("same").name == "b.json"
    assert index.collisions() == {"same": ["b.json", "a.json"]}
    index.set_file("b.json", None)
    assert index.get("same").name == "a.json"


def test_a_record_the_columns_cannot_hold_stays_a_state_of_the_sheet() -> None:
    huge = SessionRecord("big", "big.json", 1 << 63, 1.0, 2.0, FileStat(1, 1, 1, 1))
    sheet = Sheet([("big.json", huge), ("k.json", rec("k"))])
    assert sheet.keys == ["k"] and sheet.others == [("big.json", huge)]
    index = SessionIndex()
    index.load(sheet.others, (sheet, range(len(sheet))))
    assert index.get("big").message_count == 1 << 63 and index.get("k") is not None


def test_the_files_for_the_search_plan_come_in_name_order_rows_and_objects_merged() -> None:
    # The plan finds each indexed name among them by bisection: no map of a million names.
    index = SessionIndex()
    index.load([(f"z{i:03d}.json", rec(f"k{i:03d}", name=f"z{i:03d}.json", updated=float(i))) for i in range(50)])
    index.set_file("z010.json", rec("k010", name="z010.json", updated=99.5))  # taken back as an object
    index.set_file("z020.json", None)  # gone
    index.set_file("a.json", rec("new", name="a.json", updated=7.0))  # new: an object
    index.set_file("z025x.json", SessionRecord("odd", "z025x.json", 1, 3, 4, FileStat(5, 6, 7, 8)))  # integer times
    files = index.versions_reader()()
    want = {r.name: r for r in index.records()}
    assert files.names == sorted(want)
    assert [files.updated(i) for i in range(len(files.names))] == [float(want[n].updated_at) for n in files.names]
    assert [files.ident(i) for i in range(len(files.names))] == [want[n].ident for n in files.names]
    assert list(files.in_order()) == [float(want[n].updated_at) for n in files.names]
    # Rows alone (their times read in C), and rows with a time a double does not echo; rows some of which are gone.
    for odd, gone in ((False, False), (True, False), (False, True)):
        index = SessionIndex()
        loaded = [(f"z{i:03d}.json", rec(f"k{i:03d}", name=f"z{i:03d}.json", updated=float(50 - i))) for i in range(50)]
        if odd:
            loaded.append(("z025x.json", SessionRecord("odd", "z025x.json", 1, 3, 4, FileStat(5, 6, 7, 8))))
        index.load(loaded)
        if gone:
            index.set_file("z007.json", None)
        files = index.versions_reader()()
        want = {r.name: r for r in index.records()}
        assert files.names == sorted(want) and index.held_as_objects == 0
        assert list(files.in_order()) == [float(want[n].updated_at) for n in files.names]
        assert [files.updated(i) for i in range(len(files.names))] == [float(want[n].updated_at) for n in files.names]
    # A new file held as an object beside whole rows: merged into a list of the plan's own, the index's untouched.
    index = SessionIndex()
    index.load([(f"z{i:03d}.json", rec(f"k{i:03d}", name=f"z{i:03d}.json")) for i in range(20)])
    index.set_file("a.json", rec("new", name="a.json"))
    files = index.versions_reader()()
    assert files.names == ["a.json", *(f"z{i:03d}.json" for i in range(20))]
    assert index.versions_reader()().names == files.names and index.get("k005") is not None


def test_sessions_taken_back_as_objects_fold_back_into_rows_but_what_changed_meanwhile() -> None:
    # Under churn every session written since the load became an object (~470 bytes against ~240),
    # until the next load: a compaction folds them back, built off the loop while writes go on.
    index = SessionIndex()
    index.load([(f"k{i:03d}.json", rec(f"k{i:03d}", updated=float(i))) for i in range(100)])
    for i in range(10):
        index.set_file(f"k{i:03d}.json", rec(f"k{i:03d}", updated=500.0 + i))
    index.set_file("twin.json", rec("k099", name="twin.json", updated=1.0))  # a collision: stays objects
    assert index.held_as_objects == 12
    job = index.compaction()
    assert job is not None
    index.set_file("k000.json", rec("k000", updated=900.0))  # changed again meanwhile
    index.set_file("k050.json", rec("k050", updated=950.0))  # a row taken back meanwhile
    index.set_file("k051.json", None)  # a row gone meanwhile
    job.build()  # the objects alone on their key, each with its row (dead until folded)
    assert sorted(name for _, name, _ in job.folds) == [f"k{i:03d}.json" for i in range(10)]
    assert sum(index.compact(job, step=4)) == 9 and index.held_as_objects == 2 + 2  # k000, k050; the collision's two
    assert sum(index.compact(job)) == 0  # once only
    want = {f"k{i:03d}": float(i) for i in range(100)} | {f"k{i:03d}": 500.0 + i for i in range(10)}
    want |= {"k000": 900.0, "k050": 950.0, "k099": 99.0}
    del want["k051"]
    assert [(r.key, r.updated_at) for r in index.records()] == sorted(want.items())
    assert index.get("k005").updated_at == 505.0 and index.file_state("k005.json").updated_at == 505.0
    assert "k051" not in index and index.file_state("k051.json") is None
    index.set_file("k005.json", rec("k005", updated=7.0))  # a folded row is taken back as any row is
    assert index.get("k005").updated_at == 7.0 and index.held_as_objects == 5


def test_a_compaction_of_objects_that_all_share_their_key_folds_nothing_and_changes_nothing() -> None:
    index = SessionIndex()
    index.load([("a.json", rec("k", name="a.json")), ("b.json", rec("k", name="b.json", updated=20.0)), ("c.json", rec("c"))])
    job = index.compaction()
    assert job is not None
    job.build()
    assert sum(index.compact(job)) == 0 and index.held_as_objects == 2
    assert [(r.key, r.name) for r in index.records()] == [("c", "c.json"), ("k", "b.json")]


def test_a_load_abandons_a_compaction_under_way() -> None:
    index = SessionIndex()
    index.load([("a.json", rec("a"))])
    index.set_file("a.json", rec("a", updated=3.0))
    job = index.compaction()
    assert job is not None
    index.load([("b.json", rec("b"))])
    job.build()
    assert sum(index.compact(job)) == 0 and list(index.keys()) == ["b"] and index.get("b") is not None


def test_after_settling_the_index_holds_its_own_copies_of_the_scans_strings() -> None:
    """A scan's strings lie in the heap among the objects it made and freed: kept, each one
    keeps its 1 MiB arena from going back to the system (at 1M, 439 arenas for 184 MB)."""
    made = ["".join(("user:", str(i))) for i in range(100)]
    index = SessionIndex()
    index.load([(f"{key}.json", rec(key)) for key in made])
    assert index.get("user:5").key is made[5]  # the scan's own string, until settled
    index.settle()
    found = index.get("user:5")
    assert found is not None and found.key == "user:5" and found.key is not made[5]
    assert index.file_state("user:5.json") is not None and list(index.keys()) == sorted(made)
    assert index.set_file("user:5.json", None)[0].kind == "deleted" and "user:5" not in index


def test_settling_keeps_keys_that_hold_the_separator_as_they_are() -> None:
    index = SessionIndex()
    index.load([("a.json", rec("a\0b", name="a.json")), ("b.json", rec("b", name="b.json"))])
    index.settle()
    assert list(index.keys()) == ["a\0b", "b"] and index.get("a\0b").name == "a.json"
    assert index.file_state("b.json").key == "b"
