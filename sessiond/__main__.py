"""`python -m sessiond` and the `sessiond` console script run the daemon."""

import logging
import os
import sys
from typing import NoReturn

from sessiond.ops import early


def run() -> NoReturn:
    """Take SIGTERM over first (stdlib only), then import the daemon and run it; leave at once when it returns."""
    early.install()
    from sessiond.cli import main

    leave(main())


def leave(code: int) -> NoReturn:
    """Exit with *code* now that the daemon has stopped, skipping the interpreter's own teardown.

    Once serve() returns everything is closed: connections, the watcher, the worker
    processes, the snapshot (saved or abandoned), the search index, the audit trail.
    What the interpreter would still do is free every object one by one: at a million
    sessions about a second after the "stopped" line, which a stop soon after a start
    at 1M has no room for (SIGTERM -> exit within 3 s). The logs and the standard
    streams are flushed first; nothing else holds unwritten data (an abandoned save's
    thread is told to stop, and its temp file, if any, is removed by the store).
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more can be said
            pass
    os._exit(code)


# Guarded: the scan's worker processes (forkserver) import the main module again.
if __name__ == "__main__":
    run()
