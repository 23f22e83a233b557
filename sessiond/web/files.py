"""Streaming a file as stored: opened off the loop, sent in chunks with an ETag, bounded.

Shared by export (a session) and the trash (a trashed session): a file is read in
chunks off the event loop (aiofiles), never whole into memory, never past its size
when it was opened nor past max_file_bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import os
from collections.abc import Callable
from urllib.parse import quote

import aiofiles.threadpool
from aiohttp import web

from sessiond.web.front.request_id import prepare_stamped
from sessiond.web.responses import etag_matches, write_or_drop

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}-{st.st_size:x}"'


async def send_file(request: web.Request, raw: io.FileIO, name: str, max_bytes: int) -> web.StreamResponse:
    """Stream the open file *raw* as stored (download name *name*), with an ETag; closes it.

    Never more than its size when opened nor *max_bytes*; a file rewritten while it is
    sent cuts the connection instead of passing off a mix as the file.
    """
    fh = aiofiles.threadpool.wrap(raw)  # reads go to the executor, a chunk at a time
    try:
        st = os.fstat(fh.fileno())
        etag = _etag(st)
        if etag_matches(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers={"ETag": etag})
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/json",
                "ETag": etag,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            }
        )
        # Chunked, not Content-Length: if the file is rewritten in place while we read,
        # the stream is cut instead of passing off a mix as the file. The agent's renames
        # never touch the file we hold open.
        response.enable_chunked_encoding()
        await prepare_stamped(request, response)
        if request.method == "HEAD":
            return response
        left = min(st.st_size, max_bytes)
        with contextlib.suppress(ConnectionResetError):  # the client went away
            while left > 0 and (chunk := await fh.read(min(CHUNK, left))):
                await write_or_drop(request, response, chunk)
                left -= len(chunk)
            if _etag(os.fstat(fh.fileno())) != etag and request.transport is not None:
                log.warning("export of %r cut: the file changed while it was sent", name)
                request.transport.abort()
                return response
            await response.write_eof()
        return response
    finally:
        raw.close()  # at once, even when the client went away and the handler is cancelled


async def open_file(name: str, opener: Callable[[str, int], int]) -> io.FileIO:
    """open() in the executor; a file opened for a handler cancelled meanwhile is closed, not leaked."""
    opening = asyncio.get_running_loop().run_in_executor(None, functools.partial(io.FileIO, name, "rb", opener=opener))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_unused)
        raise


def _close_unused(opened: asyncio.Future[io.FileIO]) -> None:
    if not opened.cancelled() and opened.exception() is None:
        opened.result().close()
