"""Shared fixtures: a real workspace in tmp_path and the real app over real HTTP (helpers: support.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sessiond import config
from sessiond.app import create_app
from sessiond.web.appkeys import WATCHER
from tests.support import (  # noqa: F401
    AUTH,
    NOBODY,
    TOKEN,
    as_nobody,
    eventually,
    fill_up,
    immutable,
    open_store,
    read_file,
    session_doc,
    small_tmpfs,
    store_of,
    write_atomic,
)


@pytest.fixture
def held_first_scan(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every app's first scan until the returned event is set (the start takes that long)."""
    from sessiond.live.store import SessionStore

    gate = asyncio.Event()
    original = SessionStore.scan

    async def held_scan(self: Any, progress: Any = None) -> None:
        await gate.wait()
        await original(self, progress)

    monkeypatch.setattr(SessionStore, "scan", held_scan)
    return gate


@pytest.fixture
def open_workspace() -> Iterator[Path]:
    """A workspace an unprivileged user can reach (pytest's own tmp is root-only)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the daemon as another user")
    root = Path(tempfile.mkdtemp(prefix="sessiond-perm-"))
    root.chmod(0o755)
    try:
        (root / "workspace" / "sessions").mkdir(parents=True)
        (root / "workspace").chmod(0o755)
        (root / "workspace" / "sessions").chmod(0o755)
        (root / "state").mkdir()
        os.chown(root / "state", NOBODY, NOBODY)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with an empty sessions folder."""
    ws = tmp_path / "workspace"
    (ws / "sessions").mkdir(parents=True)
    return ws


@pytest.fixture
def sessions(workspace: Path) -> Path:
    """The sessions folder of the workspace."""
    return workspace / "sessions"


@pytest.fixture
def make_settings(workspace: Path) -> Callable[..., config.Settings]:
    """Settings for tests: fast debounce, rate limits off unless asked for."""

    def make(**overrides: Any) -> config.Settings:
        values: dict[str, Any] = {
            "workspace": str(workspace),
            "token": TOKEN,
            "rate_limit_per_ip": 0,
            "rate_limit_per_token": 0,
            "debounce_ms": 10,
        }
        values.update(overrides)
        return config.validate(values, env={})

    return make


@pytest.fixture
def start_client(aiohttp_client: Any, make_settings: Callable[..., config.Settings]) -> Callable[..., Awaitable[TestClient]]:
    """Start the real app on a real socket and wait until it is ready."""

    async def start(**overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides))
        client = await aiohttp_client(app)
        await asyncio.wait_for(app[WATCHER].ready.wait(), 10)
        return client

    return start


@pytest.fixture
async def client(start_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    """The app with default test settings."""
    return await start_client()
