"""The pure query core: filters, orders, cursors. Plain synchronous tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.core.index import FileStat, SessionIndex, SessionRecord
from sessiond.core.query import (
    LIST_PARAMS,
    SORTS,
    Filter,
    Query,
    QueryError,
    parse_filter,
    parse_query,
    run,
    select,
    single_values,
)


def rec(key: str, created: float = 1.0, updated: float = 2.0, messages: int = 1) -> SessionRecord:
    return SessionRecord(key, key.replace(":", "_") + ".json", messages, created, updated, FileStat(10, 1, 1, 1))


def index_of(*records: SessionRecord) -> SessionIndex:
    index = SessionIndex()
    for r in records:
        index.set_file(r.name, r)
    return index


def keys(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.key for r in page.records]


SAMPLE = index_of(
    rec("telegram:1", created=10, updated=50, messages=3),
    rec("telegram:2", created=20, updated=40, messages=0),
    rec("slack:a", created=30, updated=30, messages=7),
    rec("tele", created=40, updated=20, messages=2),
    rec("telegrams", created=50, updated=10, messages=5),
)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["slack:a", "tele", "telegram:1", "telegram:2", "telegrams"]),
        ({"prefix": "telegram:"}, ["telegram:1", "telegram:2"]),
        ({"prefix": "tele"}, ["tele", "telegram:1", "telegram:2", "telegrams"]),
        ({"prefix": "zzz"}, []),
        ({"created_after": "20"}, ["slack:a", "tele", "telegrams"]),  # strict
        ({"created_before": "20"}, ["telegram:1"]),
        ({"updated_after": "30", "updated_before": "50"}, ["telegram:2"]),
        ({"min_messages": "3"}, ["slack:a", "telegram:1", "telegrams"]),  # inclusive
        ({"max_messages": "2"}, ["tele", "telegram:2"]),
        ({"prefix": "tele", "min_messages": "1", "max_messages": "4"}, ["tele", "telegram:1"]),
        ({"sort": "updated_at"}, ["telegrams", "tele", "slack:a", "telegram:2", "telegram:1"]),
        ({"sort": "created_at", "order": "desc"}, ["telegrams", "tele", "slack:a", "telegram:2", "telegram:1"]),
        ({"sort": "message_count", "order": "desc"}, ["slack:a", "telegrams", "telegram:1", "tele", "telegram:2"]),
        ({"order": "desc", "prefix": "tele"}, ["telegrams", "telegram:2", "telegram:1", "tele"]),
    ],
)
def test_filters_and_orders(params: dict[str, str], expected: list[str]) -> None:
    page = run(SAMPLE, parse_query(params))
    assert keys(page) == expected
    assert page.total == len(expected) and page.next_cursor is None


def test_count_is_all_matching_not_the_page() -> None:
    page = run(SAMPLE, parse_query({"prefix": "tele", "limit": "2"}))
    assert keys(page) == ["tele", "telegram:1"] and page.total == 4 and page.next_cursor


def test_filter_accepts_json_values_and_knows_empty() -> None:
    assert parse_filter({"min_messages": 2, "updated_before": 5}) == Filter(updated_before=5.0, min_messages=2)
    assert parse_filter({"min_messages": 2.0}) == Filter(min_messages=2)
    assert parse_filter({}).is_empty() and parse_filter({"prefix": ""}).is_empty()
    assert not parse_filter({"prefix": "a"}).is_empty()


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "size"}, "sort"),
        ({"order": "up"}, "order"),
        ({"include": "all"}, "include"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"updated_before": "nan"}, "updated_before"),
        ({"updated_before": "inf"}, "updated_before"),
        ({"min_messages": "-1"}, "min_messages"),
        ({"max_messages": "1.5"}, "max_messages"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),  # valid base64 of "{}", not a cursor
        ({"prefix": "k" * 5000}, "prefix"),
    ],
)
def test_bad_parameters_name_themselves(params: dict[str, str], param: str) -> None:
    with pytest.raises(QueryError) as exc:
        parse_query(params)
    assert exc.value.param == param and str(exc.value).startswith(param + ": ")


def test_bad_json_filter_values() -> None:
    for values, param in [
        ({"min_messages": True}, "min_messages"),
        ({"min_messages": 2.5}, "min_messages"),
        ({"prefix": 3}, "prefix"),
        ({"size": 1}, "size"),
    ]:
        with pytest.raises(QueryError) as exc:
            parse_filter(values)
        assert exc.value.param == param


def test_single_values_drops_unknown_and_refuses_repeats() -> None:
    assert single_values([("prefix", "a"), ("_", "1")], LIST_PARAMS) == {"prefix": "a"}
    with pytest.raises(QueryError, match=r"^limit: given more than once"):
        single_values([("limit", "1"), ("limit", "2")], LIST_PARAMS)


def test_cursor_belongs_to_its_query() -> None:
    cursor = run(SAMPLE, parse_query({"limit": "1", "sort": "updated_at"})).next_cursor
    assert cursor
    with pytest.raises(QueryError, match=r"^cursor: belongs to another query"):
        parse_query({"limit": "1", "sort": "created_at", "cursor": cursor})
    with pytest.raises(QueryError):
        parse_query({"limit": "1", "sort": "updated_at", "order": "desc", "cursor": cursor})
    # the limit may change between pages
    assert keys(run(SAMPLE, parse_query({"limit": "9", "sort": "updated_at", "cursor": cursor}))) == [
        "tele",
        "slack:a",
        "telegram:2",
        "telegram:1",
    ]


def test_prefix_range_ends_at_the_highest_code_point() -> None:
    index = index_of(rec("a\U0010ffff"), rec("a\U0010ffffz"), rec("b"))
    assert [r.key for r in select(index, Filter(prefix="a\U0010ffff"))] == ["a\U0010ffff", "a\U0010ffffz"]
    assert run(index, parse_query({"prefix": "\U0010ffff"})).total == 0


def _walk(index: SessionIndex, params: dict[str, str], between=None) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    cursor = None
    for step in range(1000):
        page = run(index, parse_query({**params, **({"cursor": cursor} if cursor else {})}))
        seen.extend(keys(page))
        cursor = page.next_cursor
        if cursor is None:
            return seen
        if between:
            between(step)
    raise AssertionError("paging did not end")


records = st.builds(
    rec,
    st.text(alphabet="ab:c", min_size=1, max_size=4),
    st.integers(0, 5).map(float),
    st.integers(0, 5).map(float),
    st.integers(0, 3),
)


@settings(max_examples=150, deadline=None)
@given(
    initial=st.lists(records, max_size=25, unique_by=lambda r: r.key),
    added=st.lists(records, max_size=10, unique_by=lambda r: r.key),
    removed=st.lists(st.integers(0, 30), max_size=10),
    sort=st.sampled_from(SORTS),
    descending=st.booleans(),
    limit=st.integers(1, 4),
    prefix=st.sampled_from(["", "a", "b:"]),
)
def test_paging_survives_adds_and_removes(initial, added, removed, sort, descending, limit, prefix) -> None:  # type: ignore[no-untyped-def]
    """Every session present throughout is served exactly once, in order; nothing twice."""
    params = {"sort": sort, "order": "desc" if descending else "asc", "limit": str(limit), "prefix": prefix}
    whole = {"sort": sort, "order": params["order"], "prefix": prefix}
    index = index_of(*initial)
    assert _walk(index, params) == keys(run(index, parse_query(whole)))
    fresh = [r for r in added if r.key not in {i.key for i in initial}]
    gone = {initial[i].key for i in removed if i < len(initial)}

    def churn(step: int) -> None:
        if step < len(fresh):
            index.set_file(fresh[step].name, fresh[step])
        for key in list(gone)[step::3]:
            if (r := index.get(key)) is not None:
                index.remove(r.name)

    seen = _walk(index, params, churn)
    assert len(seen) == len(set(seen))
    stable = [k for k in keys(run(index_of(*initial), parse_query(whole))) if k not in gone]
    assert [k for k in seen if k in set(stable)] == stable
    for other in seen:
        assert other in {r.key for r in initial} | {r.key for r in fresh}


def test_default_query_is_everything_in_key_order() -> None:
    assert parse_query({}) == Query()
    assert keys(run(SAMPLE, Query())) == sorted(SAMPLE.keys())
