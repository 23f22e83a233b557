"""What the tests share: one TOKEN, the workspace helpers, one free_port, and the daemon harness
(the real `sessiond` process, for tests that need signals, sockets and exit codes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sessiond.core.names import file_name_for as file_name
from sessiond.web.appkeys import STORE

TOKEN = "test-token-0123456789abcdef"
NOBODY = 65534
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A sessiond child process with its stderr kept in a file."""

    def __init__(
        self,
        workspace: Path,
        *args: str,
        env: dict[str, str | None] | None = None,
        prefix: tuple[str, ...] = (),
        port: int | None = None,
        **popen: Any,
    ) -> None:
        self.port = port or free_port()
        self.log_path = workspace.parent / f"sessiond-{self.port}.log"
        full_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_"))
        }
        full_env.update({"SESSIOND_TOKEN": TOKEN, "SESSIOND_DEBOUNCE_MS": "10", "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        full_env = {k: v for k, v in full_env.items() if v is not None}  # None: unset it
        self.log = self.log_path.open("wb")
        # *prefix* runs the daemon through another command, e.g. setpriv as another user.
        cmd = [*prefix, sys.executable, "-m", "sessiond", "--workspace", str(workspace), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, **popen)
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the daemon printed so far."""
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, token: str | None = TOKEN, timeout: float = 5) -> tuple[int, bytes]:
        """A blocking GET (tests use it from threads or before an event loop exists)."""
        status, _, body = self.request("GET", path, token=token, timeout=timeout)
        return status, body

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN, timeout: float = 5
    ) -> tuple[int, dict[str, str], bytes]:
        """A blocking request: (status, headers, body)."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def wait_ready(self, timeout: float = 15) -> None:
        """Poll /health until 200, or fail with the daemon's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sessiond exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.get("/health", token=None, timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"sessiond not ready within {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the daemon and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


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
    from sessiond.core.folder import verify
    from sessiond.live.store import SessionStore

    store = SessionStore(folder, max_file_bytes, **kw)
    store.folder = verify(str(folder))
    return store


def read_file(folder: Path, name: str, max_bytes: int) -> Any:
    """What the loader makes of *folder/name* (big files through the child process)."""
    from sessiond.core import loader
    from sessiond.core.folder import verify

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


def as_nobody(*groups: int) -> tuple[str, ...]:
    extra = ("--groups", ",".join(map(str, groups))) if groups else ("--clear-groups",)
    return ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *extra, "--inh-caps=-all", "--bounding-set=-all")


def store_of(client: TestClient) -> Any:
    """The SessionStore behind a test client."""
    return client.server.app[STORE]  # type: ignore[union-attr]


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 15) -> list[str]:
        """Collect datagrams until one has *line*; return all seen so far."""
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {line!r} in {self.messages}")
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def close(self) -> None:
        self.sock.close()


MB = 1024 * 1024


def write_big_session(path: Path, size: int, key: str = "big:1") -> int:
    """A valid session of about *size* bytes; returns its message count."""
    one = orjson.dumps({"role": "assistant", "content": "x" * 900, "tool_calls": [{"id": "c1", "type": "function"}]})
    count = max(size // (len(one) + 1), 1)
    with path.open("wb") as fh:
        fh.write(b'{"key": ' + orjson.dumps(key) + b', "messages": [')
        block = b",".join([one] * 1000)
        for done in range(0, count - count % 1000, 1000):
            fh.write(block if done == 0 else b"," + block)
        rest = count % 1000
        if rest:
            fh.write((b"," if count >= 1000 else b"") + b",".join([one] * rest))
        fh.write(b'], "created_at": 1.0, "updated_at": 2.0}')
    return count


def later(snap: Path, seconds: float = 3600) -> None:
    """Move the snapshot's own time forward (mocking time): every file then looks older than
    the racy window, which a file's ctime cannot be made to look by any other means."""
    head, _, body = snap.read_bytes().partition(b"\n")
    header = orjson.loads(head)
    header["taken_at"] += seconds  # the checksum covers the body only
    snap.write_bytes(orjson.dumps(header) + b"\n" + body)


REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


class Demo:
    """`make run` on a free port, in its own run folder, with *env*."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir = run_dir
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "LISTEN_", "MAKE"))}
        self.log = (run_dir.parent / f"make-run-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(REPO), "run", f"RUNDIR={run_dir}", f"PORT={self.port}"],
            env={**base, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.run_dir.parent / f"make-run-{self.port}.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200 and "Web page:" in self.printed():
                        return  # ready, and make run has said how to reach it
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.1)
        raise AssertionError("make run: not ready")

    def printed(self) -> str:
        """What `make run` printed so far."""
        return (self.run_dir.parent / f"make-run-{self.port}.log").read_text()

    def delete(self, key: str) -> None:
        token = (self.run_dir / "token").read_text().strip()
        request = urllib.request.Request(
            f"{self.url}/api/v1/sessions/{key}", method="DELETE", headers={"Authorization": f"Bearer {token}"}
        )
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        self.log.close()


def demo_session(key: str, n: int, now: float) -> dict[str, object]:
    """A small, plausible conversation of 2*n messages, last updated n minutes before *now*."""
    messages: list[dict[str, object]] = []
    for i in range(n):
        messages.append({"role": "user", "content": f"Question {i + 1} for {key}?"})
        messages.append({"role": "assistant", "content": f"Answer {i + 1}."})
    created = now - 86400 * (n + 1)
    return {"key": key, "messages": messages, "summary": None, "created_at": created, "updated_at": now - 60 * n}


# -- processes (for tests of the daemon's child processes) -----------------------------


def children(pid: int) -> list[int]:
    """The live (not zombie) child processes of *pid*, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    """The command line of *pid*, spaces for its NULs (empty once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: Any, timeout: float, what: str) -> Any:
    """Poll the blocking *check* until it returns something true, which is returned; AssertionError after *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout}s")
