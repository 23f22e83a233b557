"""The sessions table's model (sessions_model.js) filters and orders exactly as query.py does.

The page re-applies the list's filter and sort order to the feed's changes: a session
created, updated or deleted enters, moves on or leaves the page on screen by the model's
`matches` and `compare`, not by asking the server. So the model's copy of query.py's
rules must give query.py's answers, and this test runs the same cases through both:

- the records as the API writes them (query.meta, serialized by orjson, parsed by the page);
- the queries as the page holds them: a hash the page reads (readQuery), the request it
  sends for it (listParams through apiUrl) and query.py parsing that very request;
- query.py answering from a SessionIndex, page by page through its cursors, as the server
  does; the model answering as the live table does: every record arriving as a "created"
  event into an empty table (PageModel.apply), and each of the server's pages deciding
  which records belong on it (PageModel.onThisPage).

The records and queries are drawn from a seeded random (reproducible, and one browser
round trip for a thousand cases): keys with shared prefixes, colons, accents, combining
marks and characters beyond the BMP (whose UTF-16 order differs from Python's); times
with many equal values, integers equal to floats, fractions, negatives; message counts
with many zeros; bounds that hit record values exactly (the time bounds are strict, the
counts inclusive), written in the ways a hash may hold them; every sort key in both orders.
Times stay within what a double holds exactly: the page reads JSON numbers as doubles, so
an integer time past 2**53 seconds (which the loader keeps as written) reaches it rounded.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlencode

import orjson

from sessiond.core.index import FileStat, SessionIndex, SessionRecord
from sessiond.core.query import FILTER_PARAMS, LIST_PARAMS, SORTS, QueryError, meta, parse_query, run, single_values

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser

SEED = 19
RECORDS = 300
FILTER_CASES = 150  # each in every sort order: 1,200 queries

# Channels and words keys are made of: shared prefixes, a colon's neighbours, case,
# accents precomposed and combining, and characters past U+FFFF next to ones just below
# it (JavaScript compares strings by UTF-16 unit, Python by code point).
CHANNELS = ["user:", "user:alice:", "User:", "telegram:", "tg:", "a", "ü:", "u\u0308:", "🚆:", "\uff5e:", "\ue000", "x:y:z:", ":"]
PARTS = [
    "a",
    "b",
    "Z",
    ":",
    "0",
    "9",
    " ",
    "-",
    "_",
    "é",
    "e\u0301",
    "😀",
    "\U0001f686",
    "\U00010000",
    "\uffee",
    "\ufb01",
    "ß",
    "\u00a0",
]
# Times that recur (ties), integers equal to floats, fractions, before 1970.
TIMES: list[int | float] = [
    0,
    0.0,
    1,
    1.0,
    1.5,
    -5,
    -0.5,
    0.1,
    0.30000000000000004,
    1e-7,
    1_764_000_000,
    1_764_000_000.0,
    1_764_000_000.5,
]
COUNTS = [0, 0, 0, 1, 1, 2, 3, 5, 10, 1_000_000]
STAT = FileStat(10, 1, 1, 1)

# Imported through the page's own module URLs (beside app.js), after the page has loaded them.
RUN_MODEL = """
async ([base, recordsJson, hashes]) => {
  const model = await import(base + "sessions_model.js");
  const api = await import(base + "api.js");
  const records = JSON.parse(recordsJson);
  const order = records.map((_, i) => i);
  let seed = 19;  // the events arrive in a shuffled order (a fixed one)
  for (let i = order.length - 1; i > 0; i -= 1) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const at = new Map(records.map((r, i) => [r.key, i]));
  return hashes.map((hash) => {
    const query = model.readQuery(new URLSearchParams(hash));
    const sent = [...api.apiUrl("sessions", model.listParams(query)).searchParams];
    const table = new model.PageModel(query, { sessions: [], count: 0, next_cursor: null });
    for (const i of order) table.apply("created", records[i]);
    return { sent, empty: model.filterIsEmpty(query.filter), rows: table.rows.map((row) => at.get(row.key)), count: table.count };
  });
}
"""

# For each of the server's pages: which of the matching records the model puts on it.
PLACE_ON_PAGES = """
async ([base, recordsJson, cases]) => {
  const model = await import(base + "sessions_model.js");
  const records = JSON.parse(recordsJson);
  return cases.map(([hash, matching, pages]) => pages.map(([rows, count, next], n) => {
    const query = { ...model.readQuery(new URLSearchParams(hash)), pages: n ? ["cursor"] : [] };
    const page = new model.PageModel(query, { sessions: rows.map((i) => records[i]), count, next_cursor: next });
    return matching.filter((i) => page.onThisPage(records[i]));
  }));
}
"""


def make_key(rng: random.Random) -> str:
    return rng.choice(CHANNELS) + "".join(rng.choice(PARTS) for _ in range(rng.randint(0, 6)))


def make_time(rng: random.Random) -> int | float:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(TIMES)
    if roll < 0.8:
        return rng.randint(-10, 2_000_000_000)
    return rng.uniform(-10, 2_000_000_000)


def make_records(rng: random.Random) -> list[SessionRecord]:
    keys: set[str] = set()
    while len(keys) < RECORDS:
        keys.add(make_key(rng))
    return [
        SessionRecord(
            key, f"s{n}.json", rng.choice(COUNTS) + rng.choice([0, 0, rng.randint(0, 40)]), make_time(rng), make_time(rng), STAT
        )
        for n, key in enumerate(sorted(keys))
    ]


def number_text(rng: random.Random, value: float) -> str:
    """*value* written as a hash may hold it (all read as the same number by both sides)."""
    forms = [repr(value), repr(float(value)), f"{value:.17g}", f"{value:e}" if float(f"{value:e}") == value else repr(value)]
    if float(value).is_integer():
        forms.append(str(int(value)))
    return rng.choice(forms)


def make_filter(rng: random.Random, records: list[SessionRecord], names: list[str]) -> dict[str, str]:
    """A filter's hash parameters, its bounds mostly taken from the records (so they hit ties)."""
    params: dict[str, str] = {}
    for name in names:
        if rng.random() > 0.35:
            continue
        some = rng.choice(records)
        if name in ("prefix", "contains"):
            key = some.key
            start = 0 if name == "prefix" else rng.randint(0, len(key))
            params[name] = key[start : start + rng.randint(1, 8)] or rng.choice(CHANNELS)
            if rng.random() < 0.1:
                params[name] = rng.choice(["nobody:", "\U0001f687", "user:alice:trip:x"])
        elif name in ("min_messages", "max_messages"):
            params[name] = str(max(0, some.message_count + rng.choice([-1, 0, 0, 1])))
        else:
            value = some.created_at if name.startswith("created") else some.updated_at
            if rng.random() < 0.2:
                value = rng.choice(TIMES) + rng.choice([0, 0.25, -1e-7])
            params[name] = number_text(rng, value)
    return params


def served_pages(index: SessionIndex, sent: list[list[str]]) -> tuple[int, list[tuple[list[str], str | None]]]:
    """What the server answers to the page's request: the total, and every page through the cursors."""
    pairs = [(name, value) for name, value in sent if name != "cursor"]
    try:
        query = parse_query(single_values(pairs, LIST_PARAMS))
    except QueryError as exc:  # the cases are built to be valid: a refusal is the test's mistake
        raise AssertionError(f"query.py refuses what the page sends: {pairs}: {exc}") from None
    pages: list[tuple[list[str], str | None]] = []
    cursor: str | None = None
    while True:
        query = parse_query(single_values([*pairs, *([("cursor", cursor)] if cursor else [])], LIST_PARAMS))
        page = run(index, query)
        pages.append(([r.key for r in page.records], page.next_cursor))
        total, cursor = page.total, page.next_cursor
        if cursor is None:
            return total, pages


def difference(records: list[SessionRecord], model: list[int], truth: list[int]) -> str:
    """Where the model's rows first part from query.py's, in words a reader can check."""

    def show(i: int) -> str:
        r = records[i]
        return f"{r.key!r} (created {r.created_at!r}, updated {r.updated_at!r}, {r.message_count} messages)"

    if set(model) != set(truth):
        extra, missing = sorted(set(model) - set(truth)), sorted(set(truth) - set(model))
        return f"the model shows {[show(i) for i in extra]} and leaves out {[show(i) for i in missing]}"
    n = next(n for n, (a, b) in enumerate(zip(model, truth, strict=True)) if a != b)
    return f"at row {n + 1} the model puts {show(model[n])} where query.py puts {show(truth[n])}"


def test_the_tables_model_filters_and_orders_every_case_as_query_py_does(ui: PageUnderTest) -> None:
    rng = random.Random(SEED)
    records = make_records(rng)
    index = SessionIndex()
    for record in records:
        index.set_file(record.name, record)
    position = {r.key: n for n, r in enumerate(records)}
    records_json = orjson.dumps([meta(r) for r in records]).decode()  # as the API writes them

    ui.goto()
    base = ui.page.evaluate("document.querySelector('script[type=module]').src.replace(/app\\.js$/, '')")
    names = ui.page.evaluate("async (base) => (await import(base + 'sessions_model.js')).FILTERS", base)
    sorts = ui.page.evaluate("async (base) => (await import(base + 'sessions_model.js')).SORTS", base)
    assert set(names) <= FILTER_PARAMS, "the model filters on something query.py does not know"
    assert sorted(sorts) == sorted(SORTS), "the model and query.py offer different sort orders"

    hashes = []
    for _ in range(FILTER_CASES):
        params = make_filter(rng, records, names)
        limit = rng.choice(["25", "50", "100", "200"])
        hashes += [
            urlencode({**params, "sort": sort, "order": order, "limit": limit}) for sort in sorts for order in ("asc", "desc")
        ]
    answers = ui.page.evaluate(RUN_MODEL, [base, records_json, hashes])

    placements: list[tuple[str, list[int], list[tuple[list[int], int, str | None]]]] = []
    for hash_, answer in zip(hashes, answers, strict=True):
        total, pages = served_pages(index, answer["sent"])
        expected = [position[key] for keys, _ in pages for key in keys]
        case = f"#{hash_} (sent {answer['sent']})"
        assert answer["rows"] == expected, f"for {case}: " + difference(records, answer["rows"], expected)
        assert answer["count"] == total, f"the model counts {answer['count']} sessions, query.py {total}, for {case}"
        filt = parse_query(single_values(answer["sent"], LIST_PARAMS)).filter
        assert answer["empty"] == filt.is_empty(), f"the model and query.py disagree on whether {case} filters"
        placements.append((hash_, expected, [([position[k] for k in keys], total, cursor) for keys, cursor in pages]))

    placed = ui.page.evaluate(PLACE_ON_PAGES, [base, records_json, placements])
    for (hash_, _, served), on_pages in zip(placements, placed, strict=True):
        for n, ((rows, _, _), on_page) in enumerate(zip(served, on_pages, strict=True)):
            assert sorted(on_page) == sorted(rows), f"page {n + 1} of #{hash_}: " + difference(
                records, sorted(on_page), sorted(rows)
            )


def test_the_cases_reach_ties_bounds_hit_exactly_and_every_kind_of_key() -> None:
    """The generator does what the comparison above relies on (else equality proves little)."""
    rng = random.Random(SEED)
    records = make_records(rng)
    created = [r.created_at for r in records]
    assert len(set(created)) < len(created) / 2, "too few equal creation times"
    assert any(type(a) is not type(b) and a == b for a in created for b in created), "no integer equal to a float"
    assert sum(r.message_count == 0 for r in records) > 20
    assert any(ord(c) > 0xFFFF for r in records for c in r.key)
    assert any(0xE000 <= ord(c) <= 0xFFFF for r in records for c in r.key)
    cases: list[dict[str, Any]] = [make_filter(rng, records, sorted(FILTER_PARAMS)) for _ in range(FILTER_CASES)]
    exact = [
        c
        for c in cases
        if any(float(c.get(n, "nan")) == r.created_at for n in ("created_after", "created_before") for r in records)
    ]
    assert len(exact) > 10, "too few time bounds equal to a record's time"
