"""systemd integration: the notify protocol, the watchdog and socket activation.

The protocol is small enough that the stdlib does it: no libsystemd, no
dependency. Every notifier method is a silent no-op outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

__all__ = [
    "SD_LISTEN_FDS_START",
    "SystemdNotifier",
    "listen_fds",
    "listen_fds_with_names",
    "run_watchdog",
]

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class SystemdNotifier:
    """Send sd_notify(3) messages to ``$NOTIFY_SOCKET``; a no-op without it."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None
        self._failing = False

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send the lines as one datagram; return whether it was sent."""
        if self._address is None or not lines:
            return False
        message = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            sent = self._sock.sendto(message, self._address)
            if sent != len(message):
                raise OSError(f"short write ({sent} of {len(message)} bytes)")
        except OSError as exc:
            # The watchdog retries every few seconds: warn once per outage, not per ping.
            level = logging.DEBUG if self._failing else logging.WARNING
            logger.log(level, "systemd notify %s failed: %s", lines[0], exc)
            self._failing = True
            return False
        if self._failing:
            logger.info("systemd notify works again")
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up (or a reload) is complete."""
        return self.notify("READY=1", *_status_line(status))

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``."""
        return self.notify(*_status_line(text))

    def stopping(self) -> bool:
        """Tell systemd a graceful stop has begun."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """Tell systemd a reload has begun; finish it with ready()."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def watchdog(self) -> bool:
        """Ping the service watchdog."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None if not ours to ping."""
        if self._address is None:
            return None
        try:
            usec = int(self._watchdog_usec)
            pid = int(self._watchdog_pid) if self._watchdog_pid else os.getpid()
        except ValueError:
            if self._watchdog_usec:
                logger.warning("ignoring malformed WATCHDOG_USEC/WATCHDOG_PID")
            return None
        if usec <= 0 or pid != os.getpid():
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the notify socket; later sends open a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def run_watchdog(notifier: SystemdNotifier, is_healthy: Callable[[], bool]) -> None:
    """Ping the watchdog every interval while is_healthy() holds; return at once without one."""
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    logger.debug("systemd watchdog ping every %.3f s", interval)
    healthy = True
    while True:
        # Pinging from the event loop is the point: a stuck loop stops the pings too.
        try:
            now_healthy = bool(is_healthy())
        except Exception:
            if healthy:  # once per outage, not every interval
                logger.exception("health check failed; treating the service as unhealthy")
            now_healthy = False
        if now_healthy != healthy:
            if now_healthy:
                logger.warning("service healthy again; resuming watchdog pings")
            else:
                logger.error("service unhealthy; withholding watchdog pings so systemd restarts it")
            healthy = now_healthy
        if healthy:
            notifier.watchdog()
        await asyncio.sleep(interval)


def listen_fds_with_names(env: MutableMapping[str, str] = os.environ, unset: bool = True) -> list[tuple[socket.socket, str]]:
    """Sockets passed by systemd socket activation, with their LISTEN_FDNAMES names.

    Raises ValueError when a passed descriptor is not an open socket.
    """
    try:
        return _listen_fds(env)
    finally:
        if unset:
            # So that children (the scan pool, anything spawned) do not claim them.
            for name in _LISTEN_VARS:
                env.pop(name, None)


def listen_fds(env: MutableMapping[str, str] = os.environ, unset: bool = True) -> list[socket.socket]:
    """Sockets passed by systemd socket activation (fd 3 onward), or [] when none are ours."""
    return [sock for sock, _ in listen_fds_with_names(env, unset)]


def _listen_fds(env: Mapping[str, str]) -> list[tuple[socket.socket, str]]:
    if "LISTEN_PID" not in env:
        return []
    try:
        pid = int(env["LISTEN_PID"])
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        logger.warning("ignoring malformed LISTEN_PID/LISTEN_FDS")
        return []
    if pid != os.getpid():
        logger.debug("LISTEN_PID=%d is not this process; ignoring passed sockets", pid)
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":")
    if len(names) != count:
        names = ["unknown"] * count
    sockets: list[tuple[socket.socket, str]] = []
    for fd, name in zip(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count), names, strict=True):
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            for opened in sockets:
                opened[0].detach()
            raise ValueError(f"LISTEN_FDS: fd {fd} is not a usable socket ({exc.strerror})") from None
        sock.setblocking(False)
        sockets.append((sock, name))
    return sockets


def _notify_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    if value:
        logger.warning("unsupported NOTIFY_SOCKET %r; systemd notifications disabled", value)
    return None


def _status_line(text: str | None) -> tuple[str, ...]:
    return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)
