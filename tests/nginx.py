"""Run the shipped nginx sites (config/nginx/) in a real nginx for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support import Daemon, free_port

SITE = Path(__file__).resolve().parent.parent / "config" / "nginx" / "sessiond.conf"
AGENTS_SITE = SITE.with_name("sessiond-agents.conf")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def site_for(upstream: str, port: int) -> str:
    """The shipped site with its upstream and listen address pointed at the test daemon."""
    text = SITE.read_text()
    assert "server unix:/run/sessiond/sessiond.sock;" in text and "listen 80;" in text
    text = text.replace("server unix:/run/sessiond/sessiond.sock;", f"server {upstream};")
    return text.replace("listen 80;", f"listen 127.0.0.1:{port};")


def agents_site_for(run: Path, port: int, scrape_port: int) -> str:
    """The shipped agents site with /run/sessiond/ moved to *run* and its listen addresses to free ports."""
    text = AGENTS_SITE.read_text()
    assert "/run/sessiond/$agent.sock" in text and "listen 80;" in text and "listen 127.0.0.1:9478;" in text
    text = text.replace("/run/sessiond/", f"{run}/").replace("listen 80;", f"listen 127.0.0.1:{port};")
    return text.replace("listen 127.0.0.1:9478;", f"listen 127.0.0.1:{scrape_port};")


class Nginx:
    """A foreground nginx with every path inside *root*."""

    def __init__(self, root: Path, upstream: str, port: int, site: str | None = None) -> None:
        assert NGINX, "nginx is not installed"
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        (root / "site.conf").write_text(site if site is not None else site_for(upstream, port))
        temp = {name: root / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        for path in temp.values():
            path.mkdir(exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the socket in tmp
        (root / "nginx.conf").write_text(
            f"""{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {root}/site.conf;
}}
"""
        )
        check = subprocess.run([NGINX, "-t", "-p", str(root), "-c", str(root / "nginx.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "nginx.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                urllib.request.urlopen(self.url + "/livez", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # nginx answers; the daemon behind it may not be ready yet
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start")

    def stop(self) -> None:
        """Stop nginx and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()


@contextlib.contextmanager
def daemon_behind_nginx(workspace: Path, tmp_path: Path, env: dict[str, str | None]) -> Iterator[Nginx]:
    """A real daemon on its unix socket behind the shipped site, as production runs it."""
    sock = tmp_path / "sessiond.sock"
    with Daemon(workspace, "--unix", str(sock), env=env) as daemon:
        daemon.wait_ready()
        nginx = Nginx(tmp_path / "nginx", f"unix:{sock}", free_port())
        try:
            yield nginx
        finally:
            nginx.stop()


class Agent:
    """One sessiond instance as sessiond@NAME runs it: systemd's two sockets, bound here and passed.

    /run/sessiond/NAME.sock and NAME.metrics.sock (the agents site's paths, under *run*),
    handed over with LISTEN_FDS/LISTEN_FDNAMES as sessiond@.socket and
    sessiond-metrics@.socket do; the daemon binds nothing itself.
    """

    def __init__(self, name: str, run: Path, workspace: Path, token: str, env: dict[str, str | None]) -> None:
        self.name = name
        self.socket = run / f"{name}.sock"
        self.log_path = workspace.parent / f"sessiond-{name}.log"
        listeners = []
        for path in (self.socket, run / f"{name}.metrics.sock"):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(path))
            path.chmod(0o666)  # nginx's workers, whoever they run as
            listener.listen(128)
            listeners.append(listener)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIOND_", "NOTIFY_SOCKET", "LISTEN_"))}
        full_env.update({"SESSIOND_TOKEN": token, "SESSIOND_DEBOUNCE_MS": "10", "PYTHONUNBUFFERED": "1"})
        full_env.update({"LISTEN_FDS": "2", "LISTEN_FDNAMES": f"sessiond@{name}.socket:metrics"})
        full_env.update({k: v for k, v in env.items() if v is not None})
        fds = [listener.fileno() for listener in listeners]

        def pass_sockets() -> None:
            for target, fd in enumerate(fds, start=3):
                os.dup2(fd, target)

        cmd = ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', sys.executable, "-m", "sessiond", "--workspace", str(workspace)]
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=full_env, pass_fds=(3, 4), preexec_fn=pass_sockets, stdout=self.log, stderr=subprocess.STDOUT
        )
        for listener in listeners:
            listener.close()  # only the daemon holds them now, as systemd would
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sessiond {self.name} exited:\n{self.log_path.read_text()}")
            try:
                with socket.socket(socket.AF_UNIX) as conn:
                    conn.settimeout(1)
                    conn.connect(str(self.socket))
                    conn.sendall(b"GET /health HTTP/1.1\r\nHost: sessiond\r\nConnection: close\r\n\r\n")
                    if conn.recv(64).startswith(b"HTTP/1.1 200 "):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"sessiond {self.name} not ready:\n{self.log_path.read_text()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self.log.close()


class Agents(Nginx):
    """The shipped agents site in front of several daemons; scrape_url is its Prometheus server."""

    def __init__(self, root: Path, run: Path, port: int, scrape_port: int) -> None:
        self.scrape_url = f"http://127.0.0.1:{scrape_port}"
        super().__init__(root, "", port, site=agents_site_for(run, port, scrape_port))


@contextlib.contextmanager
def agents_behind_nginx(
    tmp_path: Path, agents: dict[str, tuple[Path, str]], env: dict[str, str | None]
) -> Iterator[tuple[Agents, dict[str, Agent]]]:
    """Daemons named like sessiond@NAME (each on its workspace, with its token) behind the agents site."""
    # Unix socket paths are short (108 bytes): not under pytest's long tmp_path.
    run = Path(tempfile.mkdtemp(prefix="sessiond-run-", dir="/tmp"))
    run.chmod(0o755)
    started: dict[str, Agent] = {}
    try:
        for name, (workspace, token) in agents.items():
            started[name] = Agent(name, run, workspace, token, env)
        nginx = Agents(tmp_path / "nginx", run, free_port(), free_port())
        try:
            yield nginx, started
        finally:
            nginx.stop()
    finally:
        for agent in started.values():
            agent.stop()
        shutil.rmtree(run, ignore_errors=True)
