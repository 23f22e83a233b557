"""The `sessiond` command: flags, logging, the runner and its sockets, signals."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from . import __version__, config
from .accesslog import AccessLogger
from .app import create_app
from .keys import WATCHER

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


def setup_logging(level: str) -> None:
    """Plain lines to stderr: journald adds the time and the unit."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    # watchfiles logs every batch at INFO; our own counters and metrics say it better.
    logging.getLogger("watchfiles").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = config.load(vars(args))
    except config.ConfigError as exc:
        print(f"sessiond: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0


class StartupError(Exception):
    """The daemon cannot start (a socket cannot be bound, the folder cannot be made)."""


async def serve(settings: config.Settings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("sessiond.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_timeout,
        handle_signals=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
    except OSError as exc:
        raise StartupError(f"cannot prepare {settings.sessions_dir}: {exc.strerror}") from None
    try:
        for where in await _start_sites(runner, settings):
            log.info("listening on %s", where)
        watcher = app[WATCHER]
        await _wait_first(watcher.ready.wait(), stop.wait())
        if watcher.ready.is_set():
            log.info("ready: serving %d sessions", len(watcher.store.index))
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


async def _start_sites(runner: web.AppRunner, settings: config.Settings) -> list[str]:
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


async def _wait_first(*aws: object) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
