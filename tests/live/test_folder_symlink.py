"""The sessions folder must be a real directory: a symlink in its place is never followed.

Replaced at run time or there from the start, a symlink (or a file) makes the
folder "unusable": /health and every API route answer 503 with the reason, the
index is empty, and nothing in the link's target is listed, read or deleted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.support import AUTH, Daemon, eventually, session_doc, store_of, write_atomic


async def status_of(client: TestClient, path: str, token: bool = True) -> tuple[int, dict]:
    resp = await client.get(path, headers=AUTH if token else {})
    return resp.status, await resp.json()


def outside_folder(tmp_path: Path) -> Path:
    """A folder outside the workspace holding a session of its own."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "outside_1.json").write_text(json.dumps(session_doc("outside:1")))
    return outside


async def test_sessions_replaced_by_a_symlink_is_unusable_and_never_followed(
    client: TestClient, sessions: Path, tmp_path: Path
) -> None:
    write_atomic(sessions, "inside:1")
    await eventually(lambda: "inside:1" in store_of(client).index)
    outside = outside_folder(tmp_path)
    sessions.rename(tmp_path / "old-sessions")
    sessions.symlink_to(outside, target_is_directory=True)

    async def refused() -> bool:
        status, body = await status_of(client, "/health", token=False)
        return status == 503 and "is a symlink" in body.get("reason", "")

    await eventually(refused, timeout=3)
    for path in ("/api/v1/sessions", "/api/v1/sessions/outside:1", "/api/v1/sessions?prefix=out", "/api/v1/export?key=outside:1"):
        status, body = await status_of(client, path)
        assert status == 503 and "unusable" in body["detail"], (path, body)
        assert str(outside) not in body["detail"]
    deleted = await client.delete("/api/v1/sessions/outside:1", headers=AUTH)
    assert deleted.status == 503
    assert (outside / "outside_1.json").exists()
    assert len(store_of(client).index) == 0
    # A real directory again: served again.
    sessions.unlink()
    sessions.mkdir()
    write_atomic(sessions, "back:1")
    await eventually(lambda: "back:1" in store_of(client).index, timeout=3)
    assert (await status_of(client, "/api/v1/sessions"))[1]["sessions"] == ["back:1"]


async def test_a_detail_asked_the_moment_the_folder_becomes_a_symlink_never_answers_the_targets_file(
    client: TestClient, sessions: Path, tmp_path: Path
) -> None:
    # The detail's freshness check is one lstat by path, which does pass through a symlink; what it
    # finds there is another file, never the recorded one, so the answer goes through the verified folder.
    write_atomic(sessions, "same:1", messages=3)
    await eventually(lambda: "same:1" in store_of(client).index)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_atomic(outside, "same:1", messages=7)  # the same file name, other contents
    sessions.rename(tmp_path / "old-sessions")
    sessions.symlink_to(outside, target_is_directory=True)
    for _ in range(20):
        status, body = await status_of(client, "/api/v1/sessions/same:1")
        assert status in (200, 404, 503), body
        assert body.get("message_count") != 7, body
    assert (outside / "same_1.json").exists()


@pytest.mark.slow
def test_a_symlink_there_from_the_start_is_never_followed(workspace: Path, tmp_path: Path) -> None:
    outside = outside_folder(tmp_path)
    (workspace / "sessions").rmdir()
    (workspace / "sessions").symlink_to(outside, target_is_directory=True)
    with Daemon(workspace) as d:
        seen = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                seen = d.get("/health", token=None, timeout=1)
            except OSError:
                time.sleep(0.05)
                continue
            if seen[0] == 503 and b"is a symlink" in seen[1]:
                break
            time.sleep(0.05)
        assert seen is not None and seen[0] == 503 and b"is a symlink" in seen[1], d.output()
        status, body = d.get("/api/v1/sessions")
        assert status == 503 and b"outside:1" not in body
        status, _, body = d.request("DELETE", "/api/v1/sessions/outside:1")
        assert status == 503
        assert d.stop() == 0
    assert sorted(os.listdir(outside)) == ["outside_1.json"]
    assert (workspace / "sessions").is_symlink()
