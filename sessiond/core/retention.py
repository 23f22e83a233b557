"""Retention rules and the plan they make of the index. Pure: no I/O, no event loop.

A rule names a key prefix ("" for every key) and either an idle age (sessions
whose `updated_at` is older than that many days go), a cap (a prefix keeps at
most that many sessions; the least recently updated go first), or both. The
first rule whose prefix matches a key decides for it; keys no rule matches are
kept. So a rule may not follow one with a shorter prefix of its own (it would
never decide): the longer prefix goes first.

Whatever a rule says, a session updated (or any of whose files changed) within
the grace period is never planned for deletion, nor is one whose file an
operator restored from the trash and nothing has written since (trash.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sessiond.core.index import SessionIndex, SessionRecord
from sessiond.core.names import MAX_KEY_LENGTH

DAY = 86400.0


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionRule:
    """Delete sessions under *prefix* idle for *idle_days*, and/or beyond the newest *keep_at_most*."""

    prefix: str = ""
    idle_days: float | None = None
    keep_at_most: int | None = None

    @property
    def name(self) -> str:
        """How logs, metrics and the API name the rule: its prefix, or "*" for every key."""
        return self.prefix or "*"

    def describe(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return {"prefix": self.prefix, "idle_days": self.idle_days, "keep_at_most": self.keep_at_most}


def parse_rules(raw: object) -> tuple[RetentionRule, ...]:
    """Rules from the config (a list of tables); ValueError says what is wrong with which one."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("expected a list of rules ([[retention]] tables in the config file)")
    rules: list[RetentionRule] = []
    for i, item in enumerate(raw, 1):
        where = f"rule {i}"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} is not a table of prefix, idle_days, keep_at_most")
        unknown = sorted(set(item) - {"prefix", "idle_days", "keep_at_most"})
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r}; use prefix, idle_days, keep_at_most")
        prefix = item.get("prefix", "")
        if not isinstance(prefix, str) or len(prefix) > MAX_KEY_LENGTH:
            raise ValueError(f"{where}: prefix must be text of at most {MAX_KEY_LENGTH} characters")
        idle = item.get("idle_days")
        if idle is not None and (
            isinstance(idle, bool) or not isinstance(idle, (int, float)) or not math.isfinite(idle) or idle <= 0
        ):
            raise ValueError(f"{where}: idle_days must be a number of days above 0")
        cap = item.get("keep_at_most")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise ValueError(f"{where}: keep_at_most must be a whole number from 0 up")
        if idle is None and cap is None:
            raise ValueError(f"{where}: give idle_days, keep_at_most or both (a rule that deletes nothing is a mistake)")
        rule = RetentionRule(prefix, None if idle is None else float(idle), cap)
        for j, earlier in enumerate(rules, 1):
            if earlier.prefix == rule.prefix:
                raise ValueError(f"{where}: prefix {prefix!r} already has a rule (the first one would always decide)")
            if rule.prefix.startswith(earlier.prefix):
                # The first match decides, so this rule would never apply: a longer idle time
                # meant to keep these sessions would silently be the shorter one of rule j.
                raise ValueError(
                    f"{where}: prefix {prefix!r} is shadowed by rule {j} (prefix {earlier.prefix!r}), "
                    "which decides for every key it would; order the longer prefix first"
                )
        rules.append(rule)
    return tuple(rules)


@dataclasses.dataclass(slots=True)
class RulePlan:
    """What one rule would delete now, and what the grace period spares.

    A key is deleted with every file claiming it (a collision), so the plan keeps
    those files as it judged them: the delete removes exactly these or nothing.
    """

    rule: RetentionRule
    doomed: list[SessionRecord] = dataclasses.field(default_factory=list)  # the served record of each key
    files: dict[str, list[SessionRecord]] = dataclasses.field(default_factory=dict)  # key -> its files, served first
    spared_recent: int = 0
    spared_restored: int = 0

    @property
    def file_count(self) -> int:
        """How many files the doomed keys hold."""
        return sum(len(self.files[record.key]) for record in self.doomed)


def _recent(record: SessionRecord, cutoff: float) -> bool:
    # The session's own time, or its file's: a file just written is never touched.
    return record.updated_at >= cutoff or record.stat.mtime_ns / 1e9 >= cutoff


def _claimants(index: SessionIndex, key: str) -> list[SessionRecord]:
    return [state for name in index.files_for(key) if isinstance(state := index.file_state(name), SessionRecord)]


def _restored(record: SessionRecord, restored: Collection[tuple[str, int, int, int]]) -> bool:
    st = record.stat
    return (record.name, st.inode, st.size, st.mtime_ns) in restored


def plan(
    index: SessionIndex,
    rules: Iterable[RetentionRule],
    now: float,
    grace: float,
    restored: Collection[tuple[str, int, int, int]] = frozenset(),
) -> list[RulePlan]:
    """What each rule would delete now, from the index alone (no disk).

    *restored* names files put back from the trash, as (name, inode, size, mtime_ns)
    (trash.RestoreMark.identity): a key with such a file, still that very file, stays.
    """
    rules = list(rules)
    plans = [RulePlan(rule) for rule in rules]
    if not rules:
        return plans
    claimed: dict[int, list[SessionRecord]] = {i: [] for i in range(len(rules))}
    for record in index.records():
        for i, rule in enumerate(rules):
            if record.key.startswith(rule.prefix):
                claimed[i].append(record)
                break  # the first matching rule decides
    recent_cutoff = now - grace
    for i, rule in enumerate(rules):
        candidates = claimed[i]
        doomed: dict[str, SessionRecord] = {}
        if rule.idle_days is not None:
            idle_cutoff = now - rule.idle_days * DAY
            doomed.update((r.key, r) for r in candidates if r.updated_at < idle_cutoff)
        if rule.keep_at_most is not None and len(candidates) > rule.keep_at_most:
            oldest_first = sorted(candidates, key=lambda r: (r.updated_at, r.key))
            doomed.update((r.key, r) for r in oldest_first[: len(candidates) - rule.keep_at_most])
        for record in sorted(doomed.values(), key=lambda r: (r.updated_at, r.key)):
            files = _claimants(index, record.key)
            # Every file of the key goes with it, so any one of them written within the
            # grace period (whichever its content's age) keeps the whole key.
            if any(_recent(file, recent_cutoff) for file in files):
                plans[i].spared_recent += 1
            elif restored and any(_restored(file, restored) for file in files):
                plans[i].spared_restored += 1  # an operator's restore sticks until the file changes
            else:
                plans[i].doomed.append(record)
                plans[i].files[record.key] = files
    return plans
