"""Logging, configured once by the CLI: text or JSON lines on stderr, with journald priorities.

When stderr is the journal (systemd sets ``JOURNAL_STREAM`` to the device and inode
of that stream), every line carries the ``<N>`` syslog-priority prefix of
sd-daemon(3), so ``journalctl -p warning`` finds warnings and errors. A traceback
spans several lines; each gets the prefix, so none of it drops to "info".
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import IO

import orjson
from aiohttp.http_exceptions import HttpProcessingError

# sd-daemon(3): SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>".
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
TEXT = "%(levelname)s %(name)s: %(message)s"


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels in between round down to the more severe)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


def stream_is_journal(stream: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """True when *stream* is the journal stream systemd connected (JOURNAL_STREAM=dev:inode)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (ValueError, OSError, AttributeError):
        return False


# Control characters (C0, DEL, C1) and Unicode line breaks, as escapes: a client's
# path or key must never start a line of its own in the log.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    """*text* with every control character and line break written as an escape."""
    return text.translate(_CONTROLS)


# The same but \n and \t, for a traceback: its lines are its own, nothing else may break one.
_TRACEBACK_CONTROLS = {c: e for c, e in _CONTROLS.items() if c not in (0x0A, 0x09)}


class TextFormatter(logging.Formatter):
    """Plain lines whose message cannot forge another line (a traceback keeps its own)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:  # noqa: N802 (logging's name)
        return super().formatException(ei).translate(_TRACEBACK_CONTROLS)  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return stack_info.translate(_TRACEBACK_CONTROLS)


# What orjson leaves raw in a string though some readers break a line there (Python's
# str.splitlines, JavaScript before ES2019): C1 controls (U+0085 among them), U+2028, U+2029.
_JSON_RAW_BREAKS = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029]}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for Loki/ELK: time, level, logger, message (+ traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Outside strings JSON holds none of these: escaping them keeps the same value, on one line.
        return orjson.dumps(entry).decode().translate(_JSON_RAW_BREAKS)


class JournalPrefix(logging.Formatter):
    """Wraps a formatter and prefixes every line it makes with ``<N>``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        # Split at \n only, as journald does: str.splitlines() also breaks at U+2028,
        # U+0085, \v, \f and more, which a client can put in a path (the formatters escape them).
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def make_formatter(log_format: str, journal: bool) -> logging.Formatter:
    """The formatter for *log_format* ("text" or "json"), journald-prefixed if *journal*."""
    if log_format == "json":
        inner: logging.Formatter = JsonFormatter()
    else:
        # journald adds the time itself.
        inner = TextFormatter(TEXT if journal else "%(asctime)s " + TEXT)
    return JournalPrefix(inner) if journal else inner


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
            "malformed HTTP requests refused (%d so far; latest: %s)",
            (self.dropped, exc.message),
            None,
            None,
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


AUDIT_LOGGER = "sessiond.audit"
AUDIT_IDENTIFIER = "sessiond-audit"  # journalctl SYSLOG_IDENTIFIER=sessiond-audit
JOURNAL_SOCKET = "/run/systemd/journal/socket"


class JournalAuditHandler(logging.Handler):
    """The audit records straight to journald (its native protocol), under their own identifier.

    Lines on stderr all carry the unit's identifier; these carry SYSLOG_IDENTIFIER=sessiond-audit
    and SESSIOND_AUDIT=1, so `journalctl SYSLOG_IDENTIFIER=sessiond-audit` finds every record and
    nothing else. When journald cannot take one, it goes to *fallback* (stderr) instead: never lost.
    """

    def __init__(self, fallback: logging.Handler, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.fallback = fallback
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        fields = {
            "MESSAGE": record.getMessage(),
            "PRIORITY": str(priority(record.levelno)),
            "SYSLOG_IDENTIFIER": AUDIT_IDENTIFIER,
            "SESSIOND_AUDIT": "1",
            "LOGGER": record.name,
        }
        data = bytearray()
        for name, value in fields.items():
            raw = value.encode("utf-8", "replace")
            if b"\n" in raw:  # journald's binary form: a newline in a value is data, never a field
                data += name.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                data += name.encode() + b"=" + raw + b"\n"
        try:
            self.socket.sendto(bytes(data), self.path)
        except OSError:
            self.fallback.handle(record)

    def close(self) -> None:
        self.socket.close()
        super().close()


def setup_logging(level: str, log_format: str = "text") -> None:
    """Lines to stderr (journald under systemd), once, at start; the audit records natively to journald."""
    handler = logging.StreamHandler(sys.stderr)
    journal = stream_is_journal(sys.stderr)
    handler.setFormatter(make_formatter(log_format, journal))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
    audit = logging.getLogger(AUDIT_LOGGER)
    for old in audit.handlers[:]:
        audit.removeHandler(old)
        old.close()
    audit.propagate = True
    if journal:
        audit.addHandler(JournalAuditHandler(handler))
        audit.propagate = False


def apply_logging(level: str, log_format: str, access_log: bool) -> None:
    """Level, format and the access-log switch (at start and on every reload)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setFormatter(make_formatter(log_format, stream_is_journal(sys.stderr)))
    logging.getLogger("watchfiles").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # The access logger is always installed; its level switches it on and off.
    logging.getLogger("sessiond.access").setLevel(logging.INFO if access_log else logging.CRITICAL + 1)
    # The audit trail is never turned down with the log level.
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
