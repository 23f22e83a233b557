"""Clean-up from the page: delete one after confirming, delete by filter after a preview, restore from the trash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from tests.support import Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser, wait_indexed

pytestmark = needs_browser


def trash_files(sessions: Path) -> list[Path]:
    return sorted((sessions / ".trash").glob("*.json")) if (sessions / ".trash").exists() else []


def test_delete_one_asks_first_and_cancel_keeps_it(ui: PageUnderTest, sessions: Path) -> None:
    doomed = write_atomic(sessions, "telegram:1", messages=3)
    write_atomic(sessions, "telegram:2")
    ui.sign_in()
    row = ui.row("telegram:1")
    row.get_by_role("button", name="Delete telegram:1").click()
    dialog = ui.page.get_by_role("dialog", name="Delete this session?")
    expect(dialog).to_contain_text("telegram:1")
    expect(dialog).to_contain_text("3 messages")
    expect(dialog).to_contain_text("stay in the trash for 7 days")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    ui.shot("confirm-delete")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert doomed.exists()
    expect(ui.summary()).to_have_text("2 sessions · page 1")

    row.get_by_role("button", name="Delete telegram:1").click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(row).to_have_count(0)
    expect(ui.summary()).to_have_text("1 session · page 1")
    assert not doomed.exists() and len(trash_files(sessions)) == 1
    expect(ui.page.get_by_role("log", name="Notifications")).to_contain_text("Deleted telegram:1")


def test_bulk_delete_by_filter_shows_count_and_sample_then_deletes(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    for i in range(14):
        write_atomic(sessions, f"old:{i:02d}", updated=1_600_000_000.0 + i)
    for i in range(3):
        write_atomic(sessions, f"old:new{i}", updated=1_800_000_000.0)
        write_atomic(sessions, f"keep:{i}", updated=1_600_000_000.0)
    wait_indexed(daemon, 20)
    ui.sign_in()
    bulk = ui.page.get_by_role("button", name="Delete all matching…")
    expect(bulk).to_be_disabled()  # never without a filter
    expect(ui.page.get_by_text("Set a filter to delete in bulk.")).to_be_visible()
    ui.filter(prefix="old:", updated_before="2024-01-01T00:00")
    expect(ui.summary()).to_have_text("14 sessions match · page 1")
    bulk.click()
    dialog = ui.page.get_by_role("dialog", name="Delete 14 sessions?")
    expect(dialog.locator(".preview-count")).to_have_text(
        "14 sessions match: key starts with “old:”, updated before 2024-01-01 00:00 UTC."
    )
    shown = dialog.get_by_role("list", name="The sessions to delete").get_by_role("listitem")
    expect(shown).to_have_count(14)  # every one that will go, in a list that scrolls
    assert shown.all_text_contents() == [f"old:{i:02d}" for i in range(14)]
    ui.shot("bulk-preview")
    assert len(list(sessions.glob("old_*.json"))) == 17  # a preview deletes nothing
    dialog.get_by_role("button", name="Delete 14 sessions").click()
    expect(ui.page.get_by_role("log", name="Notifications")).to_contain_text("Deleted 14 sessions.")
    expect(ui.summary()).to_have_text("0 sessions match · page 1")
    assert sorted(p.name for p in sessions.glob("*.json")) == [
        "keep_0.json",
        "keep_1.json",
        "keep_2.json",
        "old_new0.json",
        "old_new1.json",
        "old_new2.json",
    ]


def test_bulk_delete_deletes_only_the_sessions_its_dialog_showed(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    for key in ("tmp:a", "tmp:b", "tmp:c"):
        write_atomic(sessions, key)
    wait_indexed(daemon, 3)
    ui.sign_in()
    ui.filter(prefix="tmp:")
    expect(ui.summary()).to_have_text("3 sessions match · page 1")
    ui.page.get_by_role("button", name="Delete all matching…").click()
    dialog = ui.page.get_by_role("dialog", name="Delete 3 sessions?")
    shown = dialog.get_by_role("list", name="The sessions to delete").get_by_role("listitem")
    expect(shown).to_have_count(3)
    assert shown.all_text_contents() == ["tmp:a", "tmp:b", "tmp:c"]
    # Between the preview and the confirmation: another client deletes tmp:a, the agent
    # rewrites tmp:b and writes tmp:brand-new.
    assert daemon.request("DELETE", "/api/v1/sessions/tmp:a")[0] == 200
    write_atomic(sessions, "tmp:b", messages=9)
    write_atomic(sessions, "tmp:brand-new")
    expect(ui.row("tmp:brand-new")).to_be_attached()
    expect(ui.row("tmp:b").locator("td").nth(2)).to_have_text("9")
    dialog.get_by_role("button", name="Delete 3 sessions").click()
    log = ui.page.get_by_role("log", name="Notifications")
    expect(log).to_contain_text("Deleted 1 session; 2 were not deleted:")
    expect(log).to_contain_text("tmp:a: already gone")
    expect(log).to_contain_text("tmp:b: changed since it was shown; not deleted")
    ui.shot("bulk-result")
    assert sorted(p.name for p in sessions.glob("*.json")) == ["tmp_b.json", "tmp_brand-new.json"]
    expect(ui.summary()).to_have_text("2 sessions match · page 1")


def test_delete_all_matching_is_disabled_when_nothing_matches(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    write_atomic(sessions, "tmp:a")
    wait_indexed(daemon, 1)
    ui.sign_in()
    bulk = ui.page.get_by_role("button", name="Delete all matching…")
    ui.filter(prefix="nothing:")
    expect(ui.summary()).to_have_text("0 sessions match · page 1")
    expect(bulk).to_be_disabled()
    expect(ui.page.get_by_text("Nothing to delete: no session matches.")).to_be_visible()
    write_atomic(sessions, "nothing:1")  # a live change brings a match: the button wakes up
    expect(bulk).to_be_enabled()


def test_trash_lists_deleted_sessions_and_restores_them(ui: PageUnderTest, sessions: Path) -> None:
    original = write_atomic(sessions, "slack:U1", messages=5)
    stored = original.read_bytes()
    ui.sign_in()
    ui.row("slack:U1").get_by_role("button", name="Delete slack:U1").click()
    ui.page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(ui.row("slack:U1")).to_have_count(0)
    ui.page.get_by_role("link", name="Trash").click()
    expect(ui.page.get_by_role("heading", name="Trash")).to_be_visible()
    entry = ui.page.locator("table.trash tbody tr")
    expect(entry).to_have_count(1)
    expect(entry.locator("td").first).to_have_text("slack:U1")
    expect(entry).to_contain_text("5")
    ui.shot("trash")
    entry.get_by_role("button", name="Restore slack:U1").click()
    expect(ui.page.get_by_role("log", name="Notifications")).to_contain_text("Restored slack:U1")
    expect(ui.page.get_by_text("The trash is empty.")).to_be_visible()
    assert original.read_bytes() == stored
    ui.page.get_by_role("link", name="Sessions").click()
    expect(ui.row("slack:U1")).to_be_visible()


def test_a_trashed_session_can_be_read_in_the_trash_before_restoring_it(ui: PageUnderTest, sessions: Path) -> None:
    write_atomic(sessions, "slack:U2", messages=3, summary="what we <b>said</b>")
    ui.sign_in()
    ui.row("slack:U2").get_by_role("button", name="Delete slack:U2").click()
    ui.page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(ui.row("slack:U2")).to_have_count(0)
    ui.page.get_by_role("link", name="Trash").click()
    ui.page.locator("table.trash tbody tr").get_by_role("button", name="View slack:U2").click()
    preview = ui.page.get_by_role("region", name="Deleted session slack:U2")
    expect(preview).to_contain_text("Read-only")
    expect(preview.locator(".messages li")).to_have_count(3)
    expect(preview).to_contain_text("m2")
    expect(preview).to_contain_text("what we <b>said</b>")  # text, never markup
    expect(preview.locator("b")).to_have_count(0)
    expect(ui.page.locator(".trash-view")).not_to_contain_text("null")
    assert len(trash_files(sessions)) == 1  # reading restores nothing
    ui.shot("trash-preview")
    preview.get_by_role("button", name="Restore slack:U2").click()
    expect(ui.page.get_by_role("log", name="Notifications")).to_contain_text("Restored slack:U2")
    expect(ui.page.get_by_text("The trash is empty.")).to_be_visible()
    expect(preview).to_have_count(0)


def test_with_the_trash_off_the_page_says_deletions_are_permanent(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path
) -> None:
    write_atomic(sessions, "a:1")
    ui = open_page(start_daemon(SESSIOND_TRASH_DAYS="0").url)
    ui.sign_in("#/trash")
    expect(ui.page.get_by_text("The trash is off")).to_be_visible()
    expect(ui.page.locator("table.trash")).to_have_count(0)
    ui.page.get_by_role("link", name="Sessions").click()
    ui.row("a:1").get_by_role("button", name="Delete a:1").click()
    expect(ui.page.get_by_role("dialog")).to_contain_text("this cannot be undone")
