"""Deletions sessiond made, remembered to notice a deleted session written back (a resurrection).

The agent (grip) keeps up to 200 sessions in its process and reads that cache before
the disk; a session deleted under it is written again, old history and old
`created_at`, on that chat's next message. A key deleted through sessiond that comes
back with a `created_at` from before its deletion is that session come back, not a
new one: a new session the agent starts after the delete is created after it.

Bounded: the last MAX_DELETIONS deletions and the last MAX_MARKS resurrections, the
oldest forgotten first. Saved (temp file + rename) beside the snapshot when a state
directory is set, so a session that comes back while sessiond is stopped is noticed
at its next start.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

from sessiond.core.index import SessionRecord

log = logging.getLogger(__name__)

MAX_DELETIONS = 10_000
MAX_MARKS = 10_000
FORMAT = 1


class Deletion(NamedTuple):
    """One key sessiond deleted: when, by whom, and the `created_at` it had."""

    key: str
    created_at: float
    deleted_at: float
    by: str  # "api" (DELETE, batchDelete, the page) or "retention"


class Resurrection(NamedTuple):
    """A deleted key written back with its old history."""

    deletion: Deletion
    resurrected_at: float

    def show(self) -> dict[str, Any]:
        """As the detail answer and the change feed give it."""
        return {
            "deleted_at": self.deletion.deleted_at,
            "deleted_by": self.deletion.by,
            "resurrected_at": self.resurrected_at,
        }


class Deletions:
    """The last deletions, and the sessions among them that came back."""

    def __init__(self) -> None:
        self.recent: OrderedDict[str, Deletion] = OrderedDict()
        self.marks: OrderedDict[str, Resurrection] = OrderedDict()
        self.count = 0  # resurrections seen since start (the counter metric)
        self.dirty = False

    def remember(self, record: SessionRecord, deleted_at: float, by: str) -> None:
        """*record*'s key was just deleted through sessiond."""
        self.recent.pop(record.key, None)
        self.marks.pop(record.key, None)  # deleted again: whatever came back is gone too
        self.recent[record.key] = Deletion(record.key, record.created_at, deleted_at, by)
        while len(self.recent) > MAX_DELETIONS:
            self.recent.popitem(last=False)
        self.dirty = True

    def forget(self, key: str) -> None:
        """*key* came back through sessiond (a trash restore): not a resurrection."""
        if self.recent.pop(key, None) is not None:
            self.dirty = True

    def check(self, record: SessionRecord, now: float) -> Resurrection | None:
        """The resurrection *record* is, if its key was deleted and it was created before that."""
        deletion = self.recent.get(record.key)
        if deletion is None:
            return None
        if not _number(record.created_at) or record.created_at > deletion.deleted_at:
            return None  # a new session under the same key (kept in mind: the old one may still come)
        del self.recent[record.key]
        mark = Resurrection(deletion, now)
        self.marks.pop(record.key, None)
        self.marks[record.key] = mark
        while len(self.marks) > MAX_MARKS:
            self.marks.popitem(last=False)
        self.count += 1
        self.dirty = True
        return mark

    def mark_of(self, record: SessionRecord) -> Resurrection | None:
        """The resurrection *record* still is (its `created_at` from before the deletion)."""
        mark = self.marks.get(record.key)
        if mark is None or not _number(record.created_at) or record.created_at > mark.deletion.deleted_at:
            return None
        return mark

    # -- kept across restarts ----------------------------------------------------

    def save(self, path: Path) -> None:
        """Write both tables to *path* (temp file + rename). Raises OSError."""
        doc = {
            "format": FORMAT,
            "deletions": [list(d) for d in self.recent.values()],
            "resurrections": [[*m.deletion, m.resurrected_at] for m in self.marks.values()],
        }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(doc, out, separators=(",", ":"))
        os.replace(tmp, path)
        self.dirty = False

    @classmethod
    def load(cls, path: Path) -> Deletions:
        """What *path* holds; empty (with one warning) when it is missing or not ours."""
        kept = cls()
        try:
            with open(path, encoding="utf-8") as src:
                doc = json.load(src)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a deletions file of this version")
            for row in doc["deletions"][-MAX_DELETIONS:]:
                deletion = _deletion(row)
                kept.recent[deletion.key] = deletion
            for row in doc["resurrections"][-MAX_MARKS:]:
                deletion = _deletion(row[:4])
                kept.marks[deletion.key] = Resurrection(deletion, float(row[4]))
        except FileNotFoundError:
            return kept
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            log.warning("ignoring the deletions file %s (the next save replaces it): %s", path, exc)
            return cls()
        return kept


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _deletion(row: object) -> Deletion:
    if not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str) or row[3] not in ("api", "retention"):
        raise ValueError("a row is not a deletion")
    key, created, deleted, by = row
    if not (_number(created) and _number(deleted)):
        raise ValueError("a deletion's times are not numbers")
    return Deletion(key, created, float(deleted), by)
