"""The daemon's life: start (sockets, the app, systemd), reload on SIGHUP, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from sessiond import config
from sessiond.app import create_app
from sessiond.ops import early
from sessiond.ops.logs import apply_logging
from sessiond.ops.systemd import SystemdNotifier, listen_fds_with_names, run_watchdog
from sessiond.web.accesslog import AccessLogger
from sessiond.web.api.health import probe_answer
from sessiond.web.appkeys import METRICS, RUNTIME, WATCHER
from sessiond.web.capacity import AcceptErrors, CappedRunner, CappedServer, ConnectionMetrics, connection_cap, raise_fd_limit
from sessiond.web.metrics import METRICS_FD_NAME, create_metrics_app

log = logging.getLogger("sessiond")
# A first scan that takes longer than this logs its progress this often.
PROGRESS_EVERY = 5.0
# After the listeners close on SIGTERM: time for requests already sent to arrive.
STOP_GRACE = 0.25
# A connection made within this long before the stop, that has not sent its
# request yet, is waited for (up to this long): a client under load can take a
# few hundred ms between connect() and its request (e2e: 1 reset in 23,000).
FIRST_REQUEST_WAIT = 2.0
# Of the stop's one deadline (shutdown_timeout after SIGTERM), the snapshot may use
# only what is left this long after the signal: a save not done by then is abandoned
# (the previous snapshot stays; the next start re-reads what changed since), so a stop
# right after a start at 1M sessions is not held for the seconds the first save takes.
# A save told to stop is waited for 0.25 s more (store.ABANDON_WAIT), then left to end
# on its daemon thread: 0.25 s of grace + 1.5 s + 0.25 s stays under the 3 s a stop
# may take, with the interpreter's own exit after it.
SAVE_AT_STOP = 1.5


class ScanProgress:
    """Progress of the first scan: systemd's status line at every step, a log line every few seconds."""

    def __init__(
        self, notifier: SystemdNotifier, every: float = PROGRESS_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.notifier = notifier
        self.every = every
        self.clock = clock
        self.last_logged = clock()

    def __call__(self, done: int, total: int) -> None:
        self.notifier.status(f"indexing {done:,}/{total:,}")
        now = self.clock()
        if now - self.last_logged >= self.every and done < total:
            self.last_logged = now
            log.info("indexing: %d of %d files read", done, total)


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
        self.watcher.progress = ScanProgress(self.notifier)
        self.stop = asyncio.Event()
        self.reloading: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT, then stop gracefully."""
        settings = self.settings
        fd_limit = raise_fd_limit()
        cap = connection_cap(settings.max_connections, fd_limit)
        log.info("serving at most %d connections at once (open-file limit %d)", cap, fd_limit)
        runner = CappedRunner(
            self.app,
            cap=cap,
            probe=probe_answer(self.app),
            access_log_class=AccessLogger,
            access_log=logging.getLogger("sessiond.access"),
            shutdown_timeout=settings.shutdown_timeout,
            handle_signals=False,
        )
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptErrors())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        if early.requested():
            self.stop.set()  # SIGTERM came while the modules were still being imported
        try:
            # Taken before anything starts a worker process, which must not inherit them.
            activated = listen_fds_with_names()
        except ValueError as exc:
            raise StartupError(f"socket activation: {exc}") from None
        try:
            await runner.setup()
        except OSError as exc:
            raise StartupError(f"cannot prepare {settings.sessions_dir}: {exc.strerror}") from None
        if isinstance(runner.server, CappedServer):
            self.app[METRICS].registry.register(ConnectionMetrics(runner.server))
        watchdog = asyncio.create_task(run_watchdog(self.notifier, lambda: self.watcher.alive), name="sessiond-watchdog")
        scrape: web.AppRunner | None = None
        try:
            scrape_socks = [sock for sock, name in activated if name == METRICS_FD_NAME]
            if scrape_socks:
                # Its own runner: the API's middlewares (auth, limits) do not apply to scrapes.
                scrape = web.AppRunner(create_metrics_app(self.app), access_log=None, handle_signals=False)
                await scrape.setup()
                for sock in scrape_socks:
                    await web.SockSite(scrape, sock).start()
                    log.info("metrics on systemd socket %s", _describe(sock))
            api_socks = [sock for sock, name in activated if name != METRICS_FD_NAME]
            # Accepting at once, also on systemd's sockets: until the first index is
            # whole every API route answers 503 with Retry-After and the probes say
            # why ("starting: indexing 41,000/100,000 files"), instead of clients and
            # monitoring waiting in the listen queue with no word for a long scan.
            for where in await _start_sites(runner, settings, api_socks):
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
            stopped = time.monotonic()
            # One deadline for the whole stop: connections, requests, the watcher, the snapshot.
            deadline = stopped + settings.shutdown_timeout
            self.watcher.store.save_deadline = min(deadline, stopped + SAVE_AT_STOP)
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            if scrape is not None:
                await scrape.cleanup()
            # Stop accepting first, then give connections accepted a moment ago the
            # time to deliver their request: aiohttp alone yields only once before it
            # closes every connection without a request in progress, which a client
            # that connected just before a restart sees as a dropped connection.
            # Under socket activation, connections not yet accepted wait for the
            # next process.
            await _stop_accepting(runner)
            for site in list(runner.sites):
                await site.stop()
            await _first_requests(runner)
            accepted = time.monotonic()
            # In-flight requests until the deadline, then the watcher and the snapshot.
            await _cleanup_within(runner, deadline)
            self.notifier.close()
            log.info(
                "stopped in %.2fs (%.2fs for connections' first requests, %.2fs for requests, the watcher and the snapshot)",
                time.monotonic() - stopped,
                accepted - stopped,
                time.monotonic() - accepted,
            )

    def _reload_soon(self) -> None:
        if self.reloading is None or self.reloading.done():
            self.reloading = asyncio.create_task(self.reload(), name="sessiond-reload")

    async def reload(self) -> None:
        """SIGHUP: re-read the config (a bad one keeps the old), rescan, then READY=1 again.

        A refused config is not a reload: it is logged as an error and stays in
        systemd's status line (`systemctl status`) until the next good reload.
        """
        self.notifier.reloading()
        log.info("reloading")
        refused: str | None = None
        pending: list[str] = []
        try:
            settings = config.load(self.flags)
        except config.ConfigError as exc:
            refused = str(exc)
            log.error("reload refused, keeping the running configuration: %s", exc)
        else:
            pending = self.app[RUNTIME].reload(settings)
            apply_logging(settings.log_level, settings.log_format, settings.access_log)
            for line in config.unknown_variables(os.environ):
                log.warning("%s", line)
            if pending:
                log.warning("changed settings need a restart to apply: %s", ", ".join(pending))
        store = self.watcher.store
        # The rescan is the store's reconcile: a stat walk that re-reads only what
        # differs (and every file found invalid before: a permission may have been
        # fixed), applied in small locked chunks, so DELETEs are not held up by a
        # full re-read of every file. A missing folder holds nothing; the watcher
        # reports it and resyncs when it returns.
        await store.reconcile(expect_changes=True, recheck_invalid=True)
        count = len(store.index)
        if refused is not None:
            self.notifier.ready(f"reload refused ({refused}); serving {count:,} sessions with the previous configuration")
            return
        status = f"serving {count:,} sessions"
        if pending:
            status += f"; restart to apply {', '.join(pending)}"
        self.notifier.ready(status)
        log.info("reloaded: serving %d sessions", count)


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
    wheres = []
    for site, where in sites:
        before = len(runner.addresses)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {where}: {exc.strerror}; fix --host/--port/--unix") from None
        if isinstance(site, web.UnixSite) and settings.unix:
            os.chmod(settings.unix, settings.unix_mode)
            wheres.append(where)
        else:
            # The addresses really bound: port 0 becomes the port the kernel chose.
            wheres.extend(_url(address) for address in runner.addresses[before:])
    return wheres


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name or '(unnamed)'}"
    return _url(name)


def _url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _stop_accepting(runner: web.AppRunner) -> None:
    """Stop taking connections off the listening sockets, then let those just taken attach.

    asyncio accepts a batch of connections at once and sets each one up a loop turn
    later; on Python 3.11 a connection whose server was closed in between is dropped
    unseen (`Server._attach` asserts, and only debug mode logs it), and the client,
    its request unread, gets a reset: 1 in ~20,000 requests across restarts under
    load. So the listening sockets are first only unwatched, and closed a turn later.
    """
    loop = asyncio.get_running_loop()
    for site in runner.sites:
        server = getattr(site, "_server", None)  # aiohttp keeps the asyncio Server there
        for sock in getattr(server, "sockets", None) or ():
            loop.remove_reader(sock.fileno())
    for _ in range(3):  # the setups already scheduled run on the next turns
        await asyncio.sleep(0)


async def _first_requests(runner: web.AppRunner) -> None:
    """Let connections made just before the stop deliver their first request.

    At least STOP_GRACE, then as long as a connection made within FIRST_REQUEST_WAIT
    before the stop has sent nothing yet (at most FIRST_REQUEST_WAIT). A connection
    idle for longer than that is the idle kind and is not waited for.
    """
    stopped = time.monotonic()
    await asyncio.sleep(STOP_GRACE)
    server = runner.server
    if not isinstance(server, CappedServer):
        return
    since = stopped - FIRST_REQUEST_WAIT
    while server.awaiting_a_first_request(since) and time.monotonic() - stopped < FIRST_REQUEST_WAIT:
        await asyncio.sleep(0.02)


async def _cleanup_within(runner: web.AppRunner, deadline: float) -> None:
    """runner.cleanup(), but connections still open at *deadline* (time.monotonic()) are cut.

    aiohttp gives each busy handler the timeout, then cancels it and waits the
    timeout again; a handler blocked writing to a client that stopped reading
    sits through both. So at the stop's deadline every connection still open
    is cut, and the handlers blocked on them end at once.
    """
    server = runner.server
    started = time.monotonic()
    cleanup = asyncio.ensure_future(runner.cleanup())
    done, _ = await asyncio.wait({cleanup}, timeout=max(0.0, deadline - started))
    if not done and server is not None:
        stalled = [conn.transport for conn in server.connections if conn.transport is not None]
        log.warning("stop: cutting %d connection(s) still busy after %.1fs", len(stalled), time.monotonic() - started)
        for transport in stalled:
            transport.abort()
    await cleanup


async def _wait_first(*aws: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
