"""GET /api/v1/openapi.json: an OpenAPI 3.1 description of every endpoint.

Built once from Python, so the filter vocabulary is written down in one place; a test
checks it against the app's routes, and schemathesis checks the app against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from sessiond import __version__
from sessiond.core.names import MAX_KEY_LENGTH
from sessiond.core.query import MAX_CURSOR, MAX_LIMIT, SORTS
from sessiond.live.retention import OUTCOMES

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


TIME: dict[str, Any] = {"type": "number"}
COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
KEY: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}

_FILTER_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "prefix": ({"type": "string", "maxLength": MAX_KEY_LENGTH}, "Only keys starting with this text."),
    "contains": ({"type": "string", "maxLength": MAX_KEY_LENGTH}, "Only keys holding this text anywhere (case-sensitive)."),
    "created_after": (TIME, "Only sessions created after this time (Unix seconds, strict)."),
    "created_before": (TIME, "Only sessions created before this time (Unix seconds, strict)."),
    "updated_after": (TIME, "Only sessions updated after this time (Unix seconds, strict)."),
    "updated_before": (TIME, "Only sessions updated before this time (Unix seconds, strict)."),
    "min_messages": (COUNT, "Only sessions with at least this many messages."),
    "max_messages": (COUNT, "Only sessions with at most this many messages."),
}
FILTER = [_query(name, schema, doc) for name, (schema, doc) in _FILTER_DOCS.items()]
ORDER = [
    _query("sort", {"type": "string", "enum": list(SORTS)}, "Sort field (default key); ties go by key."),
    _query("order", {"type": "string", "enum": ["asc", "desc"]}, "Sort direction (default asc)."),
]
PAGE = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Page size; the answer has next_cursor."),
    _query(
        "cursor",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": MAX_CURSOR},
        "next_cursor of the previous page, with the same filter, sort and order.",
    ),
    _query("include", {"type": "string", "enum": ["meta"]}, "meta: objects instead of bare keys."),
]
KEY_PATH = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": KEY,
    "example": "telegram:123456789",
    "description": "The session key: the rest of the path, percent-decoded once.",
}

VERSION = {
    "type": "string",
    "description": "The identity of the session's file as read (opaque; the export's ETag unquoted). "
    "It changes whenever the file is rewritten; hand it to sessions:batchDelete's expect.",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string"}, "parameter": {"type": "string"}},
    },
    "SessionMeta": {
        "type": "object",
        "required": ["key", "message_count", "created_at", "updated_at", "size"],
        "properties": {
            "key": {"type": "string"},
            "message_count": COUNT,
            "created_at": TIME,
            "updated_at": TIME,
            "size": {**COUNT, "description": "File size in bytes."},
            "version": VERSION,
        },
    },
    "SessionList": {
        "type": "object",
        "required": ["sessions", "count"],
        "properties": {
            "sessions": {"type": "array", "items": {"oneOf": [{"type": "string"}, _ref("SessionMeta")]}},
            "count": {**COUNT, "description": "How many sessions match (all pages)."},
            "next_cursor": {"type": ["string", "null"], "description": "Present with parameters; null on the last page."},
        },
    },
    "SessionDetail": {
        "type": "object",
        "required": ["key", "message_count", "created_at", "updated_at", "age_seconds"],
        "properties": {
            "key": {"type": "string"},
            "message_count": COUNT,
            "created_at": TIME,
            "updated_at": TIME,
            "age_seconds": {"type": "number"},
            "version": VERSION,
            "title": {
                "type": ["string", "null"],
                "description": "With include=title and search on: the first user message, one line (null: not indexed yet).",
            },
            "resurrected": {
                "type": "object",
                "description": (
                    "Present when the session was deleted through sessiond and the agent wrote it back with its "
                    "old history (a created_at from before the deletion): its process cache still held it."
                ),
                "required": ["deleted_at", "deleted_by", "resurrected_at"],
                "properties": {
                    "deleted_at": TIME,
                    "deleted_by": {"type": "string", "enum": ["api", "retention"]},
                    "resurrected_at": TIME,
                },
            },
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["deleted", "key"],
        "properties": {"deleted": {"const": True}, "key": {"type": "string"}},
    },
    "Filter": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            **{name: schema for name, (schema, _) in _FILTER_DOCS.items()},
            "prefix": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "contains": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
        },
    },
    "BatchDelete": {
        "type": "object",
        "additionalProperties": False,
        "oneOf": [{"required": ["keys"]}, {"required": ["filter"]}],
        "not": {"required": ["filter", "expect"]},  # expect names keys that were shown
        "properties": {
            "keys": {
                "type": "array",
                "items": KEY,
                "minItems": 1,
                "maxItems": 10_000,
                "description": "At most 10,000 keys; the body at most 2 MiB.",
            },
            "filter": _ref("Filter"),
            "dry_run": {"type": "boolean", "default": False},
            "max": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1_000_000,
                "default": 1000,
                "description": "Refuse (409) when more sessions than this match.",
            },
            "expect": {
                "type": "object",
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": "With keys only: key -> the version the client was shown (list, detail or "
                "dry-run answer). Such a key is deleted only if its session is still that very file; one "
                'rewritten since stays and is reported in failed ("changed since it was shown; not deleted").',
            },
        },
    },
    "Failure": {
        "type": "object",
        "required": ["reason"],
        "properties": {"key": {"type": "string"}, "id": {"type": "string"}, "reason": {"type": "string"}},
    },
    "BatchDeleteResult": {
        "type": "object",
        "required": ["dry_run", "matched", "deleted", "failed"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "matched": {"type": "array", "items": {"type": "string"}},
            "deleted": {"type": "array", "items": {"type": "string"}},
            "failed": {"type": "array", "items": _ref("Failure")},
            "versions": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Dry runs only: each matched key's version now, to send back as expect.",
            },
        },
    },
    "TrashEntry": {
        "type": "object",
        "required": ["id", "key", "deleted_at", "purge_at", "message_count", "created_at", "updated_at", "size"],
        "properties": {
            "id": {"type": "string"},
            "key": {"type": ["string", "null"]},
            "deleted_at": TIME,
            "purge_at": TIME,
            "message_count": COUNT,
            "created_at": TIME,
            "updated_at": TIME,
            "size": COUNT,
        },
    },
    "Restore": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "keys": {"type": "array", "items": KEY, "minItems": 1},
            "ids": {"type": "array", "items": KEY, "minItems": 1},
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "Segment": {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}, "match": {"type": "boolean", "const": True}},
        "description": "A piece of a snippet, plain text (never markup); `match` marks a searched word.",
    },
    "SearchHit": {
        "type": "object",
        "required": ["message", "role", "snippet"],
        "properties": {
            "message": {"type": ["integer", "null"], "minimum": 0, "description": "Index in `messages` (null: the summary)."},
            "role": {"type": "string"},
            "snippet": {"type": "array", "items": _ref("Segment")},
        },
    },
    "SearchResult": {
        "type": "object",
        "required": ["key", "updated_at", "message_count", "title", "score", "hits"],
        "properties": {
            "key": {"type": "string"},
            "updated_at": {"type": "number"},
            "message_count": {"type": "integer", "minimum": 0},
            "title": {"type": "string", "description": "The first user message, one line, at most 80 characters."},
            "score": {
                "type": "number",
                "description": "bm25 relevance, higher is better; 0 where the window goes newest first (more than 2,000"
                " matches, or only prefixes of one or two characters).",
            },
            "hits": {"type": "array", "items": _ref("SearchHit"), "maxItems": 3},
        },
    },
    "SearchPage": {
        "type": "object",
        "required": ["query", "complete", "indexed", "total", "results", "next_cursor"],
        "properties": {
            "query": {"type": "string"},
            "complete": {"type": "boolean", "description": "False while the index is being built: the results are what it has."},
            "indexed": {"type": "integer", "minimum": 0},
            "total": {"type": "integer", "minimum": 0},
            "results": {"type": "array", "items": _ref("SearchResult")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Stats": {
        "type": "object",
        "required": [
            "sessions",
            "bytes",
            "channels",
            "other_channels",
            "days",
            "messages",
            "invalid_files",
            "collisions",
            "watcher",
            "problem",
            "trash",
        ],
        "properties": {
            "sessions": COUNT,
            "bytes": {**COUNT, "description": "Total size of the served session files."},
            "channels": {
                "type": "array",
                "description": "Sessions per channel (the key up to its first `:`; "
                '"" for keys without one), most first, at most 50.',
                "items": {
                    "type": "object",
                    "required": ["channel", "sessions"],
                    "properties": {"channel": {"type": "string"}, "sessions": COUNT},
                },
            },
            "other_channels": {
                "type": "object",
                "required": ["channels", "sessions"],
                "description": "What the channels beyond the first 50 hold.",
                "properties": {"channels": COUNT, "sessions": COUNT},
            },
            "days": {
                "type": "array",
                "minItems": 30,
                "maxItems": 30,
                "description": "The last 30 days (UTC), oldest first: sessions created and last updated on each.",
                "items": {
                    "type": "object",
                    "required": ["date", "start", "created", "updated"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "start": COUNT,
                        "created": COUNT,
                        "updated": COUNT,
                    },
                },
            },
            "messages": {
                "type": "array",
                "description": "Histogram of message counts: 0, 1, 2-3, 4-7, ... up to the largest bucket in use.",
                "items": {
                    "type": "object",
                    "required": ["min", "max", "sessions"],
                    "properties": {"min": COUNT, "max": COUNT, "sessions": COUNT},
                },
            },
            "invalid_files": COUNT,
            "collisions": {**COUNT, "description": "Keys claimed by more than one file."},
            "watcher": {"type": "string", "description": "The watcher's state, e.g. ready."},
            "problem": {"type": ["string", "null"], "description": "Why the daemon is not healthy, or null."},
            "trash": {
                "type": "object",
                "required": ["enabled", "days"],
                "properties": {"enabled": {"type": "boolean"}, "days": {"type": "number"}},
            },
        },
    },
}

GUARDED = {
    "401": _error("Missing or wrong token."),
    "403": _error("The token's scope does not allow this call; `detail` names the token and what it may not do."),
    "429": _error("Rate limit exceeded."),
}
BAD = {"400": _error("A parameter is wrong; `parameter` names it.")}
NOT_FOUND = {"404": _error("Session not found.")}
TRASH_OFF = {"404": _error("Trash is off (trash_days = 0).")}
TOO_BIG = {"413": _error("Request body too large.")}


def _op(
    summary: str,
    responses: dict[str, Any],
    parameters: Sequence[Any] = (),
    body: str | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses if public else {**responses, **GUARDED}}
    if parameters:
        op["parameters"] = list(parameters)
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    if public:
        op["security"] = []
    return op


PATHS: dict[str, Any] = {
    "/health": {
        "get": _op(
            "Liveness and readiness (no token, never rate limited).",
            {
                "200": _json(_ref("Health"), "Indexed, watcher running."),
                "503": _json(_ref("Health"), "Starting, or the watcher is down; `reason` says which."),
            },
            public=True,
        )
    },
    "/readyz": {
        "get": _op(
            "Readiness, the same answer as /health (no token, never rate limited).",
            {
                "200": _json(_ref("Health"), "Indexed, watcher running."),
                "503": _json(_ref("Health"), "Not ready; `reason` says why."),
            },
            public=True,
        )
    },
    "/livez": {
        "get": _op(
            "Liveness: 503 means restart me (no token, never rate limited).",
            {
                "200": _json(_ref("Health"), "The process can serve."),
                "503": _json(_ref("Health"), "The watcher failed for good."),
            },
            public=True,
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics, every name sessiond_*.",
            {
                "200": {"description": "Text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
            },
        )
    },
    "/api/v1/health": {
        "get": _op(
            "Version, uptime and index figures; `search`: `{enabled}`, and while on `complete`, `indexed`, `total`.",
            {
                "200": _json(_ref("Health"), "Healthy."),
                "503": _json(_ref("Health"), "Not ready."),
            },
        )
    },
    "/api/v1/sessions": {
        "get": _op(
            "List sessions. Without parameters: every key, ascending, with an ETag.",
            {
                "200": _json(_ref("SessionList"), "Keys (or metadata with include=meta) and the count."),
                "304": {"description": "No parameters, and If-None-Match matched the list's ETag."},
                **BAD,
            },
            FILTER + ORDER + PAGE,
        )
    },
    "/api/v1/sessions/{key}": {
        "get": _op(
            "One session's metadata.",
            {"200": _json(_ref("SessionDetail"), "Found."), **BAD, **NOT_FOUND},
            [KEY_PATH, _query("include", {"type": "string", "enum": ["title"]}, "title: add the session's title.")],
        ),
        "delete": _op(
            "Delete a session (to the trash when trash_days > 0).",
            {"200": _json(_ref("Deleted"), "Deleted."), **BAD, **NOT_FOUND},
            [KEY_PATH],
        ),
    },
    "/api/v1/sessions:batchDelete": {
        "post": _op(
            "Delete sessions by explicit keys or by a non-empty filter, at most `max`; with `expect`, "
            "only the version of each key that the client was shown.",
            {
                "200": _json(_ref("BatchDeleteResult"), "What matched, was deleted, and failed (with reasons)."),
                **BAD,
                "409": _error("More sessions match than `max`."),
                **TOO_BIG,
            },
            body="BatchDelete",
        )
    },
    "/api/v1/events": {
        "get": _op(
            "Change feed (Server-Sent Events): created, updated, deleted, resync; keep-alive comments. "
            "After an updated event with fewer messages than before, compacted (before, after: the message "
            "counts; the agent consolidated the session under a summary, or cleared it); after a created event "
            "for a key deleted through sessiond that came back with its old created_at, resurrected "
            "(deleted_at, deleted_by, resurrected_at).",
            {
                "200": {
                    "description": "An endless event stream; each event's id resumes it (Last-Event-ID).",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **BAD,
            },
            [
                _query("prefix", _FILTER_DOCS["prefix"][0], "Only events for keys starting with this text."),
                _query(
                    "since",
                    COUNT,
                    "Resume after this event id (as Last-Event-ID does); an id not in the buffer, or none of ours, gets a resync event.",
                ),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The id of the last event received; resumes from the buffer, else a resync event.",
                },
            ],
        )
    },
    "/api/v1/export": {
        "get": _op(
            "With key: that session's file as stored (or, with format=markdown, the conversation as Markdown). "
            "Otherwise: NDJSON of every session the filter matches.",
            {
                "200": {
                    "description": "The file (application/json, with ETag) or NDJSON, streamed: each line a "
                    "session file exactly as stored (NaN and big integers included). A file that "
                    "changes while it is sent cuts the connection instead of being passed off as "
                    "whole; an NDJSON export that cannot go on ends with the line "
                    '{"error": {"detail": "..."}}.',
                    "content": {
                        JSON: {"schema": {"type": "object"}},
                        "application/x-ndjson": {"schema": {"type": "string"}},
                        "text/markdown": {"schema": {"type": "string"}},
                    },
                },
                "304": {"description": "If-None-Match matched the file's ETag."},
                **BAD,
                **NOT_FOUND,
            },
            [
                _query(
                    "key", KEY, "Export this one session (alone: not with filter parameters). Answers If-None-Match with 304."
                ),
                _query(
                    "format",
                    {"type": "string", "enum": ["json", "markdown"]},
                    "json (default): as stored. markdown (with key only): text/markdown, an attachment; roles as "
                    "headings, the summary first, times in UTC, each message's text verbatim in a fenced block "
                    "(control and direction characters as \\uXXXX escapes), tool calls and arguments in fenced blocks.",
                ),
                *FILTER,
                *ORDER,
            ],
        )
    },
    "/api/v1/retention": {
        "get": _op(
            "Retention: the rules, the last run, when the next comes, and a preview of what it would delete.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["rules", "interval_seconds", "max_per_run", "dry_run", "grace_seconds", "last_run"],
                        "properties": {
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "prefix": {"type": "string"},
                                        "idle_days": {"type": ["number", "null"]},
                                        "keep_at_most": {"type": ["integer", "null"]},
                                    },
                                },
                            },
                            "interval_seconds": TIME,
                            "max_per_run": COUNT,
                            "dry_run": {"type": "boolean"},
                            "grace_seconds": TIME,
                            "last_run": {
                                "type": ["object", "null"],
                                "description": (
                                    "What the last run did. outcome: deleted (every planned delete went through), "
                                    "partial (some failed: see failed), failed (every one failed, nothing was deleted), "
                                    "nothing (nothing matched, or all changed since planned), over_maximum (nothing "
                                    "was deleted) or dry_run. matched and deleted count sessions; matched_files and "
                                    "deleted_files their files."
                                ),
                                "properties": {
                                    "outcome": {"type": "string", "enum": list(OUTCOMES)},
                                    "matched": COUNT,
                                    "matched_files": COUNT,
                                    "deleted": COUNT,
                                    "deleted_files": COUNT,
                                    "failed": {"type": "array"},
                                    "came_back": {
                                        **COUNT,
                                        "description": "Of this run's deletions, how many the agent has written back since.",
                                    },
                                },
                            },
                            "came_back_total": {
                                **COUNT,
                                "description": "Retention's deletions the agent wrote back, since sessiond started.",
                            },
                            "next_run_at": {"type": ["number", "null"]},
                            "preview": {
                                "type": ["object", "null"],
                                "description": (
                                    "What a run now would delete: total (sessions), total_files (a key claimed by "
                                    "several files loses them all), over_maximum, spared_recent, spared_restored (keys "
                                    "kept because an operator restored them from the trash and nothing has written "
                                    "them since), and per rule a count, "
                                    "files, a sample of keys and the files of each sampled key with several (collisions)."
                                ),
                            },
                        },
                    },
                    "Retention as it stands.",
                ),
            },
        )
    },
    "/api/v1/trash": {
        "get": _op(
            "Trashed sessions, newest first, with when each will be purged.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["items", "count"],
                        "properties": {"items": {"type": "array", "items": _ref("TrashEntry")}, "count": COUNT},
                    },
                    "The trash.",
                ),
                **TRASH_OFF,
            },
        )
    },
    "/api/v1/trash/{id}": {
        "get": _op(
            "One trashed session's file as stored (as export serves a session), to read before restoring it.",
            {
                "200": {
                    "description": "The file as stored (NaN and big integers included), streamed, with an ETag.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
                "304": {"description": "If-None-Match matched the file's ETag."},
                "404": _error("Not in the trash, or the trash is off (trash_days = 0)."),
                "413": _error("The trashed file is larger than max_file_bytes."),
            },
            [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "example": "18790b1c2d3e4f50a1b2c3d4",
                    "description": "The entry's id, from GET /api/v1/trash.",
                }
            ],
        )
    },
    "/api/v1/trash:restore": {
        "post": _op(
            "Restore trashed sessions: the newest version of each key, and each id.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["restored", "failed"],
                        "properties": {
                            "restored": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"key": {"type": ["string", "null"]}, "id": {"type": "string"}},
                                },
                            },
                            "failed": {"type": "array", "items": _ref("Failure")},
                        },
                    },
                    "What was restored and what failed (with reasons).",
                ),
                **BAD,
                **TRASH_OFF,
                **TOO_BIG,
            },
            body="Restore",
        )
    },
    "/api/v1/stats": {
        "get": _op(
            "Figures for the overview, from the in-memory index only (no disk reads): by channel, "
            "per day, by message count; bytes, invalid files, collisions, watcher and trash state.",
            {"200": _json(_ref("Stats"), "The figures."), "503": _error("Still indexing; try again after Retry-After seconds.")},
        )
    },
    "/api/v1/invalid": {
        "get": _op(
            "Files in the sessions folder that are not valid sessions, by name, each with the reason, "
            "from the in-memory index (the folder is not read per request).",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["files", "count", "truncated"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "name_is_utf8", "reason", "size", "mtime"],
                                    "properties": {
                                        "name": {
                                            "type": "string",
                                            "description": "The file name; bytes that are not UTF-8 appear as \\xNN "
                                            "(then name_is_utf8 is false). Control characters are as stored.",
                                        },
                                        "name_is_utf8": {"type": "boolean"},
                                        "reason": {"type": "string", "description": "Why it is not a session."},
                                        "size": {**COUNT, "description": "Bytes, when it was last looked at."},
                                        "mtime": {"type": ["number", "null"], "description": "Last modified (Unix seconds)."},
                                    },
                                },
                            },
                            "count": {**COUNT, "description": "How many invalid files there are in all."},
                            "truncated": {"type": "boolean", "description": "True when files holds only the first `limit`."},
                        },
                    },
                    "The invalid files.",
                ),
                **BAD,
            },
            [_query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "At most this many files (default 1000).")],
        )
    },
    "/api/v1/whoami": {
        "get": _op(
            "The name and scope of the token this request carries (never the token).",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["name", "scope"],
                        "properties": {
                            "name": {"type": "string", "description": "`admin` for the single token."},
                            "scope": {"type": "string", "enum": ["read", "delete", "admin"]},
                        },
                    },
                    "Who is asking.",
                )
            },
        )
    },
    "/api/v1/audit": {
        "get": _op(
            "The audit trail (admin scope): one record per deletion, restore and trash purge, newest first, "
            "from the audit file in state_dir.",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["records", "next_cursor"],
                        "properties": {
                            "records": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "time", "actor", "action", "key", "file", "outcome"],
                                    "properties": {
                                        "id": {"type": "string", "description": "Unique; also the cursor."},
                                        "time": TIME,
                                        "actor": {
                                            "type": "string",
                                            "description": "A token's name, `retention` or `trash purge`.",
                                        },
                                        "client": {
                                            "type": ["string", "null"],
                                            "description": "The client address as sessiond believed it.",
                                        },
                                        "request_id": {"type": ["string", "null"]},
                                        "action": {"type": "string", "enum": ["delete", "restore", "purge"]},
                                        "key": {"type": ["string", "null"]},
                                        "file": {"type": ["string", "null"], "description": "The session's file name."},
                                        "identity": {
                                            "type": ["object", "null"],
                                            "description": "inode, size, mtime_ns of the file.",
                                        },
                                        "outcome": {
                                            "type": "string",
                                            "enum": ["deleted", "to trash", "restored", "purged", "refused"],
                                        },
                                        "reason": {"type": ["string", "null"], "description": "Why it was refused."},
                                        "trash_id": {"type": "string"},
                                    },
                                },
                            },
                            "next_cursor": {"type": ["string", "null"], "description": "Pass as `cursor` for older records."},
                        },
                    },
                    "The records.",
                ),
                "404": _error("No audit file: state_dir is not set (the records are in the journal)."),
                **BAD,
            },
            [
                _query("prefix", {"type": "string"}, "Only records whose key starts with this text."),
                _query("actor", {"type": "string"}, "Only records of this actor."),
                _query("since", TIME, "Only records at or after this time (Unix seconds)."),
                _query("until", TIME, "Only records at or before this time (Unix seconds)."),
                _query("cursor", {"type": "string"}, "`next_cursor` of the previous page."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most this many records (default 100)."),
            ],
        )
    },
    "/api/v1/search": {
        "get": _op(
            "Full-text search over every session's messages, tool calls and summary; one result per session, best "
            "first (bm25 over the 2,000 newest matches per page window, newer first on ties). q: words (all must "
            'match), "a phrase", prefix*, -word, a OR b; case and accents ignored; CJK characters each match alone.',
            {
                "200": _json(_ref("SearchPage"), "A page of results (a page may hold fewer than limit: follow next_cursor)."),
                **BAD,
                "404": _error("Search is turned off (search = false)."),
                "503": _error("Still indexing the sessions; try again after Retry-After seconds."),
            },
            [
                {
                    "name": "q",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 1000},
                    "description": "The query.",
                },
                *FILTER,
                _query("role", {"type": "string", "maxLength": 32}, "Only hits in messages of this role."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "Results per page (default 20)."),
                _query(
                    "cursor",
                    {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 512},
                    "next_cursor of the page before.",
                ),
            ],
        )
    },
    "/api/v1/openapi.json": {"get": _op("This document.", {"200": _json({"type": "object"}, "OpenAPI 3.1.")})},
    "/ui": {
        "get": _op(
            "The operators' web page lives at /ui/.",
            {
                "308": {"description": "Redirect to /ui/ (relative: Location ui/, so it holds under a proxy's path prefix)."},
            },
            public=True,
        )
    },
    "/ui/": {
        "get": _op(
            "The operators' web page (public; the data it shows needs the token).",
            {
                "200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                "304": {"description": "If-None-Match matched the page's ETag."},
            },
            public=True,
        )
    },
    "/ui/v/{version}/{name}": {
        "get": _op(
            "A script, style sheet or icon of the page, cacheable for a year.",
            {
                "200": {
                    "description": "The file.",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "image/svg+xml": {"schema": {"type": "string"}},
                    },
                },
                "304": {"description": "If-None-Match matched the file's ETag."},
                "404": _error("No such file in this version of the page."),
            },
            [
                {
                    "name": "version",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The content version index.html names.",
                },
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "example": "app.js"},
            ],
            public=True,
        )
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "sessiond",
        "version": __version__,
        "description": "AI-agent sessions served from a watched in-memory index.",
    },
    "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": PATHS,
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi_document(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.Response(body=_BODY, content_type=JSON)
