"""sessiond's small query language, parsed here and translated: nothing typed reaches FTS5 raw. Pure.

The language:

- words: every word must match (`refund policy`);
- `"a phrase"`: these words in a row;
- `prefix*`: a word starting so (`refun*`);
- `-word`, `-"a phrase"`: sessions holding it are left out;
- `a OR b`: either (binds tighter than the implicit AND: `a OR b c` is `(a OR b) AND c`).

Everything else is text: parentheses, `NEAR`, `^`, `col:`, `+` and other
punctuation separate words like any other punctuation does, `AND`/`NOT` are
words. A word that holds punctuation (`foo_bar.py`, `user:4711`) is the phrase
of its parts. The translation quotes every word, so FTS5 sees only phrases,
AND, OR and NOT built here. Malformed input is a QueryError with a sentence
saying why (the API answers 400 with it), never anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sessiond.core.query import QueryError
from sessiond.core.search_text import SHORT_PREFIX, Part, spans, words

MAX_QUERY_CHARS = 1000
MAX_TERMS = 32
MAX_WORDS_PER_TERM = 64


class Term(NamedTuple):
    """A phrase of folded words; with *prefix*, its last word is a prefix."""

    words: tuple[str, ...]
    prefix: bool = False

    def fts(self) -> str:
        """The term in FTS5 syntax: one quoted phrase, `*` after it for a prefix."""
        quoted = '"' + " ".join(w.replace('"', '""') for w in self.words) + '"'
        return quoted + "*" if self.prefix else quoted


class Query(NamedTuple):
    """All clauses must match (each: any of its terms); no excluded term may."""

    clauses: tuple[tuple[Term, ...], ...]
    excluded: tuple[Term, ...]

    def fts(self) -> str:
        """The FTS5 MATCH expression for this query."""
        required = " AND ".join("(" + " OR ".join(t.fts() for t in clause) + ")" for clause in self.clauses)
        return required + "".join(" NOT " + t.fts() for t in self.excluded)


def _short(term: Term) -> bool:
    # A prefix this short is looked up in the index's `starts` tables (every word's first characters,
    # search_db) rather than expanded by FTS5, which merges the postings of every word it begins (about a
    # twentieth of all words for two letters) before it returns one row.
    return term.prefix and len(term.words) == 1 and len(term.words[0]) <= SHORT_PREFIX


class Plan(NamedTuple):
    """How a query is asked of the index: FTS5 for most of it, the `starts` tables for short prefixes.

    *fts*: the MATCH expression of every clause and exclusion but the short prefixes standing alone
    (None when no other clause is left: the first short prefix then finds the rows); *starts*: the
    short prefixes (folded words) each session must hold a word beginning with; *not_starts*: those
    none may; *not_fts*: the other exclusions, when *fts* is None (FTS5's NOT needs something on its left).
    """

    fts: str | None
    starts: tuple[str, ...]
    not_starts: tuple[str, ...]
    not_fts: str | None


def plan(query: Query) -> Plan:
    """Where each part of *query* is looked up (see Plan)."""
    starts = tuple(clause[0].words[0] for clause in query.clauses if len(clause) == 1 and _short(clause[0]))
    not_starts = tuple(term.words[0] for term in query.excluded if _short(term))
    clauses = tuple(clause for clause in query.clauses if not (len(clause) == 1 and _short(clause[0])))
    excluded = tuple(term for term in query.excluded if not _short(term))
    if clauses:
        return Plan(Query(clauses, excluded).fts(), starts, not_starts, None)
    not_fts = " OR ".join(term.fts() for term in excluded) or None
    return Plan(None, starts, not_starts, not_fts)


class _Item(NamedTuple):
    kind: str  # "term" or "or"
    term: Term | None
    negated: bool


def _lex(text: str) -> list[_Item]:
    items: list[_Item] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        negated = False
        if c == "-" and i + 1 < n and not text[i + 1].isspace():
            negated = True
            i += 1
            c = text[i]
        if c == '"':
            close = text.find('"', i + 1)
            end = n if close == -1 else close
            raw = text[i + 1 : end]
            i = end + 1
            prefix = False
            while i < n and text[i] == "*":
                prefix = True
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != '"':
                i += 1
            raw = text[start:i]
            if raw == "OR" and not negated:
                items.append(_Item("or", None, False))
                continue
            stripped = raw.rstrip("*")
            prefix = stripped != raw
            raw = stripped
        found = words(raw)
        if not found:
            continue  # punctuation alone (`*`, `^`, `(`): nothing to search for
        if len(found) > MAX_WORDS_PER_TERM:
            raise QueryError("q", f"a phrase may hold at most {MAX_WORDS_PER_TERM} words")
        items.append(_Item("term", Term(tuple(found), prefix), negated))
    return items


def parse(text: str) -> Query:
    """Parse what a user typed; raise QueryError (a sentence for a 400) if it cannot be searched."""
    if "\x00" in text:
        text = text.replace("\x00", " ")
    if not text.strip():
        raise QueryError("q", "is empty: give at least one word to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError("q", f"is longer than {MAX_QUERY_CHARS} characters")
    items = _lex(text)
    clauses: list[list[Term]] = []
    excluded: list[Term] = []
    joining = False  # the last item was OR
    last_was_positive = False
    for item in items:
        if item.kind == "or":
            if not last_was_positive or joining:
                raise QueryError("q", "OR needs a word on each side (write or in lower case to search for the word)")
            joining = True
            continue
        term = item.term
        assert term is not None
        if item.negated:
            if joining:
                raise QueryError("q", "OR cannot join an excluded word (-word)")
            excluded.append(term)
            last_was_positive = False
            continue
        if joining:
            clauses[-1].append(term)
        else:
            clauses.append([term])
        joining = False
        last_was_positive = True
    if joining:
        raise QueryError("q", "OR needs a word on each side (write or in lower case to search for the word)")
    if len(excluded) + sum(len(c) for c in clauses) > MAX_TERMS:
        raise QueryError("q", f"holds more than {MAX_TERMS} words or phrases")
    if not clauses:
        if excluded:
            raise QueryError("q", "needs at least one word to search for besides the excluded ones")
        raise QueryError("q", "holds no word to search for (only punctuation)")
    return Query(tuple(tuple(c) for c in clauses), tuple(excluded))


# -- matching in Python (the final judge of every hit) ----------------------------------------


Spans = list[tuple[int, int, str]]


def find(term: Term, tokens: Spans) -> list[tuple[int, int]]:
    """Character ranges where *term* occurs among *tokens* (from search_text.spans)."""
    n = len(term.words)
    out: list[tuple[int, int]] = []
    first, last = term.words[0], term.words[-1]
    for i in range(len(tokens) - n + 1):
        word = tokens[i][2]
        if n == 1:
            ok = word.startswith(first) if term.prefix else word == first
        else:
            ok = word == first and all(tokens[i + k][2] == term.words[k] for k in range(1, n - 1))
            if ok:
                tail = tokens[i + n - 1][2]
                ok = tail.startswith(last) if term.prefix else tail == last
        if ok:
            out.append((tokens[i][0], tokens[i + n - 1][1]))
    return out


class Hit(NamedTuple):
    """A part of a session that holds a searched term, and where."""

    part: Part
    marks: list[tuple[int, int]]


def match(query: Query, pieces: Sequence[Part], role: str | None = None) -> list[Hit] | None:
    """The hits of *query* in a session's *pieces*, or None if the session does not match.

    A session matches when every clause occurs in one of its parts (only parts of
    *role*, if given) and no excluded term occurs in any part. Phrases never span
    two messages.
    """
    tokenized = [(p, list(spans(p.text))) for p in pieces]
    for _, tokens in tokenized:
        if any(find(t, tokens) for t in query.excluded):
            return None
    eligible = [(p, tokens) for p, tokens in tokenized if role is None or p.role == role]
    hits: list[Hit] = []
    satisfied = [False] * len(query.clauses)
    for part, tokens in eligible:
        marks: list[tuple[int, int]] = []
        for c, clause in enumerate(query.clauses):
            for term in clause:
                found = find(term, tokens)
                if found:
                    satisfied[c] = True
                    marks.extend(found)
        if marks:
            hits.append(Hit(part, _merge(marks)))
    if not all(satisfied):
        return None
    return hits


def _merge(marks: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(marks):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out
