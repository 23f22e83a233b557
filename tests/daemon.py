"""Run the real `sessiond` process for tests that need signals, sockets and exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "test-token-0123456789abcdef"


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
