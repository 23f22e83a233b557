"""Keyboard alone, labels, visible focus; the layout at 1280x800 and in a narrow window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support import TOKEN, Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser

FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const name = el.getAttribute('aria-label') || (el.labels && el.labels[0] && el.labels[0].textContent)
    || el.textContent.trim() || el.getAttribute('name') || el.tagName;
  // On screen to the eye: not clipped away or covered (what a visually hidden element is).
  const box = el.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {
    name: name.trim(),
    tag: el.tagName,
    outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    visible: box.width >= 4 && box.height >= 4 && hit !== null && (hit === el || el.contains(hit)),
  };
}"""


def settled(page: Page) -> None:
    """The view is on screen with its data (the change feed keeps the network busy for ever)."""
    expect(page.locator("#view h1")).to_be_visible()
    expect(page.get_by_text("Loading…")).to_have_count(0)
    expect(page.locator("[aria-busy=true]")).to_have_count(0)


def tab_to(page: Page, name: str, most: int = 60, key: str = "Tab") -> list[str]:
    """Press Tab until the focused element is called *name*; every stop must show its focus."""
    seen = []
    for _ in range(most):
        page.keyboard.press(key)
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            continue  # focus went out to the browser, past either end of the page
        assert focused["outline"] and focused["visible"], f"no visible focus on {focused}"
        seen.append(focused["name"])
        if focused["name"] == name:
            return seen
    raise AssertionError(f"{name!r} not reached by Tab; went through {seen}")


def test_keyboard_alone_signs_in_filters_opens_and_deletes(ui: PageUnderTest, sessions: Path) -> None:
    write_atomic(sessions, "slack:a", messages=2)
    write_atomic(sessions, "telegram:a", messages=1)
    page = ui.page
    ui.goto()
    expect(page.get_by_label("API token")).to_be_focused()  # the page opens ready to type
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    expect(ui.row("slack:a")).to_be_visible()

    # Signed in, the next stops are the view's first fields: the search box, then the filters.
    assert tab_to(page, "Key prefix") == ["Search messages", "Search", "Key prefix"]
    assert tab_to(page, "Skip to content", key="Shift+Tab") == [
        "Search",
        "Search messages",
        "Sign out",
        "Trash",
        "Overview",
        "Sessions",
        "Skip to content",
    ]
    page.keyboard.press("Enter")  # skip to content
    tab_to(page, "Key prefix")
    page.keyboard.type("telegram:")
    page.keyboard.press("Enter")
    expect(ui.summary()).to_have_text("1 session matches · page 1")
    order = tab_to(page, "telegram:a")
    sort_by_key = next(i for i, name in enumerate(order) if name.startswith("Key"))
    assert order.index("Apply") < sort_by_key < order.index("telegram:a")  # filters, then the table
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("telegram:a")
    settled(page)  # the conversation laid out: nothing moves under the next focus stops

    tab_to(page, "Delete…")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Delete this session?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert (sessions / "telegram_a.json").exists()
    tab_to(page, "Delete…")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(ui.summary()).to_have_text("0 sessions match · page 1")
    assert not (sessions / "telegram_a.json").exists()


@pytest.mark.parametrize("view", ["#/sessions", "#/overview", "#/trash", "#/session/slack%3Aa"])
def test_every_control_has_a_name(ui: PageUnderTest, sessions: Path, view: str) -> None:
    write_atomic(sessions, "slack:a", messages=2)
    ui.sign_in(view)
    settled(ui.page)
    unnamed = ui.page.evaluate("""() => [...document.querySelectorAll('input, select, button, a[href]')]
      .filter((el) => el.offsetParent !== null)
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
      .map((el) => el.outerHTML.slice(0, 80))""")
    assert unnamed == []


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_each_view_fits_the_window_without_sideways_scrolling(
    open_page: Callable[..., PageUnderTest], daemon: Daemon, sessions: Path, width: int, height: int
) -> None:
    for i in range(8):
        write_atomic(sessions, f"user:someone-with-a-long-name-{i}@example.com/project/{'x' * 40}", messages=i)
    ui = open_page(daemon.url, viewport={"width": width, "height": height})
    ui.sign_in()
    one = "#/session/user%3Asomeone-with-a-long-name-1%40example.com%2Fproject%2F" + "x" * 40
    for view in ("#/sessions", "#/overview", "#/trash", one):
        ui.page.goto(f"{daemon.url}/ui/{view}")
        settled(ui.page)
        overflow = ui.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{view} is {overflow}px wider than a {width}px window"
        ui.shot(f"{width}-{view.split('/')[1]}")
    ui.page.goto(f"{daemon.url}/ui/#/sessions")
    delete = ui.rows.first.get_by_role("button")
    expect(delete).to_be_visible()
    box = delete.bounding_box()
    assert box is not None and box["x"] + box["width"] <= width  # every row's actions are reachable


def test_a_narrow_window_sorts_and_every_focus_stop_is_on_screen(
    open_page: Callable[..., PageUnderTest], daemon: Daemon, sessions: Path
) -> None:
    for i in range(3):
        write_atomic(sessions, f"slack:{i}", messages=i, updated=1_700_000_000.0 + 3600 * ((i + 1) % 3))
    ui = open_page(daemon.url, viewport={"width": 390, "height": 844})
    ui.sign_in()
    expect(ui.summary()).to_have_text("3 sessions · page 1")
    page = ui.page
    ui.shot("narrow-sort")
    # Cards have no column headers to click: the sort buttons stand above them, on screen.
    updated = page.get_by_role("button", name="Updated")
    expect(updated).to_be_in_viewport()
    updated.click()
    expect(page.get_by_role("columnheader", name="Updated")).to_have_attribute("aria-sort", "descending")
    assert ui.keys() == ["slack:1", "slack:0", "slack:2"]
    # By keyboard: from the filters to the first card, every stop visible where it is.
    page.get_by_label("Key prefix").focus()
    order = tab_to(page, "slack:1")
    assert [name for name in order if name.startswith(("Key", "Messages", "Created", "Updated"))][:4] == [
        "Key",
        "Messages",
        "Created",
        "Updated▼",
    ]
