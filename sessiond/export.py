"""GET /api/v1/export: one session's file as stored, or NDJSON of every session a filter matches.

Both stream: a file is read in chunks off the event loop, never whole into memory, and
NDJSON goes out a few files at a time. Paths come from the index, never from a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat as stat_mod
from urllib.parse import quote

import orjson
from aiohttp import web

from .keys import SETTINGS, STORE
from .loader import OPEN_FLAGS
from .params import bad_parameter
from .query import FILTER_PARAMS, ORDER_PARAMS, Query, QueryError, parse_query, run, single_values
from .responses import NOT_FOUND, error_response, etag_matches

log = logging.getLogger(__name__)

PARAMS = FILTER_PARAMS | ORDER_PARAMS | {"key"}
CHUNK = 256 * 1024
# NDJSON is built a few files per executor call: fewer hops, bounded memory.
BATCH_FILES = 32
BATCH_BYTES = 4 * 1024 * 1024


async def export(request: web.Request) -> web.StreamResponse:
    """`?key=K`: the file as stored, with an ETag. Otherwise NDJSON of the sessions the filter matches."""
    try:
        values = single_values(request.query.items(), PARAMS, strict=True)
        if "key" in values:
            if len(values) > 1:
                raise QueryError("key", "exports one session; do not combine it with filter parameters")
            return await _one_file(request, values["key"])
        query = parse_query(values)
    except QueryError as exc:
        return bad_parameter(exc)
    return await _ndjson(request, query)


def open_regular(folder: str, name: str) -> tuple[int, os.stat_result] | None:
    """An open descriptor and stat of *folder/name*, or None if it is gone or not a regular file."""
    try:
        fd = os.open(os.path.join(folder, name), OPEN_FLAGS)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'


async def _one_file(request: web.Request, key: str) -> web.StreamResponse:
    record = request.app[STORE].index.get(key)
    loop = asyncio.get_running_loop()
    opened = None if record is None else await loop.run_in_executor(None, open_regular, request.app[STORE].folder, record.name)
    if record is None or opened is None:
        return error_response(404, NOT_FOUND)
    fd, st = opened
    try:
        etag = _etag(st)
        if etag_matches(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers={"ETag": etag})
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/json",
                "ETag": etag,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(record.name)}",
            }
        )
        # Chunked, not Content-Length: a file rewritten in place while we read cannot
        # make us break a promised length; the agent's renames never touch our open file.
        response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method != "HEAD":
            with contextlib.suppress(ConnectionResetError):  # the client went away
                while chunk := await loop.run_in_executor(None, os.read, fd, CHUNK):
                    await response.write(chunk)
        return response
    finally:
        os.close(fd)


def read_lines(folder: str, names: list[str], max_bytes: int) -> bytes:
    """Each named session file as one compact JSON line; files gone or no longer valid are skipped."""
    lines = []
    for name in names:
        opened = open_regular(folder, name)
        if opened is None:
            continue
        fd, st = opened
        try:
            data = _read_all(fd) if st.st_size <= max_bytes else b""
        except OSError as exc:
            log.warning("export: cannot read %s: %s", name, exc.strerror)
            continue
        finally:
            os.close(fd)
        try:
            lines.append(orjson.dumps(orjson.loads(data)) + b"\n")
        except orjson.JSONDecodeError:
            log.debug("export: %s is no longer valid JSON; skipped", name)
    return b"".join(lines)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


async def _ndjson(request: web.Request, query: Query) -> web.StreamResponse:
    store = request.app[STORE]
    max_bytes = request.app[SETTINGS].max_file_bytes
    records = run(store.index, query).records  # a snapshot of who matches now
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    loop = asyncio.get_running_loop()
    batch: list[str] = []
    size = 0
    with contextlib.suppress(ConnectionResetError):  # the client went away
        for i, record in enumerate(records):
            batch.append(record.name)
            size += record.stat.size
            if len(batch) >= BATCH_FILES or size >= BATCH_BYTES or i == len(records) - 1:
                await response.write(await loop.run_in_executor(None, read_lines, store.folder, batch, max_bytes))
                batch, size = [], 0
    return response
