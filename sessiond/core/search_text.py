"""What the search index holds of a session, and how text is cut into words. Pure: no I/O.

Words are cut the way SQLite's `unicode61` tokenizer cuts them with its defaults
(letters and numbers are word characters, everything else separates), folded the
way `remove_diacritics 2` folds them (case and accents away), so the index and
the Python side (hit checks, snippets) agree on what a word is.

Text without spaces (Chinese, Japanese, Korean) would be one long "word" per run
for unicode61, so a query for two characters out of a sentence would find
nothing. Every character of those scripts is made a word of its own instead (a
space on each side before indexing); a query term in those scripts becomes the
phrase of its characters. Cheap, exact for those scripts (a substring match),
and no second index (a trigram index would double the size). Identifiers and
paths (`foo_bar.py`, `/etc/hosts`) are cut into their parts; a query for
`foo_bar.py` is the phrase "foo bar py", so it finds exactly those parts in a row.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

# Scripts written without spaces: each character is a word of its own.
_CJK = (
    "\u2e80-\u2fdf"  # radicals
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u31ff"  # bopomofo, hangul compatibility jamo, katakana extension
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\ua960-\ua97f"  # hangul jamo extended A
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # halfwidth katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_CJK_CHAR = re.compile(f"([{_CJK}])")
# A word: one CJK character, or a run of letters and numbers (not "_": unicode61 splits on it).
WORD = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")

TITLE_CHARS = 80
MESSAGE_SEPARATOR = "\n\n"


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """A word as the index compares it: lower case, accents removed (remove_diacritics 2)."""
    lowered = word.lower()
    if lowered.isascii():
        return lowered
    return "".join(c for c in unicodedata.normalize("NFD", lowered) if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The folded words of *text*, in order."""
    return [fold(m.group()) for m in WORD.finditer(text)]


def spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, folded word) of every word of *text*."""
    for m in WORD.finditer(text):
        yield m.start(), m.end(), fold(m.group())


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """*text* without lone surrogates (JSON may hold them; SQLite takes only UTF-8): each becomes U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def for_index(text: str) -> str:
    """*text* as it is handed to FTS5: each CJK character set apart so it is a word of its own."""
    text = storable(text)
    return _CJK_CHAR.sub(r" \1 ", text) if _has_cjk(text) else text


_CJK_ANY = re.compile(f"[{_CJK}]")


def _has_cjk(text: str) -> bool:
    return _CJK_ANY.search(text) is not None


# The ASCII characters unicode61 never puts in a word (all but letters and digits, its defaults), as spaces.
_ASCII_SEPARATORS = bytes(c for c in range(128) if not chr(c).isalnum())
_SEPARATORS_AS_SPACES = bytes.maketrans(_ASCII_SEPARATORS, b" " * len(_ASCII_SEPARATORS))


def forget_form(text: str) -> bytes:
    """A shorter text (UTF-8) that FTS5 cuts into the same words as *text*, and as many of them.

    A contentless FTS5 table forgets a row when handed text that gives the row's words
    (each distinct word puts a delete marker on its postings) and their number (the
    table's total length, for bm25); the order and positions of the words play no part.
    So a row is forgotten with: every distinct ASCII word once, sorted, then the first of
    them again as often as words repeated; and every piece holding a non-ASCII character,
    each time it occurs, for unicode61 to cut and fold itself. Pieces are cut at ASCII
    separators only, which unicode61 never puts in a word, so each piece gives the words
    it gave in *text*; ASCII letters are lowered (unicode61 folds case, in any word).
    About three quarters of the text, and its sorted words compress better (search_pack).
    """
    pieces = text.encode("utf-8", "surrogatepass").lower().translate(_SEPARATORS_AS_SPACES).split()
    words = set(pieces)
    other = [] if text.isascii() else [piece for piece in pieces if not piece.isascii()]
    words.difference_update(other)
    distinct = sorted(words)
    repeated = len(pieces) - len(other) - len(distinct)
    if repeated:
        distinct += [distinct[0]] * repeated
    return b" ".join(distinct + other)


# The prefixes `starts` answers: a word's first characters, up to this many (search_query asks it for these).
SHORT_PREFIX = 2


def starts_of(form: bytes) -> tuple[str, str]:
    """What the index's `starts` and `starts_other` tables are given for a row whose forget form is *form*.

    `starts`: the first two characters of every ASCII word, each once. `starts_other`:
    every piece holding a non-ASCII character, each once, as it is, for unicode61 to cut
    and fold as the main table does. A word begins with a prefix of one or two
    characters exactly when its entry in one of them does, and an ASCII prefix is whole
    terms of `starts` (search_db). Made from the forget form alone, so the same text is
    given to forget the row.
    """
    pieces = set(form.split())
    other = {piece for piece in pieces if not piece.isascii()}
    short = {piece[:SHORT_PREFIX] for piece in pieces - other}
    return b" ".join(short).decode("ascii"), b" ".join(other).decode("utf-8", "surrogatepass")


# -- what a session's text is ------------------------------------------------------------


class Part(NamedTuple):
    """One searchable piece of a session: a message (number >= 0) or the summary (number -1)."""

    number: int
    role: str
    text: str


# Members of content parts and tool calls that label rather than say something.
_NOT_TEXT = frozenset({"type", "id", "tool_call_id", "index", "role", "cache_control", "mime_type", "media_type"})


def _strings(value: Any, out: list[str], depth: int = 0) -> None:
    # Every string inside a content or tool-call structure, in document order; member names are
    # left out (tool arguments are JSON text already, so theirs are in).
    if depth > 32:
        return
    if isinstance(value, str):
        if value:
            out.append(value)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out, depth + 1)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name not in _NOT_TEXT:
                _strings(item, out, depth + 1)


def message_text(message: Any) -> str:
    """The searchable text of one message: its content, tool calls (names and arguments) and name."""
    if not isinstance(message, Mapping):
        out: list[str] = []
        _strings(message, out)
        return "\n".join(out)
    out = []
    _strings(message.get("content"), out)
    _strings(message.get("tool_calls"), out)
    name = message.get("name")
    if isinstance(name, str) and name:
        out.append(name)
    return "\n".join(out)


def role_of(message: Any) -> str:
    """A message's role as a short string ("" when it has none)."""
    role = message.get("role") if isinstance(message, Mapping) else None
    return role[:32] if isinstance(role, str) else ""


def parts(doc: Mapping[str, Any]) -> list[Part]:
    """Every searchable piece of a parsed session file, messages first, then the summary."""
    messages = doc.get("messages")
    out = [
        Part(i, storable(role_of(m)), storable(message_text(m)))
        for i, m in enumerate(messages if isinstance(messages, list) else [])
    ]
    summary = doc.get("summary")
    if isinstance(summary, str) and summary:
        out.append(Part(-1, "summary", storable(summary)))
    return out


def index_text(pieces: Sequence[Part]) -> str:
    """The one text a session's FTS5 row holds."""
    return for_index(MESSAGE_SEPARATOR.join(p.text for p in pieces))


def title(pieces: Sequence[Part]) -> str:
    """The first user message, on one line, at most TITLE_CHARS characters ("" if none)."""
    for part in pieces:
        if part.role == "user" and part.text.strip():
            line = " ".join(storable(part.text).split())
            return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
    return ""


# -- snippets ------------------------------------------------------------------------------

SNIPPET_BEFORE = 60
SNIPPET_CHARS = 200


def snippet(text: str, marks: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Segments of *text* around its first mark: [{"text"}, {"text", "match": true}, ...].

    Plain text, never markup: a client puts each segment in a text node. *marks* are
    sorted, non-overlapping (start, end) character ranges.
    """
    if not marks:
        start, end = 0, min(len(text), SNIPPET_CHARS)
    else:
        start = max(0, marks[0][0] - SNIPPET_BEFORE)
        end = min(len(text), start + SNIPPET_CHARS)
        if start > 0:  # begin at a word's start, not inside one
            space = text.find(" ", start, marks[0][0])
            if space != -1:
                start = space + 1
    segments: list[dict[str, Any]] = []
    position = start

    def plain(piece: str) -> None:
        if piece:
            segments.append({"text": " ".join(piece.split("\n")) if "\n" in piece else piece})

    if start > 0:
        plain("…")
    for mark_start, mark_end in marks:
        if mark_end <= position or mark_start >= end:
            continue
        a = max(mark_start, position)
        b = min(mark_end, end)
        plain(text[position:a])
        segments.append({"text": text[a:b], "match": True})
        position = b
    plain(text[position:end])
    if end < len(text):
        plain("…")
    # Neighbouring plain pieces ("…" and text) are one segment.
    merged: list[dict[str, Any]] = []
    for seg in segments:
        if merged and not seg.get("match") and not merged[-1].get("match"):
            merged[-1] = {"text": merged[-1]["text"] + seg["text"]}
        else:
            merged.append(seg)
    return merged
