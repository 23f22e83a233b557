"""Read and parse one oversized session file in a short-lived child process.

Parsing a very large session file builds an object tree several times the
file's size and holds the GIL while it does. Done in the daemon, that stalls
the event loop for seconds and leaves the heap bloated long after. Done in a
child, the daemon only waits (in an executor thread) for a small pickled
result, and the child's memory goes back to the system when it exits.

The child runs sessiond/parse_child.py. A plain subprocess rather than a multiprocessing pool: `python -m sessiond` has
no `__main__` guard for a spawned worker to respect, and a fork would copy the
locks of the daemon's threads.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessiond.core.folder import Folder
    from sessiond.core.index import FileState

TIMEOUT = 300.0
CHILD = "sessiond.core.parse_child"  # the child's entry point (it imports the loader; this module must not)
CHANGED = 4  # the child's exit code when the folder is no longer the one verified
# One child at a time: big parses queue instead of multiplying their memory.
_one_at_a_time = threading.Lock()
# The folder this sessiond package was imported from, so the child imports the same code.
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ChildFailed(RuntimeError):
    """The child died or timed out; the message is a short reason, safe to show."""


def read_in_child(folder: Folder, name: str, max_bytes: int) -> FileState:
    """loader.read_state of *name* run in a child process. Blocking: call from a thread.

    The child opens the folder itself and checks it is still the one verified.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_SOURCE_ROOT, os.environ.get("PYTHONPATH")]))}
    dev, ino = folder.ident
    # The name goes as bytes through argv (os.fsencode), so any file name survives the trip.
    cmd: list[str | bytes] = [sys.executable, "-m", CHILD, folder.path, str(dev), str(ino), os.fsencode(name), str(max_bytes)]
    with _one_at_a_time:
        try:
            proc = subprocess.run(cmd, capture_output=True, env=env, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise ChildFailed(f"parse took over {TIMEOUT:.0f}s") from None
    if proc.returncode == CHANGED:
        raise ChildFailed("sessions folder changed")
    if proc.returncode != 0:
        # A negative code is a signal: SIGKILL here is almost always the out-of-memory killer.
        why = "killed (out of memory?)" if proc.returncode < 0 else f"failed (exit {proc.returncode})"
        raise ChildFailed(f"parse worker {why}")
    state: FileState = pickle.loads(proc.stdout)
    return state
