"""The page knows its token's scope: the header names it, a read token sees no delete or restore controls,
and a delete it forges anyway is refused by the server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from tests.support import Daemon, write_atomic
from tests.web.test_scopes import SECRETS, write_tokens

from .conftest import PageUnderTest, needs_browser, wait_indexed

pytestmark = needs_browser

READ = SECRETS["support"][1]
DELETE = SECRETS["cleaner"][1]


def scoped_daemon(start_daemon: Callable[..., Daemon], sessions: Path, tmp_path: Path) -> Daemon:
    for key in ("user:one", "user:two", "user:gone"):
        write_atomic(sessions, key)
    (tmp_path / "state").mkdir()
    daemon = start_daemon(
        SESSIOND_TOKENS_FILE=str(write_tokens(tmp_path / "tokens", SECRETS)), SESSIOND_STATE_DIR=str(tmp_path / "state")
    )
    wait_indexed(daemon, 3)
    status, _, _ = daemon.request("DELETE", "/api/v1/sessions/user:gone")  # something in the trash
    assert status == 200
    return daemon


def test_a_read_token_sees_who_it_is_and_no_delete_or_restore_controls(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path, tmp_path: Path
) -> None:
    daemon = scoped_daemon(start_daemon, sessions, tmp_path)
    ui = open_page(daemon.url)
    ui.sign_in(token=READ)
    expect(ui.page.locator("#who")).to_have_text("support · read")
    expect(ui.rows).to_have_count(2)
    expect(ui.page.get_by_role("button", name="Delete user:one")).to_have_count(0)
    expect(ui.page.get_by_role("button", name="Delete all matching…")).to_be_hidden()
    ui.page.get_by_role("link", name="user:one", exact=True).click()
    expect(ui.page.get_by_role("heading", name="user:one")).to_be_visible()
    expect(ui.page.get_by_role("button", name="Delete…")).to_be_hidden()
    ui.page.get_by_role("navigation", name="Views").get_by_role("link", name="Trash").click()
    expect(ui.page.get_by_role("button", name="View user:gone")).to_be_visible()
    expect(ui.page.get_by_role("button", name="Restore user:gone")).to_be_hidden()
    ui.shot("read-token")

    # A forged request with the page's own token: the server refuses it, whatever the page shows.
    ui.expect_console("403")
    answer = ui.page.evaluate(
        """async () => {
            const token = sessionStorage.getItem("sessiond.token");
            const resp = await fetch("/api/v1/sessions/user:one", { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
            return [resp.status, await resp.text()];
        }"""
    )
    assert answer[0] == 403 and json.loads(answer[1]) == {"detail": "The token 'support' may not delete sessions"}
    assert (sessions / "user_one.json").exists()


def test_a_delete_token_sees_the_controls(
    open_page: Callable[..., PageUnderTest], start_daemon: Callable[..., Daemon], sessions: Path, tmp_path: Path
) -> None:
    daemon = scoped_daemon(start_daemon, sessions, tmp_path)
    ui = open_page(daemon.url)
    ui.sign_in(token=DELETE)
    expect(ui.page.locator("#who")).to_have_text("cleaner · delete")
    expect(ui.page.get_by_role("button", name="Delete user:one")).to_be_visible()
    expect(ui.page.get_by_role("button", name="Delete all matching…")).to_be_visible()
    # A delete from the page is audited under the page's token.
    ui.page.get_by_role("button", name="Delete user:one").click()
    ui.page.get_by_role("dialog", name="Delete this session?").get_by_role("button", name="Delete").click()
    expect(ui.row("user:one")).to_have_count(0)
    records = json.loads(daemon.get("/api/v1/audit?prefix=user:one")[1])["records"]
    assert [(r["actor"], r["key"], r["outcome"]) for r in records] == [("cleaner", "user:one", "to trash")]
    ui.page.get_by_role("navigation", name="Views").get_by_role("link", name="Trash").click()
    expect(ui.page.get_by_role("button", name="Restore user:gone")).to_be_visible()
