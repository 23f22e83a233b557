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
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

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


class DaemonWorker:
    """One daemon thread that runs the calls handed to it, in order; the interpreter's exit does not wait for it.

    For work the daemon may walk away from at its stop (a snapshot save told to stop ends
    at its next step, which on a loaded machine at 1M can take over a second): an
    executor's thread is joined at exit, and the stop would wait for that step after all.
    The thread is started by start() (up front, see above) or by the first submit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread if it is not running yet."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run fn(*args) on the thread; its future."""
        self.start()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)


# Snapshot saves, every store's (they take turns; each store saves one at a time anyway).
SAVES = DaemonWorker("sessiond-snapshot-save")
