"""A full disk never loses a session: DELETE completes or changes nothing, with or without the trash.

The workspace lives on a real 1 MiB tmpfs, filled to the last byte.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support import AUTH, eventually, fill_up, small_tmpfs, store_of, write_atomic


@pytest.fixture
def small_workspace(tmp_path: Path) -> Any:
    with small_tmpfs(tmp_path / "disk") as mount:
        workspace = mount / "workspace"
        (workspace / "sessions").mkdir(parents=True)
        write_atomic(workspace / "sessions", "keep:me", messages=3)
        yield workspace


async def start_on(start_client: Any, workspace: Path, **settings: Any) -> tuple[TestClient, Path, Path]:
    client = await start_client(workspace=str(workspace), **settings)
    await eventually(lambda: "keep:me" in store_of(client).index)
    return client, workspace, workspace / "filler"


async def test_trash_on_a_full_disk_refuses_the_delete_and_loses_nothing(start_client: Any, small_workspace: Path) -> None:
    client, workspace, filler = await start_on(start_client, small_workspace, trash_days=7)
    sessions = workspace / "sessions"
    fill_up(filler)
    resp = await client.delete("/api/v1/sessions/keep:me", headers=AUTH)
    assert resp.status == 503, await resp.text()
    detail = (await resp.json())["detail"]
    assert "No space left on device" in detail and str(workspace) not in detail
    # Nothing changed: the session is where it was, served, and nothing sits in the trash.
    assert (sessions / "keep_me.json").exists()
    assert (await client.get("/api/v1/sessions/keep:me", headers=AUTH)).status == 200
    trash = await (await client.get("/api/v1/trash", headers=AUTH)).json()
    assert trash["count"] == 0
    assert not [n for n in os.listdir(sessions / ".trash") if n.endswith(".json")] if (sessions / ".trash").exists() else True
    # With room again, the same DELETE completes, and the trash can give it back.
    filler.unlink()
    resp = await client.delete("/api/v1/sessions/keep:me", headers=AUTH)
    assert resp.status == 200
    trash = await (await client.get("/api/v1/trash", headers=AUTH)).json()
    assert [item["key"] for item in trash["items"]] == ["keep:me"]
    restored = await client.post("/api/v1/trash:restore", json={"keys": ["keep:me"]}, headers=AUTH)
    assert (await restored.json())["restored"][0]["key"] == "keep:me"
    assert (await client.get("/api/v1/sessions/keep:me", headers=AUTH)).status == 200


async def test_delete_without_the_trash_works_on_a_full_disk(start_client: Any, small_workspace: Path) -> None:
    client, workspace, filler = await start_on(start_client, small_workspace)
    fill_up(filler)
    resp = await client.delete("/api/v1/sessions/keep:me", headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert not (workspace / "sessions" / "keep_me.json").exists()
    assert os.listdir(workspace / "sessions") == []
