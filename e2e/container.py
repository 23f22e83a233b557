"""Boot a copy of the cached root with systemd as PID 1 and run commands inside it.

systemd-nspawn --boot --register=no --keep-unit works without a systemd on the
host; --private-network gives the container nothing but its own loopback, so
its nginx on port 80 and Prometheus on 9090 touch nothing on the host.
Commands enter its namespaces with nsenter, with a clean environment.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Container:
    """One booted container; stop() powers it off and removes the copy."""

    def __init__(self, cached_root: Path, binds: dict[Path, str], keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sessiond-e2e-", dir="/var/tmp"))
        self.root = self.dir / "root"
        self.keep = keep
        subprocess.run(["cp", "-a", "--reflink=auto", str(cached_root), str(self.root)], check=True)
        self.console = self.dir / "console.log"
        cmd = [
            "systemd-nspawn",
            "-D",
            str(self.root),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=passive",
            "--machine=sessiond-e2e",
        ]
        cmd += [f"--bind-ro={host}:{inside}" for host, inside in binds.items()]
        with self.console.open("wb") as out:
            self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.pid = self._init_pid()
        self.wait_booted()

    def _init_pid(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.nspawn.returncode}:\n{self.console.read_text()}")
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.nspawn.pid:
                    return int(entry.name)
            time.sleep(0.05)
        raise RuntimeError("the container's init did not appear")

    def _enter(self) -> list[str]:
        """The command prefix that runs a program inside (every namespace, an empty environment)."""
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "env", "-i"]

    def sh(
        self, script: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside (as root, or *user* through runuser); output as text."""
        inner = ["/bin/sh", "-c", script]
        if user:
            inner = ["runuser", "-u", user, "--", *inner]
        environment = {
            "PATH": PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_COLORS": "0",
            **(env or {}),
        }
        cmd = [*self._enter(), *(f"{k}={v}" for k, v in environment.items()), *inner]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}: {script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    def popen(self, script: str) -> subprocess.Popen[str]:
        """Start a shell script inside and return at once (for load during a restart)."""
        cmd = [*self._enter(), f"PATH={PATH}", "/bin/sh", "-c", script]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """systemctl show's properties of *unit*."""
        out = self.sh(f"systemctl show {shlex.quote(unit)} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_booted(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"container did not boot (state {state!r}):\n{self.console.read_text()[-3000:]}")
            time.sleep(0.2)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside, from the host side (the root is a plain folder)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, mode)

    def stop(self) -> None:
        """Power off (SIGTERM to nspawn asks systemd for a clean halt), then remove the copy."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
