"""The `sessiond` command: flags, logging, the runner and its sockets, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import __version__, config
from .accesslog import AccessLogger
from .app import create_app
from .keys import RUNTIME, WATCHER
from .systemd import SystemdNotifier, listen_fds, run_watchdog

log = logging.getLogger("sessiond")


def build_parser() -> argparse.ArgumentParser:
    """Flags; each overrides SESSIOND_<NAME> and the config file."""
    p = argparse.ArgumentParser(prog="sessiond", description="Serve agent session files over HTTP.")
    p.add_argument("--version", action="version", version=f"sessiond {__version__}")
    p.add_argument("--config", metavar="FILE", help="TOML config file (env SESSIOND_CONFIG)")
    p.add_argument("--workspace", metavar="DIR", help="agent workspace; sessions are in DIR/sessions")
    p.add_argument("--host", help="TCP address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8080)")
    p.add_argument("--unix", metavar="PATH", help="also listen on this unix socket")
    p.add_argument("--unix-mode", dest="unix_mode", metavar="OCTAL", help="unix socket mode (default 660)")
    p.add_argument("--token-file", dest="token_file", metavar="FILE", help="read the API token from FILE")
    p.add_argument("--rate-limit-per-ip", dest="rate_limit_per_ip", type=int, metavar="N", help="requests/min per client IP (0: off)")
    p.add_argument("--rate-limit-per-token", dest="rate_limit_per_token", type=int, metavar="N", help="requests/min per token (0: off)")
    p.add_argument("--trusted-proxies", dest="trusted_proxies", metavar="LIST", help="comma-separated proxy addresses/CIDRs")
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--access-log", dest="access_log", type=config._bool, metavar="0|1", help="one line per request")
    p.add_argument("--force-polling", dest="force_polling", type=config._bool, metavar="0|1", help="poll instead of inotify")
    return p


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every unparseable request at ERROR with a traceback; a hostile
    client could flood the journal that way. Keep one short warning a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._last = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError) or isinstance(exc, ConnectionError):
            return True
        self.dropped += 1
        now = time.monotonic()
        if now - self._last < 60:
            return False
        self._last = now
        record.msg, record.args, record.exc_info, record.exc_text = (
            "malformed HTTP requests refused (%d so far; latest: %s)", (self.dropped, exc.message), None, None
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(level: str) -> None:
    """Plain lines to stderr: journald adds the time and the unit."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


def apply_logging(settings: config.Settings) -> None:
    """Log level and the access-log switch (at start and on every reload)."""
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("watchfiles").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    # The access logger is always installed; its level switches it on and off.
    logging.getLogger("sessiond.access").setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    flags = vars(args)
    try:
        settings = config.load(flags)
    except config.ConfigError as exc:
        print(f"sessiond: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    apply_logging(settings)
    # A watchdog timeout ends us with SIGABRT: leave the stuck stack in the journal.
    faulthandler.enable()
    try:
        asyncio.run(Daemon(settings, flags).serve())
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0


class StartupError(Exception):
    """The daemon cannot start (a socket cannot be bound, the folder cannot be made)."""


class Daemon:
    """One run of the service: sockets, the app, systemd notifications and signals."""

    def __init__(self, settings: config.Settings, flags: dict[str, object]) -> None:
        self.settings = settings
        self.flags = flags
        self.notifier = SystemdNotifier()
        self.app = create_app(settings)
        self.watcher = self.app[WATCHER]
        self.watcher.progress = self._indexing
        self.stop = asyncio.Event()
        self.reloading: asyncio.Task[None] | None = None

    def _indexing(self, done: int, total: int) -> None:
        self.notifier.status(f"indexing {done:,}/{total:,}")

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully."""
        settings = self.settings
        runner = web.AppRunner(
            self.app,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("sessiond.access"),
            shutdown_timeout=settings.shutdown_timeout,
            handle_signals=False,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        try:
            # Taken before anything starts a worker process, which must not inherit them.
            activated = listen_fds()
        except ValueError as exc:
            raise StartupError(f"socket activation: {exc}") from None
        try:
            await runner.setup()
        except OSError as exc:
            raise StartupError(f"cannot prepare {settings.sessions_dir}: {exc.strerror}") from None
        watchdog = asyncio.create_task(run_watchdog(self.notifier, lambda: self.watcher.alive), name="sessiond-watchdog")
        try:
            for where in await _start_sites(runner, settings, activated):
                log.info("listening on %s", where)
            await _wait_first(self.watcher.ready.wait(), self.stop.wait())
            if self.watcher.ready.is_set():
                count = len(self.watcher.store.index)
                log.info("ready: serving %d sessions", count)
                # READY=1 only now: the sockets listen and the first scan is indexed.
                self.notifier.ready(f"serving {count:,} sessions")
            await self.stop.wait()
            log.info("stopping")
            self.notifier.stopping()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            # Stops accepting, gives in-flight requests shutdown_timeout, then stops the watcher.
            await runner.cleanup()
            self.notifier.close()

    def _reload_soon(self) -> None:
        if self.reloading is None or self.reloading.done():
            self.reloading = asyncio.create_task(self.reload(), name="sessiond-reload")

    async def reload(self) -> None:
        """SIGHUP: re-read the config (a bad one keeps the old), rescan, then READY=1 again."""
        self.notifier.reloading()
        log.info("reloading")
        try:
            settings = config.load(self.flags)
        except config.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
        else:
            pending = self.app[RUNTIME].reload(settings)
            apply_logging(settings)
            if pending:
                log.warning("changed settings need a restart to apply: %s", ", ".join(pending))
        store = self.watcher.store
        # The rescan is the store's reconcile: a stat walk that re-reads only what
        # differs (and every file found invalid before: a permission may have been
        # fixed), applied in small locked chunks, so DELETEs are not held up by a
        # full re-read of every file. A missing folder holds nothing; the watcher
        # reports it and resyncs when it returns.
        await store.reconcile(expect_changes=True, recheck_invalid=True)
        self.notifier.ready(f"serving {len(store.index):,} sessions")
        log.info("reloaded: serving %d sessions", len(store.index))


async def _start_sites(runner: web.AppRunner, settings: config.Settings, activated: list[socket.socket]) -> list[str]:
    if activated:
        # systemd opened the sockets (sessiond.socket); serve on them instead of binding.
        wheres = []
        for sock in activated:
            await web.SockSite(runner, sock).start()
            wheres.append(f"systemd socket {_describe(sock)}")
        return wheres
    sites: list[tuple[web.BaseSite, str]] = []
    if settings.unix:
        with contextlib.suppress(FileNotFoundError):
            if settings.unix.is_socket():
                settings.unix.unlink()  # a stale socket from a previous run
        sites.append((web.UnixSite(runner, str(settings.unix)), f"unix:{settings.unix}"))
    if settings.host:  # host = "" means unix socket only
        host = settings.host
        url_host = f"[{host}]" if ":" in host else host
        sites.append((web.TCPSite(runner, host, settings.port), f"http://{url_host}:{settings.port}"))
    for site, where in sites:
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {where}: {exc.strerror}; fix --host/--port/--unix") from None
        if isinstance(site, web.UnixSite) and settings.unix:
            os.chmod(settings.unix, settings.unix_mode)
    return [where for _, where in sites]


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name or '(unnamed)'}"
    host, port = name[0], name[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _wait_first(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
