"""The retention runner and its metrics (the HTTP side is web/api/retention.py).

A run waits for the first index to be whole, plans from the index alone
(retention.py), refuses the whole run when it would delete more than
retention_max_per_run, and deletes each planned session through the store's
DELETE, so each goes into the trash when the trash is on and the change feed
reports it. A session that changed since it was planned stays, and so does one
an operator restored from the trash (its restore mark, trash.py, read at every
run and preview; a run that cannot read the marks deletes nothing). The settings
are read at every run, so a reload (SIGHUP) changes the rules live.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sessiond.config import Settings
from sessiond.core.audit import RETENTION
from sessiond.core.deletions import Resurrection
from sessiond.core.errors import DeleteFailed, SessionChanged, SessionNotFound
from sessiond.core.folder import FolderChanged, FolderUnusable
from sessiond.core.retention import RulePlan, plan
from sessiond.core.trash import RestoreMark, drop_restore_marks, restore_marks
from sessiond.live.store import SessionStore

log = logging.getLogger(__name__)

SAMPLE = 10  # keys shown per rule in a preview
PREVIEW_TTL = 5.0  # seconds a preview is reused while the index does not change
RECHECK = 1.0  # seconds between looks at retention_interval while waiting (a reload may shorten it)
MARK_SETTLE = 60.0  # seconds a restore mark is kept even if the index does not show its file yet
# What a run did: deleted (every delete went through), partial (some failed), failed (every
# one failed), nothing (nothing matched, or all changed meanwhile), over_maximum, dry_run.
OUTCOMES = ("deleted", "partial", "failed", "nothing", "over_maximum", "dry_run")


class LiveSettings(Protocol):
    """Where the settings of the moment are read at each run (web.runtime.Runtime: a reload changes them)."""

    @property
    def settings(self) -> Settings: ...


@dataclass(slots=True)
class RunReport:
    """What one run did."""

    started_at: float
    outcome: str  # one of OUTCOMES
    matched: dict[str, int]  # by rule: sessions (keys)
    matched_files: dict[str, int] = field(default_factory=dict)  # by rule: their files (a collision has several)
    deleted: dict[str, int] = field(default_factory=dict)
    deleted_files: dict[str, int] = field(default_factory=dict)
    spared_recent: int = 0
    spared_restored: int = 0
    changed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    reason: str | None = None
    seconds: float = 0.0
    came_back: int = 0  # of this run's deletions, how many the agent wrote back since

    def show(self) -> dict[str, Any]:
        """The report as the API shows it."""
        return {
            "started_at": self.started_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "matched": sum(self.matched.values()),
            "matched_files": sum(self.matched_files.values()),
            "deleted": sum(self.deleted.values()),
            "deleted_files": sum(self.deleted_files.values()),
            "by_rule": {
                rule: {
                    "matched": n,
                    "matched_files": self.matched_files.get(rule, 0),
                    "deleted": self.deleted.get(rule, 0),
                    "deleted_files": self.deleted_files.get(rule, 0),
                }
                for rule, n in self.matched.items()
            },
            "spared_recent": self.spared_recent,
            "spared_restored": self.spared_restored,
            "changed_since_planned": self.changed,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "came_back": self.came_back,
        }


def _outcome(report: RunReport) -> str:
    """What a run that tried to delete did: its outcome says so even when no delete went through."""
    deleted = sum(report.deleted.values())
    if report.failed:
        return "partial" if deleted else "failed"
    return "deleted" if deleted else "nothing"  # nothing: every one changed or went meanwhile


class Retention:
    """Runs the rules on a timer and remembers what the runs did."""

    def __init__(self, store: SessionStore, runtime: LiveSettings, ready: asyncio.Event) -> None:
        self.store = store
        self.runtime = runtime
        self.ready = ready
        self.last: RunReport | None = None
        self.next_at: float | None = None
        self.deleted_total: dict[str, int] = {}
        self.came_back_total = 0  # retention's deletions the agent wrote back (core/deletions.py)
        store.resurrection_listeners.append(self._came_back)
        self._preview: tuple[tuple[int, object, int], dict[str, Any]] | None = None

    def _came_back(self, key: str, mark: Resurrection) -> None:
        if mark.deletion.by != "retention":
            return
        self.came_back_total += 1
        last = self.last
        if last is not None and last.started_at <= mark.deletion.deleted_at <= last.started_at + last.seconds + 1:
            last.came_back += 1

    def plans(self, now: float, marks: list[RestoreMark]) -> list[RulePlan]:
        settings = self.runtime.settings
        restored = {mark.identity for mark in marks}
        return plan(self.store.index, settings.retention, now, settings.retention_grace, restored)

    async def restore_marks(self) -> list[RestoreMark]:
        """The restore marks in the sessions folder (trash.py); raises OSError and folder errors."""
        folder = self.store.folder
        if folder is None:
            return []
        return await asyncio.get_running_loop().run_in_executor(None, restore_marks, folder)

    async def run_once(self) -> RunReport:
        """One run: plan, check the guard rails, delete (unless dry run), report."""
        settings = self.runtime.settings
        started = time.time()
        began = time.monotonic()
        unreadable = None
        try:
            marks = await self.restore_marks()
        except (OSError, FolderChanged, FolderUnusable) as exc:
            # Without them a restored session would be deleted again: delete nothing this time.
            marks, unreadable = [], getattr(exc, "strerror", None) or str(exc)
        plans = self.plans(started, marks)
        report = RunReport(started, "nothing", {p.rule.name: len(p.doomed) for p in plans})
        report.matched_files = {p.rule.name: p.file_count for p in plans}
        report.spared_recent = sum(p.spared_recent for p in plans)
        report.spared_restored = sum(p.spared_restored for p in plans)
        total = sum(len(p.doomed) for p in plans)
        if unreadable is not None:
            report.outcome = "failed"
            report.reason = (
                f"cannot read the restore marks in sessions/.trash/restored ({unreadable}); "
                "nothing was deleted, so no restored session goes again"
            )
        elif total > settings.retention_max_per_run:
            report.outcome = "over_maximum"
            report.reason = (
                f"{total} sessions match, more than retention_max_per_run ({settings.retention_max_per_run}); "
                "nothing was deleted: narrow the rules or raise the maximum"
            )
        elif settings.retention_dry_run:
            report.outcome = "dry_run"
            report.reason = f"retention_dry_run is on: {total} sessions would have been deleted"
        elif total:
            await self._delete(plans, report)
            report.outcome = _outcome(report)
        if unreadable is None:
            await self._forget_stale(marks, started)
        report.seconds = time.monotonic() - began
        self.last = report
        level = logging.WARNING if report.outcome in ("over_maximum", "partial", "failed") else logging.INFO
        log.log(
            level,
            "retention: %s; %d matched, %d deleted (%d of %d files), %d spared as recent, %d spared as restored, "
            "%d changed since planned, %d failed%s",
            report.outcome,
            total,
            sum(report.deleted.values()),
            sum(report.deleted_files.values()),
            sum(report.matched_files.values()),
            report.spared_recent,
            report.spared_restored,
            report.changed,
            len(report.failed),
            f" ({report.reason})" if report.reason else "",
        )
        return report

    async def _forget_stale(self, marks: list[RestoreMark], now: float) -> None:
        """Drop the marks of files changed or gone since their restore (retention judges them again)."""
        index, folder = self.store.index, self.store.folder
        stale = []
        for mark in marks:
            state = index.file_state(mark.name)
            held = None if state is None else (mark.name, state.stat.inode, state.stat.size, state.stat.mtime_ns)
            if held != mark.identity and mark.restored_at < now - MARK_SETTLE:
                stale.append(mark.id)
        if stale and folder is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, drop_restore_marks, folder, stale)
            except (OSError, FolderChanged, FolderUnusable) as exc:
                log.warning("cannot forget %d restore marks: %s", len(stale), getattr(exc, "strerror", None) or exc)

    async def _delete(self, plans: list[RulePlan], report: RunReport) -> None:
        for rule_plan in plans:
            name = rule_plan.rule.name
            for record in rule_plan.doomed:
                files = rule_plan.files[record.key]
                try:
                    await self.store.delete(record.key, expected=record, files=files, actor=RETENTION)
                except SessionChanged:
                    report.changed += 1
                except SessionNotFound:
                    pass  # gone already: nothing to do
                except DeleteFailed as exc:
                    report.failed.append({"key": record.key, "reason": str(exc)})
                else:
                    report.deleted[name] = report.deleted.get(name, 0) + 1
                    # The delete set each file's state before returning (no await since):
                    # None for a file that went, what it holds now for one changed meanwhile.
                    gone = sum(self.store.index.file_state(file.name) is None for file in files)
                    report.deleted_files[name] = report.deleted_files.get(name, 0) + gone
                    self.deleted_total[name] = self.deleted_total.get(name, 0) + 1

    async def forever(self) -> None:
        """Run every retention_interval, never before the first index is whole."""
        await self.ready.wait()
        while True:
            await self._until_due(time.monotonic())
            if self.runtime.settings.retention:
                try:
                    await self.run_once()
                except Exception:  # a failed run is reported; the next one still comes
                    log.exception("retention run failed")

    async def _until_due(self, since: float) -> None:
        # The interval is read again every RECHECK seconds, so a reload that shortens
        # it takes effect at once (not after the wait already under way, up to an hour).
        while True:
            remaining = since + self.runtime.settings.retention_interval - time.monotonic()
            self.next_at = time.time() + max(remaining, 0.0)
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, RECHECK))

    async def preview(self) -> dict[str, Any]:
        """What the next run would delete now: per rule, a count and a sample (cached a few seconds)."""
        settings = self.runtime.settings
        now = time.time()
        stamp = (self.store.index.version, settings.retention, int(now // PREVIEW_TTL))
        if self._preview is not None and self._preview[0] == stamp:
            return self._preview[1]
        try:
            marks = await self.restore_marks()
        except (OSError, FolderChanged, FolderUnusable):
            marks = []  # the run itself refuses (and says why); the preview shows the rules alone
        plans = self.plans(now, marks)
        total = sum(len(p.doomed) for p in plans)
        shown = {
            "total": total,
            "total_files": sum(p.file_count for p in plans),
            "over_maximum": total > settings.retention_max_per_run,
            "spared_recent": sum(p.spared_recent for p in plans),
            "spared_restored": sum(p.spared_restored for p in plans),
            "rules": [_preview_of(p) for p in plans],
        }
        self._preview = (stamp, shown)
        return shown


def _preview_of(rule_plan: RulePlan) -> dict[str, Any]:
    # Every file that goes is counted, and those of a sampled key with several are named.
    sample = [record.key for record in rule_plan.doomed[:SAMPLE]]
    return {
        "rule": rule_plan.rule.name,
        "count": len(rule_plan.doomed),
        "files": rule_plan.file_count,
        "sample": sample,
        "collisions": {key: [file.name for file in rule_plan.files[key]] for key in sample if len(rule_plan.files[key]) > 1},
    }


class RetentionMetrics(Collector):
    """Deleted by rule, the last run's time and outcome, read at scrape time."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        deleted = CounterMetricFamily("sessiond_retention_deleted", "Sessions deleted by retention, by rule", labels=["rule"])
        for rule in self.retention.runtime.settings.retention:
            deleted.add_metric([rule.name], self.retention.deleted_total.get(rule.name, 0))
        yield deleted
        last = self.retention.last
        yield GaugeMetricFamily(
            "sessiond_retention_last_run_timestamp_seconds",
            "When the last retention run started (0: none yet)",
            value=last.started_at if last else 0,
        )
        outcome = GaugeMetricFamily("sessiond_retention_last_run_outcome", "1 for the last run's outcome", labels=["outcome"])
        for name in OUTCOMES:
            outcome.add_metric([name], 1 if last and last.outcome == name else 0)
        yield outcome
