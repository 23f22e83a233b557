"""Snapshots: a restart re-reads only what changed while the daemon was down."""

from __future__ import annotations

import array
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sessiond.core import snapshot
from sessiond.core.index import FileStat, Rows, SessionRecord, pack
from tests.support import later, open_store, session_doc, write_atomic

OLD = time.time() - 3600


def age(path: Path) -> None:
    """Make a file look untouched for an hour (outside the racy window)."""
    os.utime(path, (OLD, OLD))


@pytest.fixture(params=["small", "big"])
def big(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each way a restart lists: in the daemon (a small snapshot), or in worker processes against the
    snapshot's own names (BIG_SNAPSHOT_BYTES or more: made 0 here)."""
    from sessiond.live import store as store_mod

    if request.param == "big":
        monkeypatch.setattr(store_mod, "BIG_SNAPSHOT_BYTES", 0)


async def scanned(folder: Path, snap: Path) -> Any:
    store = open_store(folder, snapshot_path=snap)
    await store.scan()
    await store.save_snapshot()  # what the daemon does once it is ready
    later(snap)
    return store


async def test_restart_reads_only_changed_files(sessions: Path, tmp_path: Path) -> None:
    snap = tmp_path / "state" / "index.json"
    snap.parent.mkdir()
    paths = [write_atomic(sessions, f"s:{i}", messages=i) for i in range(20)]
    (sessions / "bad.json").write_text("{")
    for path in [*paths, sessions / "bad.json"]:
        age(path)
    first = await scanned(sessions, snap)
    assert first.last_scan_counts == (21, 0) and snap.exists()

    write_atomic(sessions, "s:3", messages=99)  # rewritten (new inode, size)
    age(sessions / "s_3.json")
    paths[4].unlink()  # removed
    write_atomic(sessions, "s:new")  # added
    age(sessions / "s_new.json")
    second = await scanned(sessions, snap)
    assert second.last_scan_counts == (3, 18)  # the changed, the new, and the invalid one again
    assert second.index.get("s:3").message_count == 99
    assert "s:4" not in second.index and "s:new" in second.index
    assert set(second.index.invalid) == {"bad.json"}
    assert list(second.index.keys()) == sorted(set(first.index.keys()) - {"s:4"} | {"s:new"})


async def test_recent_files_are_not_trusted(sessions: Path, tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    write_atomic(sessions, "fresh")
    await scanned(sessions, snap)
    later(snap, -3600)  # back to the snapshot's real time: the file's ctime is within the racy window
    again = await scanned(sessions, snap)
    assert again.last_scan_counts == (1, 0)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"format": "other"}\n',
        b'{"format": "sessiond-snapshot/2", "folder": "X", "records": []}',
        b'{"format": "sessiond-snapshot/3", "folder": "X"}\n',
    ],
)
async def test_unusable_snapshot_means_full_scan(sessions: Path, tmp_path: Path, content: bytes, big: None) -> None:
    snap = tmp_path / "snap.json"
    age(write_atomic(sessions, "a"))
    snap.write_bytes(content)
    store = await scanned(sessions, snap)
    assert store.last_scan_counts == (1, 0) and "a" in store.index


async def test_snapshot_of_another_folder_is_ignored(tmp_path: Path, big: None) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    age(write_atomic(one, "a"))
    age(write_atomic(two, "b"))
    snap = tmp_path / "snap.json"
    await scanned(one, snap)
    store = await scanned(two, snap)
    assert list(store.index.keys()) == ["b"] and store.last_scan_counts == (1, 0)


@pytest.mark.slow
def test_daemon_restart_uses_its_snapshot(workspace: Path, tmp_path: Path) -> None:
    from tests.support import Daemon

    state = tmp_path / "state"
    state.mkdir()
    for i in range(5):
        age(write_atomic(workspace / "sessions", f"r:{i}"))
    env = {"SESSIOND_STATE_DIR": str(state)}
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert d.stop() == 0
    assert (state / "index.snapshot").exists()
    later(state / "index.snapshot")
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert d.get("/api/v1/sessions")[0] == 200
        assert d.stop() == 0
        assert "(0 read, 5 unchanged since the snapshot, 0 invalid)" in d.output()


async def test_concurrent_saves_do_not_collide(sessions: Path, tmp_path: Path) -> None:
    import asyncio

    (tmp_path / "state").mkdir()
    snap = tmp_path / "state" / "snap.json"
    age(write_atomic(sessions, "a"))
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    await asyncio.gather(*(store.save_snapshot() for _ in range(5)))
    assert snapshot.load(snap, str(sessions)) is not None
    assert sorted(p.name for p in snap.parent.iterdir()) == ["snap.json"]  # no temp file left behind


async def test_a_restart_gives_back_every_value_exactly(sessions: Path, tmp_path: Path) -> None:
    """What the columns cannot hold goes through the side table: integer times, times a
    double would round, a key with a NUL in it; order and names come back too."""
    snap = tmp_path / "snap"
    docs = {
        "int.json": session_doc("int:1", created=1_700_000_000, updated=1_700_000_001),
        "wide.json": session_doc("wide:1", created=2**63 - 1, updated=2**64 - 1),
        "nul.json": session_doc("nul:\u0000:1", messages=3),
        "float.json": session_doc("float:1", created=1_700_000_000.25, updated=1e300),
        "é.json": session_doc("b:é", messages=0),
    }
    for name, doc in docs.items():
        (sessions / name).write_bytes(orjson.dumps(doc))
        age(sessions / name)
    first = await scanned(sessions, snap)
    again = await scanned(sessions, snap)
    assert again.last_scan_counts == (0, 5)
    for key in ("int:1", "wide:1", "nul:\u0000:1", "float:1", "b:é"):
        one, two = first.index.get(key), again.index.get(key)
        assert (two.name, two.message_count, two.stat) == (one.name, one.message_count, one.stat)
        for field in ("created_at", "updated_at"):
            assert type(getattr(two, field)) is type(getattr(one, field))
            assert getattr(two, field) == getattr(one, field)
    assert again.index.get("wide:1").updated_at == 2**64 - 1
    assert list(again.index.keys()) == list(first.index.keys())


@pytest.mark.parametrize("cut", [1, 100, "body"])
async def test_a_truncated_snapshot_means_full_scan(sessions: Path, tmp_path: Path, cut: int | str) -> None:
    snap = tmp_path / "snap"
    for i in range(3):
        age(write_atomic(sessions, f"t:{i}", messages=i))
    await scanned(sessions, snap)
    data = snap.read_bytes()
    snap.write_bytes(data[: data.index(b"\n") + 1] if cut == "body" else data[: len(data) - int(cut)])
    store = await scanned(sessions, snap)
    assert store.last_scan_counts == (3, 0) and store.index.get("t:2").message_count == 2


async def test_a_restart_that_finds_nothing_changed_leaves_the_snapshot_as_it_is(sessions: Path, tmp_path: Path) -> None:
    """Writing 100 MB again (at 1M sessions) to say what the file already says is a stall for nothing."""
    snap = tmp_path / "snap"
    for i in range(3):
        age(write_atomic(sessions, f"u:{i}"))
    await scanned(sessions, snap)
    before = snap.stat()
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    await store.save_snapshot()
    assert store.last_scan_counts == (0, 3)
    assert (snap.stat().st_ino, snap.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    age(write_atomic(sessions, "u:new"))
    again = open_store(sessions, snapshot_path=snap)
    await again.scan()
    await again.save_snapshot()
    assert again.last_scan_counts == (1, 3) and snap.stat().st_ino != before.st_ino
    assert snapshot.load(snap, str(sessions)) is not None and len(snapshot.load(snap, str(sessions)) or []) == 4


def test_a_save_reads_the_index_as_columns_in_key_order_and_writes_what_records_would(tmp_path: Path) -> None:
    """A sort of a million records is one C call that holds the GIL, and the event loop with
    it, for 1.4 s; and a million records made for a save cost ~200 MB for a moment. The index
    hands its rows as columns in (key, name) order, what it holds as objects merged in place,
    and the file is the same as from the records sorted."""
    from sessiond.core.index import SessionIndex

    index = SessionIndex()
    stat = FileStat(10, 1, 1, 1)
    disk: dict[str, SessionRecord] = {
        f"f{i:03d}.json": SessionRecord(f"k{(i * 37) % 100:03d}", f"f{i:03d}.json", 1, 1.0, 2.0, stat) for i in range(100)
    }
    disk["dup-b.json"] = SessionRecord("k050", "dup-b.json", 1, 1.0, 2.0, stat)  # claimants of one key: objects
    disk["dup-a.json"] = SessionRecord("k050", "dup-a.json", 1, 1.0, 2.0, stat)
    index.load(list(disk.items()))
    changed = {
        "f020.json": SessionRecord("k020x", "f020.json", 7, 1.0, 3.0, FileStat(11, 2, 1, 1)),  # taken back, key changed
        "f030.json": SessionRecord("k030", "f030.json", 2, 5, 6, FileStat(12, 2, 1, 1)),  # int times: kept as written
        "new.json": SessionRecord("k\0nul", "new.json", 3, 1.0, 4.0, FileStat(13, 2, 1, 1)),  # a key holding NUL
        "f040.json": None,  # gone
    }
    for name, state in changed.items():
        index.set_file(name, state)
        if state is None:
            del disk[name]
        else:
            disk[name] = state
    table = index.table_reader()()
    assert list(zip(table.keys, table.names, strict=True)) == sorted((r.key, r.name) for r in disk.values())
    taken = time.time()
    parts, count = snapshot._encode_parts("/f", taken, table, lambda: True)
    assert count == len(disk) and b"".join(parts) == snapshot.encode("/f", taken, reversed(list(disk.values())))[0]
    path = tmp_path / "index.snapshot"
    assert snapshot.save(path, "/f", table) == len(disk)
    columns = snapshot.load(path, "/f")
    assert columns is not None and columns.exact == {table.names.index("f030.json"): [5, 6]}


@pytest.mark.parametrize("after", [0, 1, 3, 12, 40])
def test_a_save_told_to_stop_leaves_the_previous_snapshot_whole_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    """The stop's deadline tells a save still running to stop (go_on says no): wherever it
    is (encoding, or between two slices of the write), it removes its temp file and leaves
    the snapshot on disk as it was."""
    monkeypatch.setattr(snapshot, "STEP_ROWS", 16)
    monkeypatch.setattr(snapshot, "WRITE_SLICE", 256)
    path = tmp_path / "index.snapshot"
    stat = FileStat(10, 1, 1, 1)
    old = [SessionRecord(f"old:{i}", f"o{i:03d}.json", 1, 1.0, 2.0, stat) for i in range(10)]
    snapshot.save(path, "/f", old)
    before = path.read_bytes()
    new = [SessionRecord(f"new:{i:03d}", f"n{i:03d}.json", 1, 1.0, 2.0, stat) for i in range(100)]
    asked = 0

    def go_on() -> bool:
        nonlocal asked
        asked += 1
        return asked <= after

    with pytest.raises(snapshot.Abandoned):
        snapshot.save(path, "/f", new, go_on)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.snapshot"]
    columns = snapshot.load(path, "/f")
    assert columns is not None and len(columns) == 10
    assert snapshot.save(path, "/f", new) == 100  # and the next save is whole


def _columns(tmp_path: Path, records: list[SessionRecord], taken_at: float) -> snapshot.Columns:
    path = tmp_path / "snap"
    path.write_bytes(snapshot.encode("/f", taken_at, records)[0])
    columns = snapshot.load(path, "/f")
    assert columns is not None
    return columns


@pytest.mark.parametrize("change", ["none", "size", "inode", "ctime", "gone", "racy mtime", "racy ctime", "beyond 2262"])
def test_comparing_columns_in_slices_keeps_and_reads_exactly_what_split_does(tmp_path: Path, change: str) -> None:
    # A restart of a big folder compares the snapshot with the disk column against column, a slice at a time
    # (Columns.compare); it must decide as the row-by-row comparison (Columns.split) does, in every slice.
    taken_at = 1_800_000_000.0
    old_ns = int((taken_at - 3600) * 1e9)
    records = [
        SessionRecord(f"k{i:02d}", f"k{i:02d}.json", i, 1.5, 2.5, FileStat(100 + i, old_ns + i, 1000 + i, old_ns + i))
        for i in range(30)
    ]
    stats = [list(r.stat) for r in records]
    row = 17
    racy_ns = int(taken_at * 1e9)
    if change == "size":
        stats[row][0] += 1
    elif change == "inode":
        stats[row][2] += 1
    elif change == "ctime":
        stats[row][3] += 1
    elif change == "racy mtime":
        stats[row][1] = racy_ns
        records[row] = SessionRecord(records[row].key, records[row].name, 1, 1.5, 2.5, FileStat(*stats[row]))
    elif change == "racy ctime":
        stats[row][3] = racy_ns
        records[row] = SessionRecord(records[row].key, records[row].name, 1, 1.5, 2.5, FileStat(*stats[row]))
    columns = _columns(tmp_path, records, taken_at)
    by_row: list[list[int] | None] = list(stats)
    if change == "gone":
        by_row[row] = None
    elif change == "beyond 2262":
        by_row[row] = [stats[row][0], 1 << 63, stats[row][2], stats[row][3]]
    disk = {r.name: pack(FileStat(*st)) for r, st in zip(records, by_row, strict=True) if st is not None}
    expected_kept: list[tuple[str, Any]] = []
    expected_read = columns.split(dict(disk), expected_kept)

    def column_stats(lo: int, hi: int) -> snapshot.Stats:
        size, mtime, inode, ctime = (array.array(code) for code in ("q", "q", "Q", "q"))
        for st in by_row[lo:hi]:
            if st is None:
                values = [-1, 0, 0, 0]
            elif not -(1 << 63) <= st[1] < 1 << 63:
                values = [-2, 0, 0, 0]
            else:
                values = st
            for column, value in zip((size, mtime, inode, ctime), values, strict=True):
                column.append(value)
        return size, mtime, inode, ctime

    rows: list[int] = []
    read: list[str] = []
    for lo in range(0, 30, 7):  # slices of 7: row 17 in the third; the others equal
        read += columns.compare(lo, min(lo + 7, 30), column_stats(lo, min(lo + 7, 30)), rows)
    assert read == expected_read and len(read) == (0 if change in ("none", "gone") else 1)
    # The rows kept, as the index takes them (columns, no record made), say what split's records say.
    taken = Rows.of_columns(columns, rows)
    kept = [(taken.names[i], taken.record(i)) for i in range(len(taken))]
    assert [(name, r.key, r.ident, r.message_count, r.created_at, r.updated_at) for name, r in kept] == [
        (name, r.key, r.ident, r.message_count, r.created_at, r.updated_at) for name, r in expected_kept
    ]


def test_stat_columns_are_the_files_stats_in_the_order_asked_and_mark_a_missing_file(tmp_path: Path) -> None:
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text("{}")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        size, mtime, inode, ctime = snapshot.stat_columns(fd, ["b.json", "gone.json", "a.json"])
    finally:
        os.close(fd)
    for i, name in ((0, "b.json"), (2, "a.json")):
        st = os.lstat(tmp_path / name)
        assert (size[i], mtime[i], inode[i], ctime[i]) == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    assert size[1] == -1


@pytest.mark.parametrize("path", ["walk in the daemon", "stats in worker processes"])
async def test_a_restart_reads_exactly_what_changed_while_it_was_down(
    sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # A big folder (a snapshot of BIG_SNAPSHOT_BYTES or more) is listed and compared in worker processes,
    # in slices of STAT_CHUNK; made small here, so that 60 files take that path through real workers.
    from sessiond.live import store as store_mod

    compared: list[int] = []
    if path == "stats in worker processes":
        monkeypatch.setattr(store_mod, "BIG_SNAPSHOT_BYTES", 0)
        monkeypatch.setattr(store_mod, "STAT_CHUNK", 7)
        original = store_mod._StatWalk.compare

        async def counted(self: Any, *args: Any) -> Any:
            compared.append(len(self.previous))
            return await original(self, *args)

        monkeypatch.setattr(store_mod._StatWalk, "compare", counted)
    snap = tmp_path / "snap"
    for i in range(60):
        age(write_atomic(sessions, f"r:{i:02d}"))
    await scanned(sessions, snap)
    for i in (3, 30, 59):
        (sessions / f"r_{i:02d}.json").unlink()
    for i in (10, 45):
        age(write_atomic(sessions, f"r:{i:02d}", messages=7))
    kept_times = sessions / "r_20.json"
    st = kept_times.stat()
    doc = orjson.loads(kept_times.read_bytes())
    doc["messages"] = [{"role": "user", "content": "x" * 10}]
    body = orjson.dumps(doc)
    kept_times.write_bytes(body.ljust(st.st_size) if len(body) <= st.st_size else body)
    os.utime(kept_times, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime put back: only the ctime tells
    for i in range(60, 64):
        age(write_atomic(sessions, f"r:{i:02d}"))
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    fresh = open_store(sessions)
    await fresh.scan()
    assert store.last_scan_counts == (7, 54)  # 2 rewritten, 1 with its size and mtime put back, 4 new
    assert compared == ([60] if path == "stats in worker processes" else [])
    assert len(store.index) == 61
    for record in fresh.index.records():
        got = store.index.get(record.key)
        assert got is not None and (got.name, got.ident) == (record.name, record.ident) and got.same_content(record)


async def test_a_restart_through_workers_reads_the_files_an_interrupted_delete_puts_back_while_they_stat(
    sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stat walk starts once the snapshot is decoded, before the folder's listing is back and so
    # before the crash tidy-up puts held files back: a file the snapshot holds may be stat-ed gone,
    # or changed (a link keeps the inode, not the ctime), yet is served as put back.
    from sessiond.live import store as store_mod

    monkeypatch.setattr(store_mod, "BIG_SNAPSHOT_BYTES", 0)
    monkeypatch.setattr(store_mod, "STAT_CHUNK", 7)
    snap = tmp_path / "snap"
    for i in range(40):
        age(write_atomic(sessions, f"r:{i:02d}"))
    await scanned(sessions, snap)
    for i in (5, 33):  # deleted through sessiond when it crashed: renamed out of the way, not unlinked
        os.rename(sessions / f"r_{i:02d}.json", sessions / f".sessiond-delete.0123abc{i % 10}.r_{i:02d}.json.tmp")
    (sessions / ".sessiond-delete.89abcdef.tmp").write_bytes(orjson.dumps(session_doc("new:1", messages=3)))
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    fresh = open_store(sessions)
    await fresh.scan()
    assert len(store.index) == len(fresh.index) == 41
    for record in fresh.index.records():
        got = store.index.get(record.key)
        assert got is not None and (got.name, got.ident) == (record.name, record.ident) and got.same_content(record)
    assert not [p.name for p in sessions.iterdir() if p.name.startswith(".")]


async def test_a_snapshot_whose_names_read_but_whose_checksum_fails_means_a_full_scan(
    sessions: Path, tmp_path: Path, big: None
) -> None:
    # The worker that lists a big folder reads the snapshot's names without the checksum (the daemon checks
    # it): when the daemon then refuses the snapshot, every file is read, the new ones and the others.
    snap = tmp_path / "snap"
    for i in range(5):
        age(write_atomic(sessions, f"c:{i}"))
    await scanned(sessions, snap)
    age(write_atomic(sessions, "c:new"))
    data = bytearray(snap.read_bytes())
    data[-3] ^= 0xFF  # in the last block (odd): the names still read
    snap.write_bytes(bytes(data))
    assert snapshot.names_of(snap) is not None and snapshot.load(snap, str(sessions)) is None
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    assert store.last_scan_counts == (6, 0) and len(store.index) == 6


async def test_a_file_put_back_by_the_crash_tidy_up_is_read_once_and_claims_its_key_once(
    sessions: Path, tmp_path: Path, big: None
) -> None:
    # A crash between "renamed out of the way" and "unlinked" of a delete: the first scan puts the file back.
    # When the snapshot holds it, it is both a file the snapshot knows (stat-ed, changed: its ctime moved)
    # and a file put back: read once, or the index takes it for two files claiming one key.
    snap = tmp_path / "snap"
    for key in ("kept:1", "kept:2", "other:1"):
        age(write_atomic(sessions, key))
    await scanned(sessions, snap)
    os.rename(sessions / "kept_1.json", sessions / ".sessiond-delete.0123abcd.kept_1.json.tmp")
    (sessions / ".sessiond-delete.89abcdef.tmp").write_bytes(orjson.dumps(session_doc("new:1", messages=3)))
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    assert list(store.index.keys()) == ["kept:1", "kept:2", "new:1", "other:1"]
    assert store.index.collision_count == 0 and store.index.collisions() == {}
    assert store.last_scan_counts == (2, 2)


async def test_a_listing_made_against_another_snapshot_than_the_one_decoded_is_not_trusted(
    sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker lists a big folder against the names it reads from the snapshot file; the daemon decodes
    # the file too. Were a save to replace the file in between (a rescan), the worker's "new" names would
    # be relative to another snapshot: a file that snapshot held and the decoded one does not would be
    # neither new nor stat-ed, so never indexed. The checksums must agree, or the daemon lists again.
    import concurrent.futures

    from sessiond.live import store as store_mod

    snap = tmp_path / "snap"
    for i in range(4):
        age(write_atomic(sessions, f"s:{i}"))
    await scanned(sessions, snap)
    age(write_atomic(sessions, "s:late"))  # not in the snapshot decoded below, but in the one the worker "read"
    held = {f"s_{i}.json" for i in range(4)} | {"s_late.json"}
    monkeypatch.setattr(store_mod, "BIG_SNAPSHOT_BYTES", 0)
    # Threads stand in for the worker processes, so that the worker's read of the file can be the other one.
    monkeypatch.setattr(store_mod, "_scan_pool", lambda: concurrent.futures.ThreadPoolExecutor(2))
    monkeypatch.setattr(snapshot, "names_of", lambda path: ("another snapshot's checksum", held))
    store = open_store(sessions, snapshot_path=snap)
    await store.scan()
    assert "s:late" in store.index and len(store.index) == 5
    assert store.last_scan_counts == (1, 4)


def test_the_table_a_save_reads_on_its_thread_is_the_index_at_the_copy_whatever_changes_meanwhile(
    tmp_path: Path,
) -> None:
    from sessiond.core.index import SessionIndex

    index = SessionIndex()
    stat = FileStat(10, 1, 1, 1)
    index.load([(f"f{i:03d}.json", SessionRecord(f"k{i:03d}", f"f{i:03d}.json", 1, 1.0, 2.0, stat)) for i in range(100)])
    index.set_file("dup.json", SessionRecord("k050", "dup.json", 1, 1.0, 1.0, stat))  # older: f050 stays served
    read = index.table_reader()  # on the loop; what follows happens before the thread reads
    index.set_file("f010.json", None)  # gone
    index.set_file("f020.json", SessionRecord("k020", "f020.json", 7, 1.0, 3.0, FileStat(11, 2, 1, 1)))  # rewritten
    index.set_file("dup.json", SessionRecord("k050", "dup.json", 1, 1.0, 9.0, stat))  # now the served one
    index.set_file("f999.json", SessionRecord("k999", "f999.json", 1, 1.0, 2.0, stat))  # new since the copy
    table = read()
    names = table.names
    assert len(names) == len(set(names)) == 101 and "f010.json" in names and "f999.json" not in names
    assert table.numbers["count"][names.index("f020.json")] == 1  # its row, as it was at the copy
    assert table.numbers["updated"][names.index("dup.json")] == 1.0
    assert {"dup.json", "f050.json"} <= set(names)  # both claimants of k050, once each
    path = tmp_path / "index.snapshot"
    assert snapshot.save(path, "/f", table) == 101
    columns = snapshot.load(path, "/f")
    assert columns is not None and columns.names == names
