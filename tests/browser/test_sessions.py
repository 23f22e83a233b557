"""The sessions table: list, filter, sort, page, and a view kept in the URL's hash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from playwright.sync_api import expect

from tests.support import Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser, wait_indexed

pytestmark = needs_browser

BASE = 1_700_000_000.0  # 2023-11-14T22:13:20Z; the browser runs in UTC


def populate(sessions: Path) -> dict[str, tuple[int, float]]:
    """30 sessions over three channels: key -> (messages, updated_at)."""
    made = {}
    for i in range(30):
        channel = ("telegram", "slack", "cli")[i % 3]
        key = f"{channel}:{i:02d}"
        messages, updated = (i * 7) % 11, BASE + i * 3600
        write_atomic(sessions, key, messages=messages, created=BASE - 86400 + i, updated=updated)
        made[key] = (messages, updated)
    return made


def hash_params(ui: PageUnderTest) -> dict[str, list[str]]:
    return parse_qs(ui.page.url.partition("#/sessions?")[2])


def test_lists_filters_sorts_and_pages_through_sessions(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    made = populate(sessions)
    wait_indexed(daemon, 30)
    ui.sign_in()
    expect(ui.summary()).to_have_text("30 sessions · page 1")
    assert ui.keys() == sorted(made)
    first = ui.row("cli:02")
    expect(first.locator("td").nth(1)).to_have_text("cli")
    expect(first.locator("td").nth(2)).to_have_text(str(made["cli:02"][0]))
    expect(first.locator("td").nth(4)).to_have_text("2023-11-15 00:13 UTC")  # updated
    ui.shot("sessions")

    ui.filter(limit="25")
    expect(ui.rows).to_have_count(25)
    assert ui.keys() == sorted(made)[:25]
    ui.page.get_by_role("button", name="Next").click()
    expect(ui.summary()).to_have_text("30 sessions · page 2")
    expect(ui.rows).to_have_count(5)
    assert ui.keys() == sorted(made)[25:]
    expect(ui.page.get_by_role("button", name="Next")).to_be_disabled()
    ui.page.get_by_role("button", name="Previous").click()
    expect(ui.summary()).to_have_text("30 sessions · page 1")
    assert ui.keys() == sorted(made)[:25]

    ui.filter(prefix="telegram:")
    expect(ui.summary()).to_have_text("10 sessions match · page 1")
    telegram = sorted(k for k in made if k.startswith("telegram:"))
    assert ui.keys() == telegram

    messages_header = ui.page.get_by_role("columnheader", name="Messages")
    messages_header.get_by_role("button").click()  # numbers sort biggest first
    expect(messages_header).to_have_attribute("aria-sort", "descending")
    by_messages = sorted(telegram, key=lambda k: (made[k][0], k), reverse=True)
    expect(ui.rows.first.locator("td.key")).to_have_text(by_messages[0])
    assert ui.keys() == by_messages
    messages_header.get_by_role("button").click()
    expect(messages_header).to_have_attribute("aria-sort", "ascending")
    expect(ui.rows.first.locator("td.key")).to_have_text(by_messages[-1])

    ui.filter(min_messages="5", max_messages="9", updated_after="2023-11-15T06:00")
    wanted = sorted(
        (k for k in telegram if 5 <= made[k][0] <= 9 and made[k][1] > BASE + 8 * 3600 - 800), key=lambda k: (made[k][0], k)
    )
    expect(ui.summary()).to_have_text(f"{len(wanted)} sessions match · page 1")
    assert ui.keys() == wanted and wanted
    params = hash_params(ui)
    assert params["prefix"] == ["telegram:"] and params["min_messages"] == ["5"] and params["sort"] == ["message_count"]
    assert params["updated_after"] == [str(int(BASE - 800 + 8 * 3600))]
    ui.shot("filtered")

    ui.page.get_by_role("button", name="Clear").click()
    expect(ui.summary()).to_have_text("30 sessions · page 1")


def test_the_hash_keeps_the_view_through_a_reload_and_a_shared_link(
    ui: PageUnderTest, sessions: Path, daemon: Daemon, open_page: Callable[..., PageUnderTest]
) -> None:
    made = populate(sessions)
    wait_indexed(daemon, 30)
    ui.sign_in()
    ui.filter(prefix="slack:", limit="25")
    ui.page.get_by_role("columnheader", name="Updated").get_by_role("button").click()
    slack = sorted((k for k in made if k.startswith("slack:")), key=lambda k: made[k][1], reverse=True)
    expect(ui.rows.first.locator("td.key")).to_have_text(slack[0])
    assert ui.keys() == slack
    link = ui.page.url

    ui.page.reload()
    expect(ui.rows.first.locator("td.key")).to_have_text(slack[0])
    assert ui.keys() == slack
    expect(ui.page.get_by_label("Key prefix")).to_have_value("slack:")

    colleague = open_page(daemon.url)  # no token yet: signs in, then sees the same view
    colleague.page.goto(link)
    colleague.page.get_by_label("API token").fill(ui.page.evaluate("sessionStorage.getItem('sessiond.token')"))
    colleague.page.get_by_role("button", name="Sign in").click()
    expect(colleague.rows.first.locator("td.key")).to_have_text(slack[0])
    assert colleague.keys() == slack
    expect(colleague.page.get_by_role("columnheader", name="Updated")).to_have_attribute("aria-sort", "descending")


def test_paging_a_large_list_by_cursor_reaches_every_session_once(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    keys = {f"k:{i:04d}" for i in range(450)}
    for key in keys:
        write_atomic(sessions, key)
    wait_indexed(daemon, 450)
    ui.sign_in("#/sessions?limit=200&sort=updated_at&order=desc")
    seen: list[str] = []
    for page in (1, 2, 3):
        expect(ui.summary()).to_have_text(f"450 sessions · page {page}")
        expect(ui.rows).to_have_count(200 if page < 3 else 50)
        seen += ui.keys()
        if page < 3:
            ui.page.get_by_role("button", name="Next").click()
    assert sorted(seen) == sorted(keys) and len(seen) == 450
    assert len(hash_params(ui)["page"]) == 2  # both cursors kept: Previous works after a reload
    ui.page.reload()
    expect(ui.rows).to_have_count(50)
    ui.page.get_by_role("button", name="Previous").click()
    expect(ui.summary()).to_have_text("450 sessions · page 2")
    assert ui.keys() == seen[200:400]


def test_times_are_shown_and_filtered_in_utc_and_say_so_whatever_the_browser_zone(
    open_page: Callable[..., PageUnderTest], daemon: Daemon, sessions: Path
) -> None:
    write_atomic(sessions, "a:early", created=BASE, updated=BASE)  # 2023-11-14 22:13:20 UTC
    write_atomic(sessions, "a:late", created=BASE, updated=BASE + 7200)
    wait_indexed(daemon, 2)
    ui = open_page(daemon.url, timezone_id="Asia/Tokyo")  # UTC+9: local time would read 07:13 the next day
    ui.sign_in()
    expect(ui.row("a:early").locator("td").nth(4)).to_have_text("2023-11-14 22:13 UTC")
    ui.filter(updated_before="2023-11-14T23:00")  # read as UTC, as the legend says
    expect(ui.page.get_by_role("group", name="Updated (UTC)")).to_be_visible()
    expect(ui.summary()).to_have_text("1 session matches · page 1")
    assert ui.keys() == ["a:early"]
    assert hash_params(ui)["updated_before"] == ["1700002800"]  # 2023-11-14T23:00:00Z
