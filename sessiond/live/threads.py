"""Thread pools whose threads exist before the daemon gets busy.

A ThreadPoolExecutor starts a thread on a submit that finds none idle, and
`Thread.start()` waits until the new thread runs. On the event loop that wait
is the loop's: right after the first ready at 1M sessions, while the snapshot's
encoding and the search's plan held the GIL, one such start held the loop for
117-249 ms (found with a probe that dumps the loop thread's stack when a 10 ms
heartbeat is late). Started up front, while nothing else runs, a submit finds an
idle thread and returns at once.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

# asyncio's own default for its executor.
DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)


def prestarted(executor: concurrent.futures.ThreadPoolExecutor, count: int) -> concurrent.futures.ThreadPoolExecutor:
    """*executor* with *count* of its threads started now (each waits for the others, so each is a new one)."""
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        executor.submit(barrier.wait, 10.0)
    barrier.wait(10.0)
    return executor


def default_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The loop's default executor (`run_in_executor(None, ...)`), every thread started."""
    pool = concurrent.futures.ThreadPoolExecutor(DEFAULT_THREADS, thread_name_prefix="sessiond")
    return prestarted(pool, DEFAULT_THREADS)
