"""A snapshot is data, not trust: verdicts are re-checked, bad snapshots ignored, leftovers cleaned.

Real daemons and real restarts; the permission case runs the daemon as an
unprivileged user (setpriv), so the kernel, not a mock, refuses the read.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessiond.core import snapshot
from tests.support import Daemon, as_nobody, session_doc

# Each test starts the real daemon as a process: `make test-quick` leaves them out.
pytestmark = pytest.mark.slow

OLD_NS = 1_600_000_000 * 10**9
GROUP = 4242  # a group the daemon is given, or not


def listing(d: Daemon) -> list[str]:
    status, body = d.get("/api/v1/sessions")
    assert status == 200, body
    return json.loads(body)["sessions"]


def write_old(path: Path, doc: dict[str, object]) -> None:
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(OLD_NS, OLD_NS))


def test_a_file_too_big_is_served_once_the_limit_is_raised(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    big = session_doc("big:1", summary="x" * 3000)
    write_old(workspace / "sessions" / "big.json", big)
    env = {"SESSIOND_STATE_DIR": str(state)}
    with Daemon(workspace, env={**env, "SESSIOND_MAX_FILE_BYTES": "1024"}) as d:
        d.wait_ready()
        assert listing(d) == []
        assert d.stop() == 0
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert listing(d) == ["big:1"]


def test_a_file_unreadable_at_first_is_served_once_permission_is_granted(open_workspace: Path) -> None:
    workspace, state = open_workspace / "workspace", open_workspace / "state"
    locked = workspace / "sessions" / "locked.json"
    write_old(locked, session_doc("locked:1"))
    os.chown(locked, 0, GROUP)
    locked.chmod(0o640)
    write_old(workspace / "sessions" / "open.json", session_doc("open:1"))
    env = {"SESSIOND_STATE_DIR": str(state)}
    with Daemon(workspace, env=env, prefix=as_nobody()) as d:
        d.wait_ready()
        assert listing(d) == ["open:1"]
        health = json.loads(d.get("/api/v1/health")[1])
        assert health["invalid_files"] == 1
        assert d.stop() == 0
    # The operator adds the daemon's user to the file's group: nothing about the file changes.
    with Daemon(workspace, env=env, prefix=as_nobody(GROUP)) as d:
        d.wait_ready()
        assert listing(d) == ["locked:1", "open:1"]


def test_a_snapshot_with_wrong_types_is_ignored_and_everything_read(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for i in range(3):
        write_old(workspace / "sessions" / f"s{i}.json", session_doc(f"s:{i}", messages=i))
    env = {"SESSIOND_STATE_DIR": str(state)}
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert d.stop() == 0
    snap = state / "index.snapshot"
    # The right format, folder and checksum, but values out of range: a count below
    # zero and a timestamp that is not a number.
    tamper(snap, "count", lambda column: column.__setitem__(0, -1))
    with Daemon(workspace, env=env) as d:
        d.wait_ready(timeout=10)
        assert listing(d) == ["s:0", "s:1", "s:2"]
        assert "ignoring malformed snapshot" in d.output()
        assert d.stop() == 0
    tamper(snap, "updated", lambda column: column.__setitem__(1, math.nan))
    with Daemon(workspace, env=env) as d:
        d.wait_ready(timeout=10)
        assert listing(d) == ["s:0", "s:1", "s:2"]
        for i in range(3):
            status, body = d.get(f"/api/v1/sessions/s:{i}")
            assert status == 200 and json.loads(body)["message_count"] == i
        assert "ignoring malformed snapshot" in d.output()


def tamper(snap: Path, field: str, change: Callable[[array.array[Any]], None]) -> None:
    """Change one numeric column of a snapshot and write it back with a valid checksum."""
    head, _, body = snap.read_bytes().partition(b"\n")
    header = json.loads(head)
    blocks, start = {}, 0
    for name, length in zip(snapshot.BLOCKS, header["blocks"], strict=True):
        blocks[name], start = body[start : start + length], start + length
    column = array.array(snapshot.NUMBERS[field])
    column.frombytes(blocks[field])
    change(column)
    blocks[field] = column.tobytes()
    body = b"".join(blocks[name] for name in snapshot.BLOCKS)
    header["checksum"] = hashlib.blake2b(body, digest_size=16).hexdigest()
    snap.write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_a_snapshot_altered_on_disk_is_ignored(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    write_old(workspace / "sessions" / "s0.json", session_doc("s:0", messages=4))
    env = {"SESSIOND_STATE_DIR": str(state)}
    with Daemon(workspace, env=env) as d:
        d.wait_ready()
        assert d.stop() == 0
    snap = state / "index.snapshot"
    data = bytearray(snap.read_bytes())
    data[-30] ^= 0x01  # one bit of the body flipped, the header left as it was
    snap.write_bytes(bytes(data))
    with Daemon(workspace, env=env) as d:
        d.wait_ready(timeout=10)
        assert json.loads(d.get("/api/v1/sessions/s:0")[1])["message_count"] == 4
        assert "checksum mismatch" in d.output()


def test_the_temp_file_of_an_interrupted_save_is_removed_at_the_next_start(workspace: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    leftover = state / "index.snapshot.4242.123456789.tmp"  # what kill -9 during a save leaves
    older = state / "index.snapshot.json"  # the format an earlier version wrote
    leftover.write_bytes(b'{"format": "half a snapsh')
    older.write_bytes(b'{"format": "sessiond-snapshot/2", "records": []}')
    unrelated = state / "notes.tmp"
    unrelated.write_text("not ours")
    with Daemon(workspace, env={"SESSIOND_STATE_DIR": str(state)}) as d:
        d.wait_ready()
        assert not leftover.exists() and not older.exists()
        assert d.stop() == 0
    assert unrelated.exists() and (state / "index.snapshot").exists()
