"""Querying the index: filters, sort orders and keyset cursors. Pure: no I/O, no event loop.

One vocabulary serves the list, bulk delete and export. Values may arrive as query-string
text or as JSON numbers; every problem raises QueryError naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import heapq
import hmac
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from sessiond.core.index import SessionIndex, SessionRecord
from sessiond.core.names import MAX_KEY_LENGTH

FILTER_PARAMS = frozenset(
    {"prefix", "contains", "created_after", "created_before", "updated_after", "updated_before", "min_messages", "max_messages"}
)
ORDER_PARAMS = frozenset({"sort", "order"})
PAGE_PARAMS = frozenset({"limit", "cursor", "include"})
LIST_PARAMS = FILTER_PARAMS | ORDER_PARAMS | PAGE_PARAMS
SORTS = ("key", "created_at", "updated_at", "message_count")
MAX_LIMIT = 10_000
# A cursor holds the last key served (up to 4096 characters, JSON-escaped), base64'd.
MAX_CURSOR = 48 * 1024
NOT_OURS = "is not a cursor this service made; start again without it"


class QueryError(ValueError):
    """A parameter is wrong; `param` names it and the message says how."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """Which sessions a query is about. Bounds on times are strict; on counts, inclusive."""

    prefix: str = ""
    contains: str = ""  # a part of the key anywhere (case-sensitive, like prefix)
    created_after: float | None = None
    created_before: float | None = None
    updated_after: float | None = None
    updated_before: float | None = None
    min_messages: int | None = None
    max_messages: int | None = None

    def is_empty(self) -> bool:
        """True when the filter lets every session through."""
        return self == _EVERYTHING

    def matches(self, r: SessionRecord) -> bool:
        """True when *r* passes every bound (the prefix and contains are checked by `select`)."""
        return not (
            (self.created_after is not None and not r.created_at > self.created_after)
            or (self.created_before is not None and not r.created_at < self.created_before)
            or (self.updated_after is not None and not r.updated_at > self.updated_after)
            or (self.updated_before is not None and not r.updated_at < self.updated_before)
            or (self.min_messages is not None and r.message_count < self.min_messages)
            or (self.max_messages is not None and r.message_count > self.max_messages)
        )


_EVERYTHING = Filter()


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """A filter plus the order and the page wanted."""

    filter: Filter = _EVERYTHING
    sort: str = "key"
    descending: bool = False
    limit: int | None = None
    after: tuple[Any, str] | None = None  # the sort position of the last item already seen
    include_meta: bool = False
    cursor_key: bytes = b""  # signs the cursors this query hands out (see _encode_cursor)


class Page(NamedTuple):
    """One answer: the records of this page, how many match in all, and where to go on."""

    records: list[SessionRecord]
    total: int  # how many match in all (the API's "count")
    next_cursor: str | None


def meta(r: SessionRecord) -> dict[str, Any]:
    """A session's metadata as the API shows it (list `include=meta`, events, export)."""
    return {
        "key": r.key,
        "message_count": r.message_count,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "size": r.size,
        "version": version(r),
    }


def version(r: SessionRecord) -> str:
    """The identity of the file the index read, opaque: it changes whenever the file is rewritten.

    The very words of the export's ETag for that file (unquoted), so a client can hand
    either back to sessions:batchDelete's `expect` (which deletes only that very file).
    """
    st = r.stat
    return f"{st.inode:x}-{st.mtime_ns:x}-{st.ctime_ns:x}-{st.size:x}"


# -- parsing ---------------------------------------------------------------------


def single_values(pairs: Iterable[tuple[str, str]], allowed: frozenset[str], strict: bool = False) -> dict[str, str]:
    """Query-string pairs as a dict of the *allowed* names; a repeated name is an error.

    Other names are dropped, or refused when *strict* (endpoints with no seed to stay compatible with).
    """
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            if strict:
                raise QueryError(name, f"unknown parameter; use {', '.join(sorted(allowed))}")
            continue
        if name in values:
            raise QueryError(name, "given more than once")
        values[name] = value
    return values


def _number(name: str, value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise QueryError(name, f"{value!r} is not a number (Unix seconds)") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise QueryError(name, "must be a finite number (Unix seconds)")
    return float(value)


def whole_number(name: str, value: object, low: int = 0, high: int | None = None) -> int:
    """An integer from *low* to *high*, given as text or as a JSON number."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema counts 5.0 as an integer, so JSON clients may send it
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise QueryError(name, f"must be a whole number from {low}" + (f" to {high}" if high is not None else " up"))
    return value


def parse_filter(values: Mapping[str, object]) -> Filter:
    """The filter named by *values* (text from a query string, or JSON values)."""
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("prefix", "contains"):
            if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
                raise QueryError(name, f"must be a string of at most {MAX_KEY_LENGTH} characters")
            fields[name] = value
        elif name in ("min_messages", "max_messages"):
            fields[name] = whole_number(name, value)
        elif name in FILTER_PARAMS:
            fields[name] = _number(name, value)
        else:
            raise QueryError(name, f"unknown filter; use {', '.join(sorted(FILTER_PARAMS))}")
    return Filter(**fields)


def parse_query(values: Mapping[str, str], cursor_key: bytes = b"") -> Query:
    """The query named by list or export parameters (already reduced by `single_values`).

    *cursor_key* signs the cursors handed out, and checks the one given.
    """
    flt = parse_filter({k: v for k, v in values.items() if k in FILTER_PARAMS})
    sort = values.get("sort", "key")
    if sort not in SORTS:
        raise QueryError("sort", f"must be one of {', '.join(SORTS)}")
    order = values.get("order", "asc")
    if order not in ("asc", "desc"):
        raise QueryError("order", "must be asc or desc")
    limit = whole_number("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else None
    include = values.get("include")
    if include not in (None, "meta"):
        raise QueryError("include", "must be meta")
    query = Query(flt, sort, order == "desc", limit, None, include == "meta", cursor_key)
    if "cursor" in values:
        query = dataclasses.replace(query, after=_decode_cursor(values["cursor"], query))
    return query


# -- cursors ---------------------------------------------------------------------
# A cursor is the sort position (value, key) of the last item served, so the next page
# starts strictly after it: sessions added or removed between pages shift nothing.
# It is signed (HMAC-SHA256 with a key derived from the API token), so a cursor is
# either one this service made or a 400; its values are checked all the same.


def _fingerprint(query: Query) -> str:
    shape = (dataclasses.astuple(query.filter), query.sort, query.descending)
    return hashlib.sha256(orjson.dumps(shape)).hexdigest()[:12]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:16]


def _encode_cursor(query: Query, position: tuple[Any, str]) -> str:
    payload = orjson.dumps([1, _fingerprint(query), position[0], position[1]])
    return _b64(payload) + "." + _b64(_signature(query.cursor_key, payload))


_VALUE_TYPES: dict[str, Callable[[object], bool]] = {
    "key": lambda v: isinstance(v, str),
    "created_at": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "updated_at": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "message_count": lambda v: type(v) is int,
}


def _decode_cursor(text: str, query: Query) -> tuple[Any, str]:
    if len(text) > MAX_CURSOR or text.count(".") != 1:
        raise QueryError("cursor", NOT_OURS)
    body, _, mac = text.partition(".")
    try:
        payload, signature = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        raise QueryError("cursor", NOT_OURS) from None
    if not hmac.compare_digest(signature, _signature(query.cursor_key, payload)):
        raise QueryError("cursor", NOT_OURS)
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise QueryError("cursor", NOT_OURS) from None
    if not (isinstance(decoded, list) and len(decoded) == 4 and decoded[0] == 1 and isinstance(decoded[3], str)):
        raise QueryError("cursor", NOT_OURS)
    _, fingerprint, value, key = decoded
    if fingerprint != _fingerprint(query):
        raise QueryError("cursor", "belongs to another query; repeat the same filter, sort and order with it")
    if not _VALUE_TYPES[query.sort](value):
        raise QueryError("cursor", NOT_OURS)
    return (value, key)


# -- running -----------------------------------------------------------------------

_POSITION: dict[str, Callable[[SessionRecord], tuple[Any, str]]] = {
    "key": lambda r: (r.key, r.key),
    "created_at": lambda r: (r.created_at, r.key),
    "updated_at": lambda r: (r.updated_at, r.key),
    "message_count": lambda r: (r.message_count, r.key),
}


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with *prefix* (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _key_range(index: SessionIndex, prefix: str) -> tuple[int, int]:
    """Positions [lo, hi) of the keys starting with *prefix*, by two bisections."""
    keys = index.keys()
    upper = _successor(prefix)
    return keys.bisect_left(prefix), len(keys) if upper is None else keys.bisect_left(upper)


def select(index: SessionIndex, flt: Filter) -> Iterator[SessionRecord]:
    """Every served record passing *flt*, in key order; a prefix only walks its own range."""
    lo, hi = _key_range(index, flt.prefix)
    keys: Iterable[str] = index.keys().islice(lo, hi)
    if flt.contains:
        part = flt.contains
        keys = [key for key in keys if part in key]  # one C-level test per key: ~5 ms per 100k keys
    records = index.records_of(keys)
    if flt == Filter(prefix=flt.prefix, contains=flt.contains):
        return records
    return (r for r in records if flt.matches(r))


def run(index: SessionIndex, query: Query) -> Page:
    """Answer *query* from *index*: one page in the wanted order, the total, the next cursor."""
    if query.sort == "key" and query.filter == Filter(prefix=query.filter.prefix):
        return _run_by_key(index, query)
    matching = list(select(index, query.filter))
    position = _POSITION[query.sort]
    candidates: Iterable[SessionRecord] = matching
    if query.after is not None:
        after = query.after
        if query.descending:
            candidates = (r for r in matching if position(r) < after)
        else:
            candidates = (r for r in matching if position(r) > after)
    if query.limit is None:
        return Page(sorted(candidates, key=position, reverse=query.descending), len(matching), None)
    pick = heapq.nlargest if query.descending else heapq.nsmallest
    chosen = pick(query.limit + 1, candidates, key=position)
    return _page(query, chosen, len(matching))


def _run_by_key(index: SessionIndex, query: Query) -> Page:
    # Key order with at most a prefix is the index's own order: bisect instead of
    # walking, so a page costs O(log n + limit) however many sessions there are.
    keys = index.keys()
    lo, hi = _key_range(index, query.filter.prefix)
    count = hi - lo
    if query.after is not None:
        if query.descending:
            hi = min(hi, keys.bisect_left(query.after[1]))
        else:
            lo = max(lo, keys.bisect_right(query.after[1]))
    take = hi - lo if query.limit is None else min(hi - lo, query.limit + 1)
    chosen = keys.islice(hi - take, hi, reverse=True) if query.descending else keys.islice(lo, lo + take)
    return _page(query, [index.get(key) for key in chosen], count)  # type: ignore[misc]


def _page(query: Query, chosen: list[SessionRecord], count: int) -> Page:
    if query.limit is None or len(chosen) <= query.limit:
        return Page(chosen, count, None)
    page = chosen[: query.limit]
    return Page(page, count, _encode_cursor(query, _POSITION[query.sort](page[-1])))
