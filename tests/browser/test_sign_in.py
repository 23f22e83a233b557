"""Signing in and out: the token is typed once, kept in sessionStorage only, and refused when wrong."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from playwright.sync_api import expect

from tests.support import TOKEN, Daemon, session_doc, write_atomic

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser


def test_wrong_token_is_refused_and_the_right_one_lives_in_this_tab_only(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path
) -> None:
    write_atomic(sessions, "cli:default", messages=2)
    # Every line the daemon can log (an access line per request, debug on) is checked for the tokens below.
    daemon = start_daemon(SESSIOND_ACCESS_LOG="1", SESSIOND_LOG_LEVEL="debug")
    ui = open_page(daemon.url)
    ui.expect_console(r"status of 401")  # the refused sign-in, as the browser logs it
    page = ui.page
    ui.goto()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    ui.shot("sign-in")
    page.get_by_label("API token").fill("not-the-token-0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong token")
    assert page.evaluate("sessionStorage.length") == 0
    ui.shot("wrong-token")

    ui.sign_in()
    expect(ui.row("cli:default")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sessiond.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0 and ui.context.cookies() == []
    assert all(TOKEN not in request.url for request in ui.requests)
    assert TOKEN not in page.url
    api_calls = [r for r in ui.requests if "/api/v1/" in r.url]
    sent = [r.headers.get("authorization") for r in api_calls]
    assert sent == ["Bearer not-the-token-0123456789"] + [f"Bearer {TOKEN}"] * (len(sent) - 1)

    page.reload()  # the same tab keeps it
    expect(ui.row("cli:default")).to_be_visible()
    other = ui.new_tab()  # another tab does not
    other.goto(f"{ui.base}/ui/")
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("table.sessions")).to_have_count(0)
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # Never in a log: neither the daemon's (which did log every request) nor the browser's console.
    logged = daemon.output()
    assert "GET /api/v1/sessions 200" in logged
    assert TOKEN not in logged and "not-the-token-0123456789" not in logged
    assert ui.console and not [line for line in ui.console if TOKEN in line or "not-the-token" in line]


def test_a_token_changed_on_the_server_signs_the_page_out(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path, tmp_path: Path
) -> None:
    write_atomic(sessions, "a:1")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    daemon = start_daemon(SESSIOND_TOKEN_FILE=str(token_file), SESSIOND_TOKEN=None)
    ui = open_page(daemon.url)
    ui.expect_console(r"status of 401")
    ui.sign_in()
    expect(ui.row("a:1")).to_be_visible()
    token_file.write_text("a-brand-new-token-0123456789")
    daemon.proc.send_signal(1)  # SIGHUP: reload, the new token applies at once
    deadline = time.monotonic() + 10
    while daemon.get("/api/v1/health", token="a-brand-new-token-0123456789")[0] != 200:
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.05)
    ui.page.get_by_role("link", name="Overview").click()
    expect(ui.page.get_by_role("alert")).to_contain_text("token was refused")
    assert ui.page.evaluate("sessionStorage.length") == 0


def test_page_says_starting_and_carries_on_once_the_daemon_is_ready(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path
) -> None:
    write_atomic(sessions, "small:1")
    first = start_daemon()
    ui = open_page(first.url)
    ui.expect_console(r"ERR_CONNECTION_REFUSED|status of 503")
    ui.sign_in()
    expect(ui.row("small:1")).to_be_visible()
    assert first.stop() == 0
    # Two files big enough that indexing them takes seconds (each is parsed in a child process).
    for n in (1, 2):
        doc = session_doc(f"big:{n}", messages=0)
        doc["messages"] = [{"role": "user", "content": "x" * 20, "n": i} for i in range(1_000_000)]
        (sessions / f"big_{n}.json").write_bytes(orjson.dumps(doc))
    second = Daemon(
        sessions.parent, env={"SESSIOND_RATE_LIMIT_PER_IP": "0", "SESSIOND_RATE_LIMIT_PER_TOKEN": "0"}, port=first.port
    )
    try:
        _wait_listening(second)
        ui.page.reload()
        starting = ui.page.get_by_text("sessiond is starting")
        expect(starting).to_be_visible()
        expect(ui.page.get_by_role("status").first).to_contain_text("Starting")
        ui.shot("starting")
        expect(ui.row("big:2")).to_be_visible(timeout=30_000)
        expect(starting).to_have_count(0)
        assert ui.keys() == ["big:1", "big:2", "small:1"]
    finally:
        second.__exit__()


def _wait_listening(daemon: Daemon) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(daemon.url + "/livez", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(daemon.output())


def test_rate_limited_requests_are_waited_out_and_the_page_itself_never_is(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path
) -> None:
    write_atomic(sessions, "a:1")
    # 60 a minute per token and address: an empty bucket refills one request a second (Retry-After: 1).
    daemon = start_daemon(SESSIOND_RATE_LIMIT_PER_TOKEN="60", SESSIOND_RATE_LIMIT_PER_IP="60")
    ui = open_page(daemon.url)
    ui.expect_console(r"status of 429")
    ui.sign_in()
    expect(ui.row("a:1")).to_be_visible()
    while daemon.get("/api/v1/health")[0] != 429:  # the same token and address as the page
        pass
    ui.page.reload()  # the page's own files are never limited: it loads, then waits for the API
    status = ui.page.get_by_role("status").first
    expect(status).to_contain_text("Rate limited")
    expect(status).to_contain_text("retrying in 1 s")
    shown = status.text_content() or ""
    assert "Rate limited" not in shown or "exceeded" not in shown, shown  # said once, not twice
    ui.shot("rate-limited")
    expect(ui.row("a:1")).to_be_visible(timeout=20_000)
    expect(status).not_to_contain_text("Rate limited")


def test_a_token_with_a_character_no_header_can_carry_is_called_wrong_not_offline(ui: PageUnderTest) -> None:
    for pasted, culprit in (
        (f"\u201c{TOKEN}\u201d", "“ (U+201C)"),
        (f"{TOKEN}\u0007", "U+0007"),
        (f"{TOKEN[:8]} {TOKEN[8:]}", "a space"),
    ):
        ui.goto()
        ui.page.get_by_label("API token").fill(pasted)
        ui.page.get_by_role("button", name="Sign in").click()
        error = ui.page.get_by_role("alert")
        expect(error).to_contain_text("Wrong token")
        expect(error).to_contain_text(culprit)
        expect(ui.page.get_by_role("status").first).not_to_contain_text("Offline")
        expect(error).not_to_contain_text("Cannot sign in")
    # A character a header can carry (Latin-1) is sent, and refused by the server as usual.
    assert not [r for r in ui.requests if "/api/" in r.url]
