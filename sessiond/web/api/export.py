"""GET /api/v1/export: one session's file as stored, or NDJSON of every session a filter matches.

Both stream: a file is read in chunks off the event loop (aiofiles), never whole into
memory, and NDJSON goes out a few files at a time. Paths come from the index, never
from a key, and every file is opened relative to the verified sessions folder.
No read goes past the file's size when it was opened, nor past max_file_bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable
from urllib.parse import quote

import orjson
from aiohttp import web

from sessiond.core import markdown
from sessiond.core.errors import SessionNotFound
from sessiond.core.folder import Folder, FolderUnusable
from sessiond.core.index import SessionRecord
from sessiond.core.loader import OPEN_FLAGS, InvalidSession, json_loads, on_a_fresh_stack, parse_session, read_at_most
from sessiond.core.query import FILTER_PARAMS, ORDER_PARAMS, Query, QueryError, parse_query, run, single_values
from sessiond.web.appkeys import SETTINGS, STORE
from sessiond.web.files import open_file, send_file
from sessiond.web.front.request_id import prepare_stamped
from sessiond.web.responses import write_or_drop

log = logging.getLogger(__name__)

PARAMS = FILTER_PARAMS | ORDER_PARAMS | {"key", "format"}
FORMATS = ("json", "markdown")
# NDJSON is built a few files per executor call: fewer hops, bounded memory.
BATCH_FILES = 32
BATCH_BYTES = 4 * 1024 * 1024


async def export(request: web.Request) -> web.StreamResponse:
    """`?key=K`: the file as stored, with an ETag. Otherwise NDJSON of the sessions the filter matches."""
    values = single_values(request.query.items(), PARAMS, strict=True)
    form = values.pop("format", "json")
    if form not in FORMATS:
        raise QueryError("format", "must be json (the file as stored) or markdown (one session, to read)")
    if "key" in values:
        if len(values) > 1:
            raise QueryError("key", "exports one session; do not combine it with filter parameters")
        if form == "markdown":
            return await _markdown(request, values["key"])
        return await _one_file(request, values["key"])
    if form == "markdown":
        raise QueryError("format", "markdown exports one session: give key")
    return await _ndjson(request, parse_query(values))


def opener_in(folder: Folder) -> Callable[[str, int], int]:
    """An `open(..., opener=)` that opens a session file inside *folder*, never through a symlink.

    Refuses anything but a regular file (a FIFO or device named `*.json` is no session).
    """

    def open_session(name: str, flags: int) -> int:
        with folder.open() as dir_fd:
            fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(f"{name!r} is not a regular file")
        return fd

    return open_session


async def _current(request: web.Request, key: str) -> tuple[SessionRecord, Folder]:
    """The session's record as its file is now (one stat; re-read if it changed), and the folder."""
    store = request.app[STORE]
    record = await store.current(key)
    folder = store.folder
    if record is None or folder is None:
        raise SessionNotFound(key)
    return record, folder


async def _one_file(request: web.Request, key: str) -> web.StreamResponse:
    record, folder = await _current(request, key)
    try:
        raw = await open_file(record.name, opener_in(folder))
    except (OSError, FolderUnusable):
        raise SessionNotFound(key) from None  # gone (or replaced by something that is not a file) meanwhile
    return await send_file(request, raw, record.name, request.app[SETTINGS].max_file_bytes)


async def _markdown(request: web.Request, key: str) -> web.Response:
    """The session as Markdown (core/markdown.py), from its file as it is now."""
    record, folder = await _current(request, key)
    max_bytes = request.app[SETTINGS].max_file_bytes
    text = await asyncio.get_running_loop().run_in_executor(None, markdown_of, folder, record.name, key, max_bytes)
    if text is None:
        raise SessionNotFound(key)  # gone, or no longer this session, since the index read it
    name = (record.name[:-5] if record.name.endswith(".json") else record.name) + ".md"
    return web.Response(
        body=text.encode(),
        headers={
            "Content-Type": "text/markdown; charset=utf-8",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        },
    )


def markdown_of(folder: Folder, name: str, key: str, max_bytes: int) -> str | None:
    """File *name*'s session as Markdown; None if it is gone, too big, or not session *key* any more."""
    try:
        fd = opener_in(folder)(name, 0)
    except (OSError, FolderUnusable):
        return None
    try:
        data = read_at_most(fd, os.fstat(fd).st_size, max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return None
    try:
        if parse_session(data).key != key:
            return None
        doc = json_loads(data)
    except (InvalidSession, ValueError, RecursionError):
        return None
    return on_a_fresh_stack(lambda d: markdown.render(d, time.time()), doc)


def read_lines(folder: Folder, files: list[tuple[str, str]], max_bytes: int) -> bytes:
    """Each (name, key) session file as one JSON line, exactly as stored; files gone or no longer that session are skipped."""
    lines = []
    with folder.open() as dir_fd:
        for name, key in files:
            try:
                fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat_mod.S_ISREG(st.st_mode) or st.st_size > max_bytes:
                    continue
                data = read_at_most(fd, st.st_size, max_bytes + 1)
            except OSError as exc:
                log.warning("export: cannot read %r: %s", name, exc.strerror)
                continue
            finally:
                os.close(fd)
            if len(data) <= max_bytes and (line := _one_line(data, key)) is not None:
                lines.append(line)
    return b"".join(lines)


def _one_line(data: bytes, key: str) -> bytes | None:
    try:
        if parse_session(data).key != key:
            return None  # another session took the file since the index matched it
    except InvalidSession:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # UTF-16 and the like, which json.loads reads too: written out again, values unchanged.
        # (Each on a fresh stack, as the loader read it: a deep document fits as it did there.)
        return on_a_fresh_stack(json.dumps, json_loads(data)).encode() + b"\n"
    # In valid JSON a line break can only be whitespace between tokens (inside a string
    # it must be escaped), so the stored document, NaN and big integers included,
    # becomes one line without being parsed and written again.
    return text.replace("\r", " ").replace("\n", " ").encode() + b"\n"


async def _ndjson(request: web.Request, query: Query) -> web.StreamResponse:
    store = request.app[STORE]
    max_bytes = request.app[SETTINGS].max_file_bytes
    records = run(store.index, query).records  # a snapshot of who matches now
    folder = store.folder
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await prepare_stamped(request, response)
    if request.method == "HEAD" or folder is None:
        return response
    loop = asyncio.get_running_loop()
    batch: list[tuple[str, str]] = []
    size = 0
    with contextlib.suppress(ConnectionResetError):  # the client went away
        for i, record in enumerate(records):
            batch.append((record.name, record.key))
            size += record.size
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES or i == len(records) - 1:
                try:
                    lines = await loop.run_in_executor(None, read_lines, folder, batch, max_bytes)
                except FolderUnusable as exc:
                    # The folder was replaced: what follows would not be these sessions.
                    # A stream that simply ended would pass for the whole export, so it
                    # ends with an error record (documented in the OpenAPI description).
                    await response.write(orjson.dumps({"error": {"detail": f"Export cut short: {exc}"}}) + b"\n")
                    return response
                await write_or_drop(request, response, lines)
                batch, size = [], 0
    return response
