"""Shared fixtures: a real workspace in tmp_path and the real app over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sessiond import config
from sessiond.app import create_app
from sessiond.appkeys import STORE, WATCHER
from sessiond.loader import file_name_for as file_name

TOKEN = "test-token-0123456789abcdef"
NOBODY = 65534
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def session_doc(
    key: str, messages: int = 1, created: float = 1_700_000_000.0, updated: float | None = None, **extra: Any
) -> dict[str, Any]:
    """A session as the agent writes it."""
    doc: dict[str, Any] = {
        "key": key,
        "messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(messages)],
        "summary": None,
        "created_at": created,
        "updated_at": created + 10 if updated is None else updated,
    }
    doc.update(extra)
    return doc


def write_atomic(folder: Path, key: str, name: str | None = None, **kw: Any) -> Path:
    """Write like the agent: `<name>.tmp`, then rename over `<name>.json`."""
    target = folder / (name or file_name(key))
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(session_doc(key, **kw)))
    os.replace(tmp, target)
    return target


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until check() is true; fail with a clear message after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


def open_store(folder: Path, max_file_bytes: int = 1 << 20, **kw: Any) -> Any:
    """A SessionStore on *folder* verified as the watcher would (for tests without a watcher)."""
    from sessiond.folder import verify
    from sessiond.store import SessionStore

    store = SessionStore(folder, max_file_bytes, **kw)
    store.folder = verify(str(folder))
    return store


def read_file(folder: Path, name: str, max_bytes: int) -> Any:
    """What the loader makes of *folder/name* (big files through the child process)."""
    from sessiond import loader
    from sessiond.folder import verify

    handle = verify(str(folder))
    assert handle is not None
    with handle.open() as dir_fd:
        return loader.read_fully(handle, dir_fd, name, max_bytes)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Make *path* immutable (chattr +i): unlink and rename fail with EPERM, even for root."""
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("needs root and chattr to make the file system refuse a change")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip(f"the file system under {path.parent} has no immutable flag")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A real, small tmpfs mounted at *where* (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_up(path: Path) -> None:
    """Write *path* until the file system has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


@pytest.fixture
def held_first_scan(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold every app's first scan until the returned event is set (the start takes that long)."""
    from sessiond.store import SessionStore

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


def as_nobody(*groups: int) -> tuple[str, ...]:
    extra = ("--groups", ",".join(map(str, groups))) if groups else ("--clear-groups",)
    return ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *extra, "--inh-caps=-all", "--bounding-set=-all")


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


def store_of(client: TestClient) -> Any:
    """The SessionStore behind a test client."""
    return client.server.app[STORE]  # type: ignore[union-attr]
