"""The search index's worker process, in a real daemon: killed mid-build, and at the stop.

The full pass reads and parses files in a worker process (sessiond/live/search.py,
`_ParseWorker`). Each file's preparation is made slow (a start-up hook on PYTHONPATH,
imported by the daemon and by its worker alike: only time is faked) so that a batch
is in the worker long enough to kill it, or to stop the daemon, while it works.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import Daemon, alive, children, cmdline, wait_for

pytestmark = pytest.mark.slow

SESSIONS = 1_000
SLOW_PARSE = """
import os
import time
import sessiond.core.search_files as search_files

_SECONDS = float(os.environ["TEST_PARSE_SECONDS"])

_prepare = search_files.prepare


def _slow(*args, **kw):
    time.sleep(_SECONDS)
    return _prepare(*args, **kw)


search_files.prepare = _slow
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


def _start(workspace: Path, tmp_path: Path, seconds_a_file: float) -> Daemon:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_PARSE)
    state = tmp_path / "state"
    state.mkdir()
    env = {"SESSIOND_STATE_DIR": str(state), "PYTHONPATH": str(hook), "SESSIOND_RATE_LIMIT_PER_IP": "0"}
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
        sent = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - sent
        output = daemon.output()
    assert code == 0 and took < 3.0, (code, took, output[-3000:])
    wait_for(lambda: not alive(worker), 3, "the worker's end")
    assert "parse worker failed" not in output and "Traceback" not in output, output[-3000:]


def test_a_daemon_killed_outright_leaves_no_worker_behind(workspace: Path, tmp_path: Path) -> None:
    # SIGKILL (the out-of-memory killer; a test's clean-up): no stop runs, yet the worker must not live on.
    _fill(workspace / "sessions", SESSIONS)
    with _start(workspace, tmp_path, 0.02) as daemon:
        (worker,) = wait_for(lambda: _workers(daemon), 30, "a search worker")
        daemon.proc.kill()
        daemon.proc.wait()
    wait_for(lambda: not alive(worker), 10, "the worker's end")
