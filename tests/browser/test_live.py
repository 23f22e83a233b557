"""Live: the table follows the files through the change feed, across network blips and resyncs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support import Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser, wait_indexed
from .relay import Relay

pytestmark = needs_browser


def test_rows_appear_change_and_vanish_as_files_do(ui: PageUnderTest, sessions: Path) -> None:
    write_atomic(sessions, "cli:a", messages=1)
    ui.sign_in()
    expect(ui.summary()).to_have_text("1 session · page 1")
    expect(ui.page.get_by_role("status").first).to_contain_text("Live")
    ui.page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    path = write_atomic(sessions, "cli:b", messages=2)
    row = ui.row("cli:b")
    expect(row).to_be_visible()
    expect(row).to_have_class("live-new")
    expect(ui.summary()).to_have_text("2 sessions · page 1")
    assert ui.keys() == ["cli:a", "cli:b"]

    write_atomic(sessions, "cli:b", messages=9)
    expect(row.locator("td").nth(2)).to_have_text("9")
    expect(row).to_have_class("live-changed")
    ui.shot("live-changed")

    path.unlink()
    expect(row).to_have_count(0)
    expect(ui.summary()).to_have_text("1 session · page 1")
    assert ui.page.evaluate("window.__sameDocument") is True


def test_a_row_the_agent_writes_back_after_a_delete_is_marked(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    stored = write_atomic(sessions, "telegram:5", messages=4).read_bytes()
    ui.sign_in()
    row = ui.row("telegram:5")
    expect(row).to_be_visible()
    assert daemon.request("DELETE", "/api/v1/sessions/telegram:5")[0] == 200
    expect(row).to_have_count(0)
    tmp = sessions / "telegram_5.tmp"
    tmp.write_bytes(stored)  # the agent's cached copy, old created_at and all, saved as it saves
    tmp.rename(sessions / "telegram_5.json")
    expect(row.locator(".badge")).to_have_text("came back")
    expect(ui.page.locator(".toast")).to_contain_text("telegram:5 came back after it was deleted")


SUMMARY_WHEN_ROWS_CHANGE = """() => {
  window.__countsSeen = [];
  const body = document.querySelector("table.sessions tbody");
  new MutationObserver(() => {
    const keys = [...body.querySelectorAll("td.key")].map((td) => td.textContent);
    window.__countsSeen.push([keys.length, document.querySelector(".sessions-view .summary").textContent]);
  }).observe(body, { childList: true });
}"""


def test_the_session_count_moves_with_the_rows(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    write_atomic(sessions, "cli:a")
    ui.sign_in()
    expect(ui.summary()).to_have_text("1 session · page 1")
    expect(ui.page.get_by_role("status").first).to_contain_text("Live")
    ui.page.evaluate(SUMMARY_WHEN_ROWS_CHANGE)
    write_atomic(sessions, "cli:b")
    expect(ui.row("cli:b")).to_be_visible()
    write_atomic(sessions, "cli:c")
    expect(ui.row("cli:c")).to_be_visible()
    (sessions / "cli_a.json").unlink()
    expect(ui.row("cli:a")).to_have_count(0)
    # Whenever the rows changed, the count said as many in the same frame (not seconds later).
    seen = ui.page.evaluate("window.__countsSeen")
    assert seen and all(summary == f"{n} {'session' if n == 1 else 'sessions'} · page 1" for n, summary in seen), seen


def test_live_rows_keep_the_sort_and_the_filter(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    for i in range(3):
        write_atomic(sessions, f"t:{i}", updated=1_700_000_000.0 + i)
    write_atomic(sessions, "other:x", updated=1_700_000_000.0)
    wait_indexed(daemon, 4)
    ui.sign_in("#/sessions?prefix=t%3A&sort=updated_at&order=desc")
    expect(ui.summary()).to_have_text("3 sessions match · page 1")
    assert ui.keys() == ["t:2", "t:1", "t:0"]
    write_atomic(sessions, "t:0", updated=1_800_000_000.0)  # now the most recent: moves to the top
    expect(ui.rows.first.locator("td.key")).to_have_text("t:0")
    assert ui.keys() == ["t:0", "t:2", "t:1"]
    write_atomic(sessions, "other:y", updated=1_900_000_000.0)  # outside the filter: never shown
    write_atomic(sessions, "t:new", updated=1_750_000_000.0)
    expect(ui.row("t:new")).to_be_visible()
    assert ui.keys() == ["t:0", "t:new", "t:2", "t:1"]
    expect(ui.summary()).to_have_text("4 sessions match · page 1")


@pytest.fixture
def relay(start_daemon: Callable[..., Daemon], request: pytest.FixtureRequest) -> Iterator[Relay]:
    env = getattr(request, "param", {})
    daemon = start_daemon(**env)
    relay = Relay(daemon.port)
    relay.daemon = daemon  # type: ignore[attr-defined]
    yield relay
    relay.close()


def indexed(daemon: Daemon, key: str) -> None:
    deadline = time.monotonic() + 5
    while daemon.get("/api/v1/sessions/" + key)[0] != 200:
        assert time.monotonic() < deadline, f"{key} never indexed"
        time.sleep(0.02)


def test_after_a_network_blip_the_feed_resumes_with_last_event_id(
    relay: Relay, open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    ui = open_page(relay.url)
    ui.expect_console(r"net::ERR_")  # requests refused while the link is down
    ui.sign_in()
    write_atomic(sessions, "before:1")
    expect(ui.row("before:1")).to_be_visible()  # an event arrived: the page has an id to resume from
    feeds_before = [r for r in ui.requests if r.url.endswith("/api/v1/events")]

    relay.cut()
    expect(ui.page.get_by_role("status").first).to_contain_text("Reconnecting")
    for key in ("during:1", "during:2"):
        write_atomic(sessions, key)
        indexed(relay.daemon, key)  # type: ignore[attr-defined]
    ui.shot("reconnecting")
    relay.restore()

    expect(ui.row("during:1")).to_be_visible()
    expect(ui.row("during:2")).to_be_visible()
    expect(ui.page.get_by_role("status").first).to_contain_text("Live")
    resumed = [r for r in ui.requests if r.url.endswith("/api/v1/events")][len(feeds_before) :]
    assert resumed and all(r.headers.get("last-event-id", "").isdigit() for r in resumed)
    expect(ui.page.get_by_text("Some changes were missed")).to_have_count(0)  # replayed, not resynced


@pytest.mark.parametrize("relay", [{"SESSIOND_EVENTS_BUFFER": "1"}], indirect=True)
def test_when_the_missed_events_are_gone_the_page_lists_again(
    relay: Relay, open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    ui = open_page(relay.url)
    ui.expect_console(r"net::ERR_")
    ui.sign_in()
    write_atomic(sessions, "before:1")
    expect(ui.row("before:1")).to_be_visible()
    relay.cut()
    for key in ("gap:1", "gap:2", "gap:3"):  # three events; the daemon keeps one
        write_atomic(sessions, key)
        indexed(relay.daemon, key)  # type: ignore[attr-defined]
    (sessions / "before_1.json").unlink()
    lists_before = len([r for r in ui.requests if "/api/v1/sessions?" in r.url])
    relay.restore()
    expect(ui.page.get_by_role("log", name="Notifications")).to_contain_text("Some changes were missed; listing again.")
    expect(ui.summary()).to_have_text("3 sessions · page 1")
    assert ui.keys() == ["gap:1", "gap:2", "gap:3"]
    assert len([r for r in ui.requests if "/api/v1/sessions?" in r.url]) > lists_before
