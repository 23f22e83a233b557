"""The first scan's process pool (a folder of 20,000 files or more), in a real daemon killed outright."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import orjson
import pytest

from sessiond.live.store import PROCESS_POOL_THRESHOLD
from tests.support import Daemon, alive, children, cmdline, wait_for

pytestmark = pytest.mark.slow

# Each chunk of the scan made slow (a start-up hook on PYTHONPATH, imported by the daemon and
# its workers alike: only time is faked), so the scan is still running when it is killed.
SLOW_SCAN = """
import time
import sessiond.live.store as store

_read_sheet = store._read_sheet


def _slow(*args, **kw):
    time.sleep(2.0)
    return _read_sheet(*args, **kw)


store._read_sheet = _slow
"""


def test_a_daemon_killed_outright_during_its_first_scan_leaves_no_scan_worker_behind(workspace: Path, tmp_path: Path) -> None:
    # SIGKILL (the out-of-memory killer, systemd's final kill): no stop runs, yet the pool's
    # workers, which wait for work on a pipe they hold both ends of, must not live on.
    sessions = workspace / "sessions"
    doc = orjson.dumps({"key": "k", "messages": [], "created_at": 1.0, "updated_at": 1.0})
    for i in range(PROCESS_POOL_THRESHOLD):
        (sessions / f"s{i:06d}.json").write_bytes(doc.replace(b'"k"', f'"s:{i}"'.encode()))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_SCAN)
    daemon = Daemon(workspace, env={"PYTHONPATH": str(hook), "SESSIOND_SEARCH": "false"})
    try:

        def scan_workers() -> list[int]:
            servers = [child for child in children(daemon.proc.pid) if "forkserver" in cmdline(child)]
            return [worker for server in servers for worker in children(server)]

        workers = wait_for(scan_workers, 30, "the scan's workers")
    finally:
        daemon.proc.kill()
        daemon.proc.wait()
        daemon.log.close()
    try:
        wait_for(lambda: not any(alive(pid) for pid in workers), 10, "the end of every scan worker")
    finally:
        for pid in workers:  # what is left of a failure is not left to the next test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
