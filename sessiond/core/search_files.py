"""Reading a session file for the search index and for snippets. Blocking: call it from a thread.

A file is read only if it is still the file the in-memory index describes (same
size, mtime, inode and ctime, checked on the open descriptor): what is indexed
and what a snippet shows is always the text of that very file, never of an
older or newer one the index has not judged yet.
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
from typing import Any

from sessiond.core import loader
from sessiond.core.search_db import Ident
from sessiond.core.search_text import Part, parts


def read_parts(dir_fd: int, name: str, ident: Ident, max_bytes: int) -> list[Part] | None:
    """The searchable parts of file *name* if it is still *ident*; None if it is gone, changed or not a session."""
    try:
        fd = os.open(name, loader.OPEN_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or Ident(*loader.stat_of(st)) != ident or st.st_size > max_bytes:
            return None
        data = loader.read_at_most(fd, st.st_size, st.st_size + 1)
        if len(data) != st.st_size or Ident(*loader.stat_of(os.fstat(fd))) != ident:
            return None  # written to while read
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        doc: Any = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    return parts(doc)
