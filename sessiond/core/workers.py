"""What every worker process of the daemon runs first: it never outlives the daemon.

The daemon's process pools (the first scan's, the search build's) are started from
multiprocessing's fork server. A stop shuts them down; but a daemon killed outright
(SIGKILL, the out-of-memory killer, systemd's final kill) runs no stop, and a pool
worker waits for work on a pipe it holds both ends of, so it would wait for ever.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time


def in_a_worker(daemon: int, nice: int = 0) -> None:
    """A worker process's start: *nice* more; it ends when the daemon (pid *daemon*) does, however the daemon ends.

    Ctrl-C in a terminal is the daemon's to handle, not the worker's.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(nice)
    threading.Thread(target=_end_with, args=(daemon,), name="sessiond-end-with-daemon", daemon=True).start()


def _end_with(daemon: int) -> None:
    try:
        fd = os.pidfd_open(daemon)
    except ProcessLookupError:
        os._exit(0)  # gone already
    except OSError:  # no pidfd here (a kernel before 5.3): look every second
        while _alive(daemon):
            time.sleep(1.0)
        os._exit(0)
    select.select([fd], [], [])  # readable once the daemon has ended
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
