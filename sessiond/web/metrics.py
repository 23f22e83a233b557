"""Prometheus metrics through prometheus-client, one registry per app."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import platform
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Info, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sessiond import __version__
from sessiond.web.front.errors import error_middleware
from sessiond.web.front.request_id import request_id_middleware, stamp_response

if TYPE_CHECKING:
    from sessiond.live.store import SessionStore
    from sessiond.live.watcher import SessionWatcher
    from sessiond.web.front.ratelimit import RateLimiter


class _IndexCollector(Collector):
    """Reads the index and watcher at scrape time, so the hot paths pay nothing."""

    def __init__(self, store: SessionStore, watcher: SessionWatcher, limiters: Callable[[], dict[str, RateLimiter]]) -> None:
        self.store = store
        self.watcher = watcher
        self.limiters = limiters

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        index, watcher = self.store.index, self.watcher
        yield GaugeMetricFamily("sessiond_sessions", "Sessions indexed and served", value=len(index))
        yield GaugeMetricFamily(
            "sessiond_invalid_files", "Files in the sessions folder that are not valid sessions", value=len(index.invalid)
        )
        yield GaugeMetricFamily("sessiond_key_collisions", "Keys claimed by more than one file", value=index.collision_count)
        yield GaugeMetricFamily(
            "sessiond_index_objects",
            "Session files held as objects rather than in the index's columns (changed since the last load; folded back once 20,000 and a tenth of the index)",
            value=index.held_as_objects,
        )
        yield GaugeMetricFamily("sessiond_ready", "1 once the first scan is indexed", value=1 if watcher.ready.is_set() else 0)
        yield GaugeMetricFamily("sessiond_watcher_up", "1 while the file watcher runs", value=1 if watcher.alive else 0)
        yield GaugeMetricFamily(
            "sessiond_seconds_since_last_change",
            "Seconds since the index last changed",
            value=time.monotonic() - self.store.last_change,
        )
        yield CounterMetricFamily(
            "sessiond_resurrections",
            "Sessions deleted through sessiond that the agent wrote back with their old history",
            value=self.store.deletions.count,
        )
        yield CounterMetricFamily("sessiond_watcher_batches", "File-system event batches received", value=watcher.batches)
        yield CounterMetricFamily("sessiond_watcher_files", "File events received", value=watcher.files_seen)
        yield CounterMetricFamily(
            "sessiond_files_applied", "Files re-read and applied to the index", value=self.store.files_applied
        )
        yield CounterMetricFamily("sessiond_rescans", "Full scans of the sessions folder", value=self.store.scans)
        yield CounterMetricFamily(
            "sessiond_reconciles", "Stat-only passes comparing the index with the disk", value=self.store.reconciles
        )
        yield CounterMetricFamily(
            "sessiond_reconcile_drift", "Files a reconcile found changed without an event", value=self.store.drift_files
        )
        yield CounterMetricFamily("sessiond_watcher_restarts", "File watches restarted after a failure", value=watcher.restarts)
        yield GaugeMetricFamily("sessiond_in_step", "1 while /health reports no problem", value=0 if watcher.problem else 1)
        yield GaugeMetricFamily("sessiond_asyncio_tasks", "Tasks on the event loop (for leak hunting)", value=_task_count())
        limited = CounterMetricFamily("sessiond_rate_limited", "Requests refused by a rate limit", labels=["limit"])
        for name, limiter in self.limiters().items():
            limited.add_metric([name], limiter.rejected)
        yield limited


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # registration describes the metrics, perhaps before the loop runs
        return 0


# Label values come from bounded sets only: a client may send any method it likes.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _RequestStats(Collector):
    """Request counts and durations in plain dicts, turned into metrics at scrape time.

    prometheus-client's own Counter/Histogram take a lock per update; on the one
    event-loop thread that is pure cost on every request (measured: ~5% of a
    detail request). Scrapes run on the loop too, so nothing here needs a lock.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # By the token's name (from the config, a bounded set), never the token.
        self.by_token: dict[tuple[str, int], int] = {}
        self.durations: dict[str, list[float]] = {}  # route -> per-bucket counts, then +Inf, then the sum

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        slots = self.durations.get(route)
        if slots is None:
            slots = self.durations[route] = [0.0] * (len(BUCKETS) + 2)
        slots[bisect.bisect_left(BUCKETS, seconds)] += 1
        slots[-1] += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily("sessiond_requests", "HTTP requests answered", labels=["route", "method", "status"])
        for (route, method, status), count in sorted(self.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        by_token = CounterMetricFamily(
            "sessiond_token_requests", "HTTP requests answered, by the name of the token they carried", labels=["token", "status"]
        )
        for (name, status), count in sorted(self.by_token.items()):
            by_token.add_metric([name, str(status)], count)
        yield by_token
        duration = HistogramMetricFamily("sessiond_request_duration_seconds", "Time to produce a response", labels=["route"])
        for route, slots in sorted(self.durations.items()):
            cumulative = list(itertools.accumulate(slots[:-1]))
            buckets = [(str(le), cumulative[i]) for i, le in enumerate(BUCKETS)] + [("+Inf", cumulative[-1])]
            duration.add_metric([route], buckets=buckets, sum_value=slots[-1])
        yield duration


class SandboxedProcessCollector(ProcessCollector):
    """prometheus-client's process_* figures, also under systemd's ProcSubset=pid.

    The stock collector reads the boot time from /proc/stat and, where that is
    hidden, silently exports nothing. The boot time is also now minus
    CLOCK_BOOTTIME, which needs no file at all.
    """

    def _boot_time(self) -> float:
        try:
            btime = super()._boot_time()  # type: ignore[no-untyped-call]
        except OSError:
            btime = None
        return float(btime) if btime else time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class Metrics:
    """The app's metrics: collectors plus request figures fed by a middleware."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = _RequestStats()
        self.registry.register(self.requests)
        # The contract: every name starts with sessiond_, process figures included.
        SandboxedProcessCollector(namespace="sessiond", registry=self.registry)
        build = Info("sessiond_build", "The running sessiond and Python", registry=self.registry)
        build.info({"version": __version__, "python": platform.python_version()})

    def watch(self, store: SessionStore, watcher: SessionWatcher, limiters: Callable[[], dict[str, RateLimiter]]) -> None:
        """Expose the index, watcher and limiter figures."""
        self.registry.register(_IndexCollector(store, watcher, limiters))

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, route: str, method: str, status: int, seconds: float, token: str | None) -> None:
        """Count one response by route template (not raw path, which would explode labels), method and token name.

        The front door works the labels out once per route (*method* already "other" for one
        outside METHODS); *token* is the name of a genuine token, or None.
        """
        self.requests.record(route, method, status, seconds)
        if token is not None:
            key = (token, status)
            self.requests.by_token[key] = self.requests.by_token.get(key, 0) + 1


# The one /metrics handler: the main app's route (routes.py) and the scrape listener's.
METRICS = web.AppKey("metrics", Metrics)


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text exposition."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


# The scrape listener: systemd passes it as the socket named ``metrics`` (systemd/sessiond-metrics.socket,
# 127.0.0.1:9477). Prometheus scrapes it the ordinary way, with no credentials
# file to hand out: the API token (which can delete sessions) never leaves
# sessiond, and what the listener serves is figures, never session data. Who
# may connect is the socket unit's business (IPAddressAllow=, the address).
METRICS_FD_NAME = "metrics"


def create_metrics_app(main: web.Application) -> web.Application:
    """A small app serving the main app's metrics (/metrics alone, no token); anything else is a JSON 404."""
    app = web.Application(middlewares=[request_id_middleware, error_middleware], client_max_size=1024)
    app[METRICS] = main[METRICS]
    app.on_response_prepare.append(stamp_response)
    app.router.add_get("/metrics", scrape)
    return app
