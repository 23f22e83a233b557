"""When to reconcile the index with the disk: after every burst of events, and on a slow timer.

Pure: the watcher passes in monotonic times, so this is tested without waiting.

Why after every burst: the kernel's event queue overflows only during a burst,
watchfiles does not say when it did, and the events a burst loses are the ones
at its end. So every burst (the first batch after a quiet spell and whatever
follows it) is checked once it has settled. Each reconcile is a stat-only walk,
and the next one waits at least DUTY times as long as the last took, so on a huge
folder the checks thin out instead of eating a core.
"""

from __future__ import annotations

import math

SETTLE = 0.3  # seconds without events before a burst counts as over
MAX_DEFER = 5.0  # a burst that never settles is still checked this often
MIN_GAP = 0.5  # seconds between two reconciles, at the least
DUTY = 10.0  # ... and at least DUTY times the duration of the last one


class ReconcileSchedule:
    """Tracks bursts of file events and says when the next reconcile is due."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval  # the periodic safety net; 0 turns it off
        self._burst_start: float | None = None
        self._last_event = -math.inf
        self._not_before = now
        self._periodic_due = now + interval if interval > 0 else math.inf
        self._soon = False
        self._duty_after = now

    def saw_events(self, now: float) -> None:
        """A batch of events arrived."""
        if self._burst_start is None:
            self._burst_start = now
        self._last_event = now

    def soon(self, now: float) -> None:
        """Events were lost just now (a watch had to be set up again): check as soon as allowed."""
        self._soon = True
        self.saw_events(now)

    def due_at(self) -> float:
        """Monotonic time of the next reconcile (inf: none planned)."""
        due = self._periodic_due
        if self._soon:
            # Lost events are known, not suspected: only the duty cycle holds the check back.
            return min(due, self._duty_after)
        if self._burst_start is not None:
            burst_over = min(self._last_event + SETTLE, self._burst_start + MAX_DEFER)
            due = min(due, max(burst_over, self._not_before))
        return due

    def done(self, started: float, finished: float, cost: float | None = None) -> None:
        """A reconcile ran from *started* to *finished*, of which *cost* seconds were work (default: all)."""
        cost = finished - started if cost is None else cost
        # Events that arrived while it ran may have been lost after its walk: check them too.
        self._burst_start = started if self._last_event >= started else None
        self._soon = False
        self._duty_after = finished + DUTY * cost
        self._not_before = max(self._duty_after, finished + MIN_GAP)
        if self.interval > 0:
            self._periodic_due = finished + self.interval
