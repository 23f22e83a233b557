"""The search index's worker process, in a real daemon: killed mid-build, and at the stop.

The full pass reads, parses and writes files in a worker process (sessiond/live/search.py,
`_ParseWorker`). Each file's preparation, or each row's write inside the worker's
transaction, is made slow (a start-up hook on PYTHONPATH, imported by the daemon and
by its worker alike: only time is faked) so that a batch is in the worker long enough
to kill it, or to stop the daemon, while it works. The hook also notes which process
wrote each row (`SearchDB.apply`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from sessiond.live import search as search_mod
from tests.support import Daemon, alive, children, cmdline, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 1_000
SLOW_PARSE = """
import multiprocessing
import os
import time
import sessiond.core.search_files as search_files

_SECONDS = float(os.environ["TEST_PARSE_SECONDS"])
_DAEMON_SECONDS = float(os.environ.get("TEST_DAEMON_PARSE_SECONDS", "0"))  # more, in the daemon only

_prepare = search_files.prepare


def _slow(*args, **kw):
    time.sleep(_SECONDS)
    if _DAEMON_SECONDS and multiprocessing.current_process().name == "MainProcess":
        time.sleep(_DAEMON_SECONDS)
    return _prepare(*args, **kw)


search_files.prepare = _slow

import multiprocessing
from sessiond.core import search_db

_LOG = os.environ.get("TEST_APPLY_LOG")
_apply = search_db.SearchDB.apply


def _noted(self, upserts, removals, dictionary=None):
    upserts = list(upserts)
    if _LOG:
        with open(_LOG, "a") as out:
            out.write("".join(f"{os.getpid()} {doc.name}\\n" for doc in upserts))
    return _apply(self, upserts, removals, dictionary)


search_db.SearchDB.apply = _noted

_WRITE_SECONDS = float(os.environ.get("TEST_WRITE_SECONDS", "0"))
_MARK = os.environ.get("TEST_WRITING_MARK")
_rows = 0
_marked = False


class _SlowDoc(search_db.Doc):
    # A row's identity is read once, just before its INSERT inside the transaction: slow there, in the worker only.
    __slots__ = ()

    @property
    def ident(self):
        global _rows, _marked
        # The first worker that writes is slow (to be killed or stopped inside its transaction); a later one is not.
        if _WRITE_SECONDS and multiprocessing.current_process().name != "MainProcess" and (_marked or not os.path.exists(_MARK)):
            _rows += 1
            if _rows == 10:  # nine rows inserted, not committed
                with open(_MARK, "a") as out:
                    out.write(f"{os.getpid()}\\n")
                _marked = True
            time.sleep(_WRITE_SECONDS)
        return tuple.__getitem__(self, 2)


search_files.Doc = _SlowDoc
"""


def _fill(sessions: Path, count: int) -> None:
    for i in range(count):
        doc = {
            "key": f"s:{i}",
            "messages": [{"role": "user", "content": f"unique{i} shared words"}, {"role": "assistant", "content": "ok"}],
            "summary": None,
            "created_at": 1_700_000_000.0,
            "updated_at": 1_700_000_000.0 + i,
        }
        (sessions / f"s{i:06d}.json").write_bytes(orjson.dumps(doc))


def _start(workspace: Path, tmp_path: Path, seconds_a_file: float, **more: str) -> Daemon:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW_PARSE)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    env = {"SESSIOND_STATE_DIR": str(state), "PYTHONPATH": str(hook), "SESSIOND_RATE_LIMIT_PER_IP": "0", **more}
    env["TEST_PARSE_SECONDS"] = str(seconds_a_file)
    daemon = Daemon(workspace, env={**env, "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"})
    daemon.wait_ready(timeout=60)
    return daemon


def _workers(daemon: Daemon) -> list[int]:
    """The search worker: the child of the daemon's fork server (no scan pool below 20,000 files)."""
    servers = [child for child in children(daemon.proc.pid) if "forkserver" in cmdline(child)]
    return [worker for server in servers for worker in children(server)]


def _nice(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except FileNotFoundError:
        return -100  # gone meanwhile: nicer than nothing


def _stop_within_3s(daemon: Daemon, worker: int) -> None:
    """SIGTERM: the daemon exits cleanly within 3 s, its worker ends with it, and nothing is called a failure."""
    sent = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=30)
    took = time.monotonic() - sent
    output = daemon.output()
    assert code == 0 and took < 3.0, (code, took, output[-3000:])
    wait_for(lambda: not alive(worker), 3, "the worker's end")
    assert "parse worker failed" not in output and "Traceback" not in output, output[-3000:]


def _search(daemon: Daemon) -> dict[str, Any]:
    status, body = daemon.get("/api/v1/health")
    assert status == 200, body
    figures: dict[str, Any] = json.loads(body)["search"]
    return figures


def _keys(daemon: Daemon, q: str) -> list[str]:
    status, body = daemon.get(f"/api/v1/search?q={q}&limit=100")
    assert status == 200, body
    return [r["key"] for r in json.loads(body)["results"]]


def test_a_worker_killed_mid_build_loses_nothing_and_the_build_completes(workspace: Path, tmp_path: Path) -> None:
    _fill(workspace / "sessions", SESSIONS)
    with _start(workspace, tmp_path, 0.004) as daemon:
        # It takes the CPU the daemon's requests leave: nicer than the daemon once its start-up ran
        # (found as soon as it exists, it may not have run it yet).
        (worker,) = wait_for(
            lambda: [w for w in _workers(daemon) if _nice(w) > _nice(daemon.proc.pid)],
            30,
            "a search worker nicer than the daemon",
        )
        assert worker != daemon.proc.pid
        assert not _search(daemon)["complete"]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: _search(daemon)["complete"], 120, "the complete index")
        figures = _search(daemon)
        assert figures["indexed"] == figures["total"] == SESSIONS
        for i in (0, 1, 517, SESSIONS - 1):
            assert _keys(daemon, f"unique{i}") == [f"s:{i}"]
        status, body = daemon.get("/api/v1/search?q=shared&limit=1")
        assert status == 200 and json.loads(body)["results"]
        # Every file is in the index once: the killed worker's batch was not lost, nor written twice.
        status, body = daemon.get("/metrics")
        assert status == 200 and f"sessiond_search_rows {float(SESSIONS)}" in body.decode(), body.decode()[-3000:]
        assert daemon.stop() == 0
        output = daemon.output()
    assert "the parse worker failed (it died); its batch is parsed in the daemon" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_a_sigterm_while_the_worker_parses_stops_the_daemon_and_the_worker_within_3s(workspace: Path, tmp_path: Path) -> None:
    _fill(workspace / "sessions", SESSIONS)
    with _start(workspace, tmp_path, 0.02) as daemon:
        (worker,) = wait_for(lambda: _workers(daemon), 30, "a search worker")
        time.sleep(0.3)  # well inside a batch: 256 files take 5 s in the worker
        assert not _search(daemon)["complete"] and alive(worker)
        _stop_within_3s(daemon, worker)


def test_a_daemon_killed_outright_leaves_no_worker_behind(workspace: Path, tmp_path: Path) -> None:
    # SIGKILL (the out-of-memory killer; a test's clean-up): no stop runs, yet the worker must not live on.
    _fill(workspace / "sessions", SESSIONS)
    with _start(workspace, tmp_path, 0.02) as daemon:
        (worker,) = wait_for(lambda: _workers(daemon), 30, "a search worker")
        daemon.proc.kill()
        daemon.proc.wait()
    wait_for(lambda: not alive(worker), 10, "the worker's end")


def _metric(daemon: Daemon, name: str) -> float:
    status, body = daemon.get("/metrics")
    assert status == 200
    (line,) = [line for line in body.decode().splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def _file_rows(tmp_path: Path) -> set[str]:
    """The names the index file holds, after a check of the whole file (the daemon stopped)."""
    con = sqlite3.connect(tmp_path / "state" / "search.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {name for (name,) in con.execute("SELECT name FROM docs")}
    finally:
        con.close()


def test_the_worker_process_writes_the_full_pass_into_the_file_and_a_restart_keeps_it(workspace: Path, tmp_path: Path) -> None:
    _fill(workspace / "sessions", SESSIONS)
    log_path = tmp_path / "applied"
    with _start(workspace, tmp_path, 0, TEST_APPLY_LOG=str(log_path)) as daemon:
        wait_for(lambda: _search(daemon)["complete"], 120, "the complete index")
        assert _keys(daemon, "unique517") == ["s:517"]
        daemon_pid = daemon.proc.pid
        assert daemon.stop() == 0
    writers: dict[str, set[int]] = {}
    for line in log_path.read_text().splitlines():
        pid, name = line.split(" ", 1)
        writers.setdefault(name, set()).add(int(pid))
    # Every row of the full pass was written by another process (the worker), none by the daemon's writer thread.
    assert sorted(writers) == sorted(p.name for p in (workspace / "sessions").iterdir())
    assert all(daemon_pid not in pids for pids in writers.values()), {n: p for n, p in writers.items() if daemon_pid in p}
    assert _file_rows(tmp_path) == set(writers)
    log_path.unlink()
    with _start(workspace, tmp_path, 0, TEST_APPLY_LOG=str(log_path)) as daemon:
        wait_for(lambda: _search(daemon)["complete"], 60, "the complete index")
        assert _keys(daemon, "unique517") == ["s:517"] and _keys(daemon, f"unique{SESSIONS - 1}") == [f"s:{SESSIONS - 1}"]
        assert _metric(daemon, "sessiond_search_files_read_total") == 0  # all of it kept from the worker's commits
        assert _metric(daemon, "sessiond_search_rows") == SESSIONS
        assert daemon.stop() == 0
    assert not log_path.exists()


def test_a_worker_killed_inside_its_write_transaction_leaves_the_file_whole_and_the_batch_is_redone(
    workspace: Path, tmp_path: Path
) -> None:
    _fill(workspace / "sessions", SESSIONS)
    mark = tmp_path / "writing"
    with _start(workspace, tmp_path, 0, TEST_WRITE_SECONDS="0.004", TEST_WRITING_MARK=str(mark)) as daemon:
        # The worker has inserted nine rows of its first batch and not committed.
        (worker,) = wait_for(lambda: [int(p) for p in mark.read_text().split()] if mark.exists() else [], 60, "a write")
        assert worker != daemon.proc.pid and worker in _workers(daemon)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: _search(daemon)["complete"], 120, "the complete index")
        assert _metric(daemon, "sessiond_search_rows") == SESSIONS
        for i in (0, 1, 517, SESSIONS - 1):
            assert _keys(daemon, f"unique{i}") == [f"s:{i}"]
        assert daemon.stop() == 0
        output = daemon.output()
    assert "the parse worker failed (it died); its batch is parsed in the daemon" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # The file equals the disk: every session once, nothing of the killed transaction half there.
    assert _file_rows(tmp_path) == {p.name for p in (workspace / "sessions").iterdir()}


def test_a_sigterm_while_the_worker_writes_stops_within_3s_and_leaves_the_file_whole(workspace: Path, tmp_path: Path) -> None:
    _fill(workspace / "sessions", SESSIONS)
    mark = tmp_path / "writing"
    with _start(workspace, tmp_path, 0, TEST_WRITE_SECONDS="0.02", TEST_WRITING_MARK=str(mark)) as daemon:
        (worker,) = wait_for(lambda: [int(p) for p in mark.read_text().split()] if mark.exists() else [], 60, "a write")
        assert alive(worker) and not _search(daemon)["complete"]
        _stop_within_3s(daemon, worker)
    assert len(_file_rows(tmp_path)) < SESSIONS  # the batch being written was rolled back: the next start does it


def test_after_a_worker_dies_the_batches_it_held_are_written_before_any_later_one(workspace: Path, tmp_path: Path) -> None:
    # The killed worker held two batches; the daemon writes both again, slowly here, while a new
    # worker (fast) has the next: it must not write that one before them (the order taken, and the counts).
    _fill(workspace / "sessions", SESSIONS)
    mark, log_path = tmp_path / "writing", tmp_path / "applied"
    more = {"TEST_WRITE_SECONDS": "0.004", "TEST_WRITING_MARK": str(mark), "TEST_DAEMON_PARSE_SECONDS": "0.004"}
    with _start(workspace, tmp_path, 0, TEST_APPLY_LOG=str(log_path), **more) as daemon:
        (worker,) = wait_for(lambda: [int(p) for p in mark.read_text().split()] if mark.exists() else [], 60, "a write")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: _search(daemon)["complete"], 120, "the complete index")
        assert _metric(daemon, "sessiond_search_rows") == SESSIONS
        assert daemon.stop() == 0
    assert _file_rows(tmp_path) == {p.name for p in (workspace / "sessions").iterdir()}
    # Newest first: the last write of each file comes in the order of the names, highest first.
    last: dict[str, int] = {}
    for position, line in enumerate(log_path.read_text().splitlines()):
        last[line.split(" ", 1)[1]] = position
    order = sorted(last, key=last.__getitem__)
    assert order == sorted(last, reverse=True), [n for n, m in zip(order, sorted(last, reverse=True), strict=True) if n != m][:5]


def test_closing_a_worker_killed_halfway_through_sending_its_result_does_not_hang() -> None:
    # A worker killed while it sends a big result (a batch's texts, in memory mode) leaves half a
    # message in the pool's result pipe; the pool's own thread then waits for the rest for ever, and
    # the daemon's stop with it (seen once at 1M: SIGTERM, and the daemon never exited). Here the
    # half message is written into the real pool's pipe by hand, beside its real, killed worker.
    worker = search_mod._ParseWorker()
    parsing = worker.submit(time.sleep, (60,), 60)
    assert parsing is not None
    wait_for(lambda: worker.pids, 10, "the worker")
    pool = parsing.pool
    frame = struct.pack("!i", 1 << 20) + b"half"  # the header of 1 MiB, then only 4 bytes of it
    os.write(pool._result_queue._writer.fileno(), frame)  # type: ignore[attr-defined]
    closing = threading.Thread(target=worker.close, args=(True,), daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "closing the worker hung on the half-sent result"
    assert not any(alive(pid) for pid in worker.pids)


def test_the_full_pass_yields_to_a_stream_of_requests_and_a_live_write_does_not_wait(workspace: Path, tmp_path: Path) -> None:
    # The build, even in its worker at nice 10, cost a third of the list and detail answers on two cores
    # (bench/search_live.py): while requests keep the loop busy it waits BUSY_PAUSE before each batch of its full
    # pass while the loop's thread is busy, so it takes about a tenth of the time; a live write's batch never
    # waits, and the build runs at full pace once the requests stop.
    count = 10_000
    _fill(workspace / "sessions", count)
    with _start(workspace, tmp_path, 0) as daemon:
        stop = threading.Event()
        answered = [0]

        def load() -> None:
            while not stop.is_set():
                status, _ = daemon.get("/api/v1/sessions/s:1")
                assert status == 200
                answered[0] += 1

        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            started = time.monotonic()
            time.sleep(1.0)
            doc = {"key": "live:1", "messages": [{"role": "user", "content": "zebracorn arrives"}]}
            (workspace / "sessions" / "live_1.json").write_bytes(
                orjson.dumps({**doc, "summary": None, "created_at": 1.0, "updated_at": 2.0})
            )
            written = time.monotonic()
            wait_for(lambda: _keys(daemon, "zebracorn") == ["live:1"], 10, "the live write found")
            found = time.monotonic() - written
            time.sleep(max(0.0, started + 4.0 - time.monotonic()))
            during = _search(daemon)
            rate = answered[0] / (time.monotonic() - started)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert rate > 200, rate  # the load was a stream that kept the loop busy, not a trickle
        assert found < 2.0, found
        # 4 s under load: about 4 batches of 256 (and one or two before the load was seen); without the pause
        # (measured) the build is complete by then.
        assert not during["complete"] and during["indexed"] < count / 2, during
        assert _metric(daemon, "sessiond_search_build_paused_seconds_total") > 1.0
        wait_for(lambda: _search(daemon)["complete"], 60, "the build, once the requests stopped")
        assert _search(daemon)["indexed"] == count + 1
        assert _keys(daemon, "unique9999") == ["s:9999"]
