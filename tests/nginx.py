"""Run the shipped nginx site (config/nginx/sessiond.conf) in a real nginx for tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support import Daemon, free_port

SITE = Path(__file__).resolve().parent.parent / "config" / "nginx" / "sessiond.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def site_for(upstream: str, port: int) -> str:
    """The shipped site with its upstream and listen address pointed at the test daemon."""
    text = SITE.read_text()
    assert "server unix:/run/sessiond/sessiond.sock;" in text and "listen 80;" in text
    text = text.replace("server unix:/run/sessiond/sessiond.sock;", f"server {upstream};")
    return text.replace("listen 80;", f"listen 127.0.0.1:{port};")


class Nginx:
    """A foreground nginx with every path inside *root*."""

    def __init__(self, root: Path, upstream: str, port: int) -> None:
        assert NGINX, "nginx is not installed"
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        (root / "site.conf").write_text(site_for(upstream, port))
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
