"""The search query language and the snippet builder (pure), checked against real SQLite FTS5."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.core.query import QueryError
from sessiond.core.search_query import match, parse, plan
from sessiond.core.search_text import Part, for_index, parts, snippet, title, words

HOSTILE = [
    '"',
    '""',
    '"a',
    "(",
    "a)",
    "(a OR b",
    "NEAR(a b, 3)",
    "a NEAR b",
    "*",
    "a*b*",
    "**",
    "^a",
    "body:a",
    "{body}: a",
    "-",
    "- a",
    "a AND",
    "NOT a",
    "a NOT b",
    "a OR OR b",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "'; DROP TABLE docs; --",
    "x" * 10_000,
    "a " * 600,
    "\u200b",
    "\u0301",
    "🙂",
    "東京 OR ソウル",
]


def fts5() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE fts USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2')")
    con.execute("INSERT INTO fts (rowid, body) VALUES (1, ?)", (for_index("a b near body ä 東京 cafe"),))
    return con


@pytest.mark.parametrize("text", HOSTILE)
def test_any_input_is_a_query_fts5_accepts_or_a_query_error(text: str) -> None:
    con = fts5()
    try:
        query = parse(text)
    except QueryError as exc:
        assert exc.param == "q" and str(exc)
        return
    con.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (query.fts(),)).fetchall()


def _check(text: str) -> None:
    con = fts5()
    try:
        query = parse(text)
    except QueryError:
        return
    con.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (query.fts(),)).fetchall()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(['"', "*", "-", "OR", "(", ")", "NEAR", "^", ":", "a", "b", " ", "ä"]), max_size=30))
def test_fuzzed_operators_never_reach_fts5_raw(pieces: list[str]) -> None:
    _check("".join(pieces))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_input_never_reaches_fts5_raw(text: str) -> None:
    _check(text)


def test_every_word_is_quoted_so_operators_are_words() -> None:
    assert parse("NEAR AND NOT").fts() == '("near") AND ("and") AND ("not")'
    assert parse("foo_bar.py").fts() == '("foo bar py")'
    assert (
        parse('refund OR return "the policy" pol* -spam').fts()
        == '("refund" OR "return") AND ("the policy") AND ("pol"*) NOT "spam"'
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("* ^ (", "no word"),
        ("-spam", "besides the excluded"),
        ("OR a", "OR needs a word"),
        ("a OR", "OR needs a word"),
        ("a OR -b", "OR cannot join"),
        ("x" * 1001, "longer than 1000"),
        (" ".join(f"w{i}" for i in range(33)), "more than 32"),
    ],
)
def test_malformed_queries_say_why(text: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        parse(text)


def test_words_fold_case_and_diacritics_like_unicode61() -> None:
    assert words("Café NAÏVE Ångström") == ["cafe", "naive", "angstrom"]
    assert words("foo_bar.py /etc/hosts") == ["foo", "bar", "py", "etc", "hosts"]
    assert words("東京都に") == ["東", "京", "都", "に"]


def test_python_matching_agrees_with_fts5_on_what_matches() -> None:
    texts = ["Café au lait", "the return policy of 東京都", "foo_bar.py crashed", "naïve approach"]
    queries = ["cafe", "CAFÉ", "京都", '"return policy"', "polic*", "foo_bar.py", "bar.py", "naive", "east"]
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE fts USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2')")
    for i, text in enumerate(texts, 1):
        con.execute("INSERT INTO fts (rowid, body) VALUES (?, ?)", (i, for_index(text)))
    for q in queries:
        query = parse(q)
        by_sqlite = {r for (r,) in con.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (query.fts(),))}
        by_python = {i for i, text in enumerate(texts, 1) if match(query, [Part(0, "user", text)])}
        assert by_sqlite == by_python, q


def test_a_phrase_never_spans_two_messages() -> None:
    pieces = [Part(0, "user", "the end"), Part(1, "assistant", "start here")]
    assert match(parse('"end start"'), pieces) is None
    assert match(parse("end start"), pieces) is not None


def test_role_limits_where_words_must_be_and_exclusion_looks_everywhere() -> None:
    pieces = [Part(0, "user", "refund please"), Part(1, "assistant", "no refund, sorry")]
    hits = match(parse("refund"), pieces, role="assistant")
    assert hits is not None and [h.part.number for h in hits] == [1]
    assert match(parse("please"), pieces, role="assistant") is None
    assert match(parse("refund -sorry"), pieces, role="user") is None


def test_snippet_is_plain_segments_around_the_first_match() -> None:
    text = "x " * 100 + "<img src=x onerror=alert(1)> refund here " + "y " * 100
    query = parse("refund")
    hit = match(query, [Part(0, "user", text)])
    assert hit is not None
    segments = snippet(text, hit[0].marks)
    assert {"text": "refund", "match": True} in segments
    assert all(set(s) <= {"text", "match"} for s in segments)
    joined = "".join(s["text"] for s in segments)
    assert "<img src=x onerror=alert(1)>" in joined  # text, never markup: the client makes text nodes
    assert joined.startswith("…") and joined.endswith("…")


def test_parts_take_content_tool_calls_names_and_summary() -> None:
    doc = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hello   there\nfriend"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "x"}'}}]},
            {"role": "tool", "name": "lookup", "content": "bad \ud800 surrogate"},
        ],
        "summary": "a summary",
    }
    pieces = parts(doc)
    assert [p.role for p in pieces] == ["user", "assistant", "tool", "summary"]
    assert "lookup" in pieces[1].text and '"q"' in pieces[1].text
    assert "\ufffd" in pieces[2].text  # a lone surrogate cannot be stored or sent: replaced
    assert title(pieces) == "Hello there friend"
    assert len(title([Part(0, "user", "w" * 500)])) == 80


def test_short_prefixes_standing_alone_are_asked_of_the_starts_table_and_the_rest_of_fts5() -> None:
    both = plan(parse('ka* refund -b* -spam "fo ba"* ka* OR x'))
    assert both.fts == '("refund") AND ("fo ba"*) AND ("ka"* OR "x") NOT "spam"'
    assert both.starts == ("ka",) and both.not_starts == ("b",) and both.not_fts is None
    alone = plan(parse("ka* Ü* -spam -eggs -z*"))
    assert alone.fts is None and alone.starts == ("ka", "u")
    assert alone.not_starts == ("z",) and alone.not_fts == '"spam" OR "eggs"'
    assert plan(parse("kat*")) == (parse("kat*").fts(), (), (), None)  # three letters: FTS5's own prefix query
