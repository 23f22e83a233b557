"""One session: its conversation rendered readably, and the file downloaded as stored."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

from tests.support import Daemon

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser

LONG = "First line of a long answer.\n" + "\n".join(f"line {i}: " + "lorem ipsum " * 8 for i in range(60))
CONVERSATION = {
    "key": "user:alice:trip",
    "messages": [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Find me a train to Zürich."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "search_trains", "arguments": json.dumps({"to": "Zürich", "date": "2026-12-01"})},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "search_trains", "content": "08:02 IC 1, 09:02 IC 3"},
        {"role": "assistant", "content": LONG},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And a photo?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/z.png"}},
            ],
        },
    ],
    "summary": "Alice booked the 08:02 to Zürich.",
    "created_at": 1_764_000_000,  # an integer: the agent may write either
    "updated_at": 1_764_003_600.5,
}


def test_a_session_shows_roles_tool_calls_folded_contents_and_summary(ui: PageUnderTest, sessions: Path) -> None:
    (sessions / "user_alice_trip.json").write_text(json.dumps(CONVERSATION, indent=2, ensure_ascii=False))
    ui.sign_in()
    ui.row("user:alice:trip").get_by_role("link").click()
    page = ui.page
    expect(page.get_by_role("heading", level=1)).to_have_text("user:alice:trip")
    assert page.url.endswith("#/session/user%3Aalice%3Atrip")
    messages = page.get_by_role("list", name="Messages").locator("article")
    expect(messages).to_have_count(6)
    assert [r.lower() for r in messages.locator(".role").all_text_contents()] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    expect(page.locator(".facts")).to_contain_text("Messages6")
    expect(page.locator(".facts")).to_contain_text("Created2025-11-24 16:00 UTC")
    expect(page.locator(".facts")).to_contain_text("Since created")  # not "Age": it is not idle time
    expect(page.get_by_role("region", name="Summary")).to_contain_text("Alice booked the 08:02 to Zürich.")

    call = messages.nth(2).locator("details.tool-call")
    expect(call).not_to_have_attribute("open", "")
    expect(call.locator("summary")).to_contain_text("search_trains")
    arguments = call.locator("pre")
    expect(arguments).to_be_hidden()
    call.locator("summary").click()
    expect(arguments).to_be_visible()
    assert json.loads(arguments.text_content() or "") == {"to": "Zürich", "date": "2026-12-01"}
    expect(messages.nth(3)).to_contain_text("result of call_1")
    expect(messages.nth(3)).to_contain_text("08:02 IC 1, 09:02 IC 3")

    folded = messages.nth(4).locator("details.fold")
    expect(folded.locator("summary")).to_contain_text("First line of a long answer.")
    full = folded.locator(".text")
    expect(full).to_be_hidden()
    folded.locator("summary").click()
    expect(full).to_be_visible()
    assert full.text_content() == LONG
    expect(messages.nth(5)).to_contain_text("And a photo?")
    expect(messages.nth(5)).to_contain_text("https://example.com/z.png")
    ui.shot("session")


def test_download_saves_the_file_exactly_as_stored(ui: PageUnderTest, sessions: Path, tmp_path: Path) -> None:
    stored = json.dumps(CONVERSATION, indent=1).encode()
    (sessions / "user_alice_trip.json").write_bytes(stored)
    ui.sign_in("#/session/user%3Aalice%3Atrip")
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("user:alice:trip")
    link = ui.page.get_by_role("link", name="Download")
    expect(link).not_to_have_attribute("aria-disabled", "true")
    with ui.page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "user_alice_trip.json"
    target = tmp_path / "downloaded.json"
    download.value.save_as(target)
    assert target.read_bytes() == stored


def test_download_as_markdown_saves_the_conversation_to_read(ui: PageUnderTest, sessions: Path, tmp_path: Path) -> None:
    (sessions / "user_alice_trip.json").write_text(json.dumps(CONVERSATION, ensure_ascii=False))
    ui.sign_in("#/session/user%3Aalice%3Atrip")
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("user:alice:trip")
    with ui.page.expect_download() as download:
        ui.page.get_by_role("button", name="Download as Markdown").click()
    assert download.value.suggested_filename == "user_alice_trip.md"
    target = tmp_path / "downloaded.md"
    download.value.save_as(target)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Conversation user\\:alice\\:trip\n")
    assert text.index("Alice booked the 08:02 to Zürich.") < text.index("## 1\\. system")
    assert "### Tool call 1: search\\_trains \\(id call\\_1\\)" in text and '"to": "Zürich"' in text


def test_a_missing_session_says_so(ui: PageUnderTest) -> None:
    ui.expect_console(r"status of 404")
    ui.sign_in("#/session/nobody%3Ahere")
    expect(ui.page.get_by_text("There is no session with this key")).to_be_visible()
    expect(ui.page.get_by_role("button", name="Delete…")).to_be_disabled()


def test_json_as_python_writes_it_with_nan_and_infinity_is_read(ui: PageUnderTest) -> None:
    """json.dumps may write NaN and Infinity; the page reads them as null (inside strings they stay text)."""
    ui.sign_in()
    module = ui.page.evaluate("document.querySelector('script[type=module]').src.replace('app.js', 'conversation.js')")
    parsed = ui.page.evaluate(
        "async ([url, text]) => (await import(url)).parsePythonJson(text)",
        [module, '{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN \\" Infinity", "d": 1.5}'],
    )
    assert parsed == {"a": None, "b": [None, None], "c": 'NaN " Infinity', "d": 1.5}


def test_a_file_python_wrote_with_nan_and_infinity_opens(ui: PageUnderTest, sessions: Path) -> None:
    doc = {**CONVERSATION, "key": "py:nan", "score": float("nan"), "limits": [float("inf"), float("-inf")]}
    (sessions / "py_nan.json").write_text(json.dumps(doc))  # NaN, Infinity: what json.dumps writes by default
    ui.sign_in()
    ui.row("py:nan").get_by_role("link").click()
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("py:nan")
    expect(ui.page.get_by_role("list", name="Messages").locator("article")).to_have_count(6)


def test_a_session_in_any_encoding_the_api_reads_is_shown(ui: PageUnderTest, sessions: Path) -> None:
    # json.loads reads UTF-8 (BOM or not), UTF-16 and UTF-32 (BOM, or told by the zero bytes).
    encodings = {
        "utf-16": "enc:utf16-bom",
        "utf-16-le": "enc:utf16le",
        "utf-16-be": "enc:utf16be",
        "utf-32": "enc:utf32-bom",
        "utf-32-be": "enc:utf32be",
        "utf-8-sig": "enc:utf8-bom",
    }
    for encoding, key in encodings.items():
        doc = {"key": key, "messages": [{"role": "user", "content": f"Grüße aus Zürich 🚆 ({encoding})"}]}
        (sessions / f"{key.replace(':', '_')}.json").write_bytes(json.dumps(doc, ensure_ascii=False).encode(encoding))
    ui.sign_in()
    for key in encodings.values():
        expect(ui.row(key)).to_be_visible()  # the API reads it
    for encoding, key in encodings.items():
        ui.goto(f"#/session/{key}")
        expect(ui.page.get_by_role("heading", level=1)).to_have_text(key)
        expect(ui.page.get_by_role("list", name="Messages")).to_contain_text(f"Grüße aus Zürich 🚆 ({encoding})")
        expect(ui.page.get_by_text("not valid JSON")).to_have_count(0)


def _agent_save(sessions: Path, doc: dict[str, object]) -> None:
    """As grip saves: json.dumps, a temp file, a rename."""
    tmp = sessions / "telegram_9.tmp"
    tmp.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.rename(sessions / "telegram_9.json")


def test_a_session_the_agent_writes_back_after_a_delete_or_compacts_says_so(
    ui: PageUnderTest, daemon: Daemon, sessions: Path
) -> None:
    doc: dict[str, object] = {
        "key": "telegram:9",
        "messages": [{"role": "user", "content": f"turn {i}"} for i in range(101)],
        "summary": None,
        "created_at": 1_764_000_000.0,
        "updated_at": 1_764_003_600.0,
    }
    _agent_save(sessions, doc)
    ui.sign_in()
    ui.row("telegram:9").get_by_role("link").click()
    page = ui.page
    expect(page.locator(".facts")).to_contain_text("Messages101")
    assert daemon.request("DELETE", "/api/v1/sessions/telegram:9")[0] == 200
    expect(page.locator(".notice[role=status]")).to_contain_text("This session was deleted.")
    _agent_save(sessions, doc)  # the agent's cache still held it: written back on the next message
    mark = page.locator(".notice.resurrected")
    expect(mark).to_contain_text("Came back after deletion")
    expect(mark).to_contain_text("Restart the agent, or send /new in that chat")
    page.get_by_role("button", name="Show the new version").click()
    expect(page.locator(".facts")).to_contain_text("Messages101")
    expect(mark).to_be_visible()  # from the detail answer, not only the live event

    doc["messages"] = doc["messages"][-50:]  # type: ignore[index]
    doc["summary"] = "Turns 0-50, summarised."
    _agent_save(sessions, doc)
    expect(page.locator(".notice[role=status]")).to_contain_text("The agent compacted this session: 101 → 50 messages")
