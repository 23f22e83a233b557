"""A file that never stops growing is never read past max_file_bytes, and holds nothing up.

A writer appends to one session file as fast as it can, to well past the limit,
while the agent keeps saving other sessions and a client deletes one: new
sessions stay visible at once, the DELETE answers at once, the daemon's memory
stays small, and the file is reported as too big as soon as the writer stops.
Real daemon, real files (on /dev/shm, so the writer is fast).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Daemon, session_doc, write_atomic

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow

MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most memory the process ever had resident."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def shm_workspace() -> Iterator[Path]:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("needs /dev/shm")
    root = Path(tempfile.mkdtemp(prefix="sessiond-grow-", dir="/dev/shm"))
    try:
        (root / "workspace" / "sessions").mkdir(parents=True)
        yield root / "workspace"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_file_that_never_stops_growing_is_read_within_bounds(shm_workspace: Path) -> None:
    folder = shm_workspace / "sessions"
    write_atomic(folder, "victim:1")
    env = {"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}
    with Daemon(shm_workspace, env=env) as d:
        d.wait_ready()
        rss_ready = peak_rss_mb(d.proc.pid)
        stop = threading.Event()
        written = [0]

        def grow() -> None:
            # A valid session, then JSON whitespace without end: valid at every size.
            with open(folder / "grow.json", "wb", buffering=0) as fh:
                fh.write(json.dumps(session_doc("grow:1")).encode())
                block = b" " * MB
                while not stop.is_set() and written[0] < 1500 * MB:
                    fh.write(block)
                    written[0] += MB

        writer = threading.Thread(target=grow)
        writer.start()
        lags, delete_took = [], 0.0
        try:
            for i in range(10):
                write_atomic(folder, f"meanwhile:{i}")
                started = time.monotonic()
                while f"meanwhile:{i}" not in json.loads(d.get("/api/v1/sessions", timeout=30)[1])["sessions"]:
                    assert time.monotonic() - started < 5, "a new session stayed invisible"
                    time.sleep(0.005)
                lags.append(time.monotonic() - started)
                time.sleep(0.05)
            started = time.monotonic()
            status, _, _ = d.request("DELETE", "/api/v1/sessions/victim:1", timeout=30)
            delete_took = time.monotonic() - started
            assert status == 200
            # Well past the limit (max_file_bytes, 256 MB by default) before the writer stops:
            # on a busy machine the loop above can end while the file is still smaller.
            deadline = time.monotonic() + 60
            while written[0] < 320 * MB and writer.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            writer.join()
        assert written[0] >= 320 * MB, f"the writer only reached {written[0] // MB} MB"
        stopped = time.monotonic()
        deadline = stopped + 10
        while time.monotonic() < deadline:
            health = json.loads(d.get("/api/v1/health")[1])
            if health["invalid_files"] == 1:
                break
            time.sleep(0.05)
        reported_after = time.monotonic() - stopped
        peak = peak_rss_mb(d.proc.pid)
        print(
            f"\ngrew to {written[0] // MB} MB; new sessions listed within {max(lags) * 1000:.0f} ms, the DELETE "
            f"{delete_took * 1000:.0f} ms; reported {reported_after * 1000:.0f} ms after the writer stopped; "
            f"peak RSS {peak:.0f} MB (at ready {rss_ready:.0f} MB)"
        )
        assert health["invalid_files"] == 1, "the file was never reported as too big"
        assert "larger than max_file_bytes" in d.output()
        assert max(lags) < 1.0 and delete_took < 1.0
        assert peak < rss_ready + 50  # big files are read by a child, and only so far
        assert d.stop() == 0
