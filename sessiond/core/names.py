"""Session keys and file names: the rules every layer shares, with no I/O.

A session is a top-level `*.json` file; its key is inside it (the file name is the
agent's lossy rendering of the key, `file_name_for`).
"""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 4096
BAD_NAME = "file name is not valid UTF-8 (rename it: such names cannot be watched)"

_NOT_IN_NAMES = re.compile(r"[^\w\-.]")


def file_name_for(key: str) -> str:
    """The file name the agent gives session *key* (lossy: the key inside the file is the truth)."""
    return _NOT_IN_NAMES.sub("_", key) + ".json"


def is_session_name(name: str) -> bool:
    """True for a top-level file name that can hold a session (`*.json`; hidden names too)."""
    return name.endswith(".json") and "/" not in name and "\0" not in name


def name_is_text(name: str) -> bool:
    """False for a name whose bytes are not UTF-8 (os gives it with surrogate escapes)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
