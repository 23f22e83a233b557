"""One session as a Markdown document to read and share (`GET /api/v1/export?key=K&format=markdown`).

Message text is never interpreted as Markdown. Each message's text goes into a fenced
code block whose fence is longer than any run of backticks in that text, so nothing
inside can close it: a line "## assistant", an HTML comment, a link or an image, a
list marker, emphasis, all stay the characters they are. Escaping the text instead
would have to know every Markdown dialect's rules (GFM, autolinks, HTML blocks, ...)
and would still change what a reader copies out; a fence is one rule that holds in
all of them. What we write outside fences (keys, roles, tool names, ids) is a single
line with every ASCII punctuation character backslash-escaped (CommonMark lets any of
them be), so it can open no construct either.

Characters that would make the text lie about itself are shown as escapes, inside
fences too: control characters (C0 but tab and line feed, DEL, C1), a lone carriage
return, and the invisible direction and line-separator characters (Trojan Source:
U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C, U+2028, U+2029). CRLF becomes LF.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
_BACKTICKS = re.compile(r"`+")
_KNOWN = frozenset({"role", "content", "tool_calls", "tool_call_id", "name", "timestamp"})


def _visible(text: str) -> str:
    text = text.replace("\r\n", "\n")
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def inline(value: object) -> str:
    """*value* as one line of plain text that no Markdown reader takes for syntax."""
    text = value if isinstance(value, str) else _json(value, indent=None)
    text = _visible(text).replace("\n", "\\n").replace("\t", " ")
    return _PUNCTUATION.sub(r"\\\1", text)


def fenced(text: str, info: str = "text") -> str:
    """*text* in a backtick fence longer than any backtick run in it."""
    text = _visible(text)
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}\n"


def utc(value: object) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SS UTC`; what is no time, said so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "unknown"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    except (OverflowError, OSError, ValueError):
        return "unknown"


def _json(value: object, indent: int | None = 2) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def render(doc: dict[str, Any], exported_at: float) -> str:
    """The session *doc* (as json.loads read it) as Markdown: facts, the summary, then each message."""
    found = doc.get("messages")
    messages: list[Any] = found if isinstance(found, list) else []
    out = [
        f"# Conversation {inline(doc.get('key', ''))}\n",
        f"- Key: {inline(doc.get('key', ''))}",
        f"- Created: {utc(doc.get('created_at'))}",
        f"- Updated: {utc(doc.get('updated_at'))}",
        f"- Messages: {len(messages)}",
        f"- Exported: {utc(exported_at)} by sessiond\n",
        "Every message's text is quoted verbatim in a code block; control and direction "
        "characters are shown as \\\\uXXXX escapes.\n",
        "## Summary\n",
    ]
    summary = doc.get("summary")
    if isinstance(summary, str) and summary:
        out.append(fenced(summary))
    elif summary is None or summary == "":
        out.append("No summary.\n")
    else:
        out.append(fenced(_json(summary), "json"))
    for number, message in enumerate(messages, 1):
        out.append(_message(number, message))
    return "\n".join(out)


def _message(number: int, message: object) -> str:
    if not isinstance(message, dict):
        return f"## {number}\\. \\(not a message\\)\n\n" + fenced(_json(message), "json")
    heading = f"## {number}\\. {inline(message.get('role', 'unknown'))}"
    about = []
    if "name" in message:
        about.append(f"name {inline(message['name'])}")
    if "tool_call_id" in message:
        about.append(f"result of {inline(message['tool_call_id'])}")
    if "timestamp" in message:
        about.append(f"at {utc(message['timestamp'])}")
    if about:
        heading += " \\(" + ", ".join(about) + "\\)"
    parts = [heading + "\n"]
    parts.extend(_content(message.get("content")))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for index, call in enumerate(calls, 1):
            parts.append(_tool_call(index, call))
    elif calls is not None:
        parts.append("### Tool calls\n\n" + fenced(_json(calls), "json"))
    other = {k: v for k, v in message.items() if k not in _KNOWN}
    if other:
        parts.append("### Other fields\n\n" + fenced(_json(other), "json"))
    return "\n".join(parts)


def _content(content: object) -> list[str]:
    if content is None:
        return ["No text.\n"]
    if isinstance(content, str):
        return [fenced(content)]
    if isinstance(content, list):  # parts: text, images, ...
        shown = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                shown.append(fenced(part["text"]))
            else:
                shown.append(fenced(_json(part), "json"))
        return shown or ["No text.\n"]
    return [fenced(_json(content), "json")]


def _tool_call(index: int, call: object) -> str:
    if not isinstance(call, dict):
        return f"### Tool call {index}\n\n" + fenced(_json(call), "json")
    found = call.get("function")
    function: dict[str, Any] = found if isinstance(found, dict) else {}
    name = call.get("function_name", function.get("name", call.get("name", "unnamed")))
    arguments = call.get("arguments", function.get("arguments"))
    heading = f"### Tool call {index}: {inline(name)}"
    if "id" in call:
        heading += f" \\(id {inline(call['id'])}\\)"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)  # the OpenAI form: arguments as a JSON string
        except ValueError:
            return heading + "\n\n" + fenced(arguments)
    return heading + "\n\n" + fenced(_json(arguments), "json")
