"""The overview: /api/v1/stats drawn as charts, with health, following changes live."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, expect

from tests.support import Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser, wait_indexed

pytestmark = needs_browser


def numbers(chart: Locator) -> list[list[str]]:
    """The chart's figures from the table behind its "Numbers" disclosure."""
    chart.get_by_text("Numbers").click()
    rows = chart.locator("details.chart-data tbody tr")
    expect(rows.first).to_be_visible()
    return [row.locator("th, td").all_text_contents() for row in rows.all()]


def test_overview_draws_channels_days_and_message_counts_with_health(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    now = time.time()
    for i in range(5):
        write_atomic(sessions, f"telegram:{i}", messages=i, created=now - 86400, updated=now)
    for i in range(3):
        write_atomic(sessions, f"slack:{i}", messages=8, created=now - 40 * 86400, updated=now - 2 * 86400)
    write_atomic(sessions, "loose-key", messages=1, created=now, updated=now)
    (sessions / "broken.json").write_text("{")
    wait_indexed(daemon, 9)
    deadline = time.monotonic() + 5
    while json.loads(daemon.get("/api/v1/health")[1])["invalid_files"] != 1:  # re-read a few times first
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ui.sign_in("#/overview")
    page = ui.page
    tiles = page.locator(".tiles")
    expect(tiles).to_contain_text("Statusok")
    expect(tiles).to_contain_text("Sessions9")
    expect(tiles).to_contain_text("Invalid files1")
    expect(tiles).to_contain_text("Watcherready")
    expect(tiles).to_contain_text("Trashon, 7 days")

    channels = page.locator("figure.chart", has_text="Sessions by channel")
    expect(channels.locator("svg .bar")).to_have_count(3)
    assert numbers(channels) == [["telegram", "5"], ["slack", "3"], ["(no channel)", "1"]]

    days = page.locator("figure.chart", has_text="per day")
    expect(days.locator("svg circle")).to_have_count(60)  # 30 days x (created, updated)
    table = numbers(days)
    assert len(table) == 30
    assert [row[1:] for row in table[-3:]] == [["0", "3"], ["5", "0"], ["1", "6"]]  # created, updated: 2 days ago .. today

    histogram = page.locator("figure.chart", has_text="number of messages")
    assert numbers(histogram) == [["0", "1"], ["1", "2"], ["2–3", "2"], ["4–7", "1"], ["8–15", "3"]]
    ui.shot("overview")

    write_atomic(sessions, "telegram:new", messages=2)  # the figures follow the files
    expect(tiles).to_contain_text("Sessions10")

    channels.get_by_role("link", name="telegram: 6").click()  # a bar leads to its sessions
    expect(ui.summary()).to_have_text("6 sessions match · page 1")
    expect(page.get_by_label("Key prefix")).to_have_value("telegram:")


def test_overview_lists_each_invalid_file_with_its_reason_size_and_time(
    ui: PageUnderTest, daemon: Daemon, sessions: Path
) -> None:
    write_atomic(sessions, "good:1")
    (sessions / "broken.json").write_text("{not json")
    os.utime(sessions / "broken.json", (1_700_000_000, 1_700_000_000))
    hostile = "<img src=x onerror=alert(1)>\n\u202eevil.json"
    (sessions / hostile).write_text("[]")
    deadline = time.monotonic() + 5
    while json.loads(daemon.get("/api/v1/invalid")[1])["count"] != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ui.sign_in("#/overview")
    panel = ui.page.get_by_role("region", name="Invalid files")
    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(2)
    cells = [row.locator("td").all_text_contents() for row in rows.all()]
    # By name ("<" sorts before "b"); control and direction characters made visible, markup kept as text.
    assert cells[0][0] == "<img src=x onerror=alert(1)>\\u{a}\\u{202e}evil.json"
    assert cells[0][1] == "top level is a JSON list, not an object"
    assert cells[1][0] == "broken.json" and cells[1][1].startswith("not valid JSON") and cells[1][2] == "9 B"
    assert cells[1][3] == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(1_700_000_000))
    expect(ui.page.locator("img")).to_have_count(0)
    ui.shot("overview-invalid")


def test_overview_has_no_invalid_files_list_when_there_are_none(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    write_atomic(sessions, "good:1")
    wait_indexed(daemon, 1)
    ui.sign_in("#/overview")
    expect(ui.page.locator(".tiles")).to_contain_text("Invalid files0")
    expect(ui.page.get_by_role("region", name="Invalid files")).to_have_count(0)
    assert not [r for r in ui.requests if "/api/v1/invalid" in r.url]


def test_overview_shows_retention_rules_last_and_next_run_and_what_would_go(
    start_daemon: Callable[..., Daemon], open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    old = time.time() - 40 * 86400
    for i in range(2):
        path = write_atomic(sessions, f"telegram:old{i}", created=old, updated=old)
        os.utime(path, (old, old))
    write_atomic(sessions, "telegram:<img src=x onerror=alert(1)>", created=old, updated=old)
    os.utime(sessions / next(p.name for p in sessions.iterdir() if "img" in p.name), (old, old))
    copy = write_atomic(sessions, "telegram:old0", name="telegram_old0.copy.json", created=old, updated=old - 1)
    os.utime(copy, (old, old))  # a collision: the key goes with both its files
    write_atomic(sessions, "telegram:fresh")
    rules = '[{"prefix": "telegram:", "idle_days": 30}]'
    daemon = start_daemon(SESSIOND_RETENTION=rules, SESSIOND_RETENTION_INTERVAL="3600", SESSIOND_RETENTION_DRY_RUN="1")
    wait_indexed(daemon, 4)
    ui = open_page(daemon.url)
    ui.sign_in("#/overview")
    panel = ui.page.locator("section.retention")
    expect(panel).to_contain_text("telegram: idle over 30 days")
    expect(panel).to_contain_text("dry run: reports only, deletes nothing")
    expect(panel).to_contain_text("Last runnot yet")
    expect(panel).to_contain_text("Next run would remove3 sessions in 4 files")
    expect(panel.locator(".retention-preview")).to_contain_text("telegram: 3 sessions in 4 files — e.g.")
    expect(panel.locator("img")).to_have_count(0)  # a key is text, never markup
    expect(panel.locator("dd time")).to_have_count(1)  # the next run's time
    ui.shot("overview-retention")


def test_overview_says_when_there_are_no_retention_rules(ui: PageUnderTest) -> None:
    ui.sign_in("#/overview")
    expect(ui.page.locator("section.retention")).to_contain_text("No retention rules: sessions are kept until deleted.")


CHART_TEXT = """() => [...document.querySelectorAll("figure.chart svg text")].map((t) =>
  parseFloat(getComputedStyle(t).fontSize) * t.ownerSVGElement.getScreenCTM().a)"""


def test_charts_are_readable_on_a_phone_with_whole_number_ticks_and_a_one_line_legend(
    open_page: Callable[..., PageUnderTest], daemon: Daemon, sessions: Path
) -> None:
    now = time.time()
    for i in range(3):  # 3 created today: the largest value of two charts is 3
        write_atomic(sessions, f"telegram:{i}", messages=2, created=now, updated=now)
    wait_indexed(daemon, 3)
    ui = open_page(daemon.url, viewport={"width": 390, "height": 844})
    ui.sign_in("#/overview")
    days = ui.page.locator("figure.chart", has_text="per day")
    expect(days.locator("svg circle")).to_have_count(60)
    ui.shot("overview-390")
    sizes = ui.page.evaluate(CHART_TEXT)
    assert sizes and min(sizes) >= 10, sorted(sizes)[:5]  # CSS pixels on screen, not the drawing's units
    for chart in (days, ui.page.locator("figure.chart", has_text="number of messages")):
        assert chart.locator("svg .grid text").all_text_contents() == ["0", "1", "2", "3"]  # not 0 and 5
    tops = days.locator(".legend .key-item").evaluate_all("items => items.map((i) => i.getBoundingClientRect().top)")
    assert len(tops) == 2 and len(set(tops)) == 1, tops
    scroll = ui.page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= 390, scroll  # nothing pushes the page sideways
