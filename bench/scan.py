"""The one-process baselines for time to ready: read every file, parse every file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


def _session_entries(sessions_dir: Path) -> Iterator[os.DirEntry]:
    for entry in os.scandir(sessions_dir):
        if entry.name.endswith(".json") and entry.is_file(follow_symlinks=False):
            yield entry


def read_all(sessions_dir: Path) -> tuple[int, float]:
    """Read every session file (and so warm the page cache); (files, seconds)."""
    started = time.perf_counter()
    files = 0
    for entry in _session_entries(sessions_dir):
        with open(entry.path, "rb") as handle:
            handle.read()
        files += 1
    return files, time.perf_counter() - started


def warm_page_cache(sessions_dir: Path, max_passes: int = 3) -> list[float]:
    """Read every file until two passes agree within 25%; the seconds of each pass.

    This machine pages out file pages unused for about a minute (DAMON
    reclaim), so a cache is only warm if it was read just before; the last
    pass is the warm floor of any scan.
    """
    passes: list[float] = []
    while len(passes) < max_passes:
        passes.append(read_all(sessions_dir)[1])
        if len(passes) >= 2 and passes[-2] <= 1.25 * passes[-1]:
            break
    return passes


def stdlib_json_scan(sessions_dir: Path) -> tuple[int, float]:
    """os.scandir + open + json.loads of every file, in one process; (sessions, seconds)."""
    started = time.perf_counter()
    keys = []
    for entry in _session_entries(sessions_dir):
        with open(entry.path, "rb") as handle:
            keys.append(json.loads(handle.read())["key"])
    return len(keys), time.perf_counter() - started
