"""A file's identity cannot be faked by `touch`: restarts from the snapshot and DELETE see through it.

While the daemon is down, a file is rewritten in place keeping its size, mtime
and inode (an editor, `rsync -t`, `cp -p`, `touch -r`), or replaced by a new
file on the same inode with the mtime copied. The change time moves anyway.
Real files, the real daemon, real restarts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support import Daemon

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow

OLD_NS = 1_600_000_000 * 10**9  # long before any snapshot: outside every "too recent to trust" window


def session_bytes(key: str, messages: int, width: int) -> bytes:
    """A session document padded to exactly *width* bytes."""
    doc = {
        "key": key,
        "messages": [{"role": "user", "content": "x"}] * messages,
        "summary": "",
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    raw = json.dumps(doc).encode()
    doc["summary"] = "s" * (width - len(raw))
    raw = json.dumps(doc).encode()
    assert len(raw) == width
    return raw


def run_once(workspace: Path, state: Path) -> None:
    """Start the daemon, let it index and save its snapshot, stop it."""
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        assert d.stop() == 0
    assert (state / "index.snapshot").exists()


def listing(d: Daemon) -> list[str]:
    status, body = d.get("/api/v1/sessions")
    assert status == 200, body
    return json.loads(body)["sessions"]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


def test_in_place_rewrite_keeping_size_mtime_and_inode_is_seen_after_a_restart(workspace: Path, state: Path) -> None:
    path = workspace / "sessions" / "shared.json"
    path.write_bytes(session_bytes("before:rewrite", 1, 400))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    run_once(workspace, state)
    inode = path.stat().st_ino
    with path.open("r+b") as fh:  # an editor saving in place, then `touch -r` putting the time back
        fh.write(session_bytes("after:rewrite", 3, 400))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (inode, 400, OLD_NS)
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        assert listing(d) == ["after:rewrite"]
        assert json.loads(d.get("/api/v1/sessions/after:rewrite")[1])["message_count"] == 3
        assert d.get("/api/v1/sessions/before:rewrite")[0] == 404


def test_delete_of_the_old_key_never_unlinks_the_file_that_now_holds_another_session(workspace: Path, state: Path) -> None:
    path = workspace / "sessions" / "shared.json"
    path.write_bytes(session_bytes("mine", 1, 300))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    run_once(workspace, state)
    with path.open("r+b") as fh:
        fh.write(session_bytes("theirs", 2, 300))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        status, _, body = d.request("DELETE", "/api/v1/sessions/mine")
        assert status == 404, body
        assert path.exists() and json.loads(path.read_bytes())["key"] == "theirs"
        assert listing(d) == ["theirs"]


def test_a_new_file_on_a_reused_inode_with_the_mtime_copied_is_seen_after_a_restart(workspace: Path, state: Path) -> None:
    folder = workspace / "sessions"
    path = folder / "reused.json"
    path.write_bytes(session_bytes("first:owner", 1, 350))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    run_once(workspace, state)
    inode = path.stat().st_ino
    path.unlink()
    # File systems hand a freed inode number out again; other numbers freed meanwhile
    # may come first, so hold on to those until ours comes back.
    taken = []
    for i in range(500):
        fresh = folder / f"fresh{i}.tmp"
        fresh.write_bytes(session_bytes("second:owner", 2, 350))
        if fresh.stat().st_ino == inode:
            break
        taken.append(fresh)
    else:
        pytest.skip("this file system did not reuse the inode number")
    for other in taken:
        other.unlink()
    os.utime(fresh, ns=(OLD_NS, OLD_NS))
    os.rename(fresh, path)  # as the agent writes: temp file, then rename
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        assert listing(d) == ["second:owner"]
        assert d.request("DELETE", "/api/v1/sessions/first:owner")[0] == 404
        assert json.loads(path.read_bytes())["key"] == "second:owner"
