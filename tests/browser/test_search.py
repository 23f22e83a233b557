"""The page's full-text search: the box, marked snippets built as text, click-through, progress, live, off."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from playwright.sync_api import expect

from tests.support import TOKEN, Daemon

from .conftest import PageUnderTest, needs_browser, wait_indexed

pytestmark = needs_browser

HOSTILE = "<img src=x onerror=alert(1)> can I get a refund for <b>order</b> 4711?"


def write(sessions: Path, key: str, messages: list[dict[str, Any]], updated: float = 1_700_000_000.0) -> Path:
    """A session file written as the agent does (tmp, then rename)."""
    path = sessions / (key.replace(":", "_") + ".json")
    tmp = path.with_suffix(".tmp")
    doc = {"key": key, "messages": messages, "summary": None, "created_at": updated - 60, "updated_at": updated}
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, path)
    return path


def said(*texts: str) -> list[dict[str, Any]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


def search(ui: PageUnderTest, q: str) -> None:
    box = ui.page.get_by_role("search", name="Full-text search")
    box.get_by_label("Search messages").fill(q)
    box.get_by_role("button", name="Search").click()


def results(ui: PageUnderTest) -> Any:
    return ui.page.get_by_role("list", name="Search results").locator(":scope > li")


def test_found_and_marked_as_text_even_when_a_message_is_markup(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    write(sessions, "web:evil", said(HOSTILE, "Refunds take five days."))
    write(sessions, "web:calm", said("Where is my parcel?", "It left the depot."))
    wait_indexed(daemon, 2)
    dialogs: list[str] = []
    ui.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    ui.sign_in()
    search(ui, "refund")
    expect(results(ui)).to_have_count(1)
    assert parse_qs(ui.page.url.partition("#/sessions?")[2]) == {"q": ["refund"]}  # the hash holds the query
    result = results(ui).first
    expect(result.get_by_role("heading")).to_have_text(HOSTILE)  # the title: the first user message, as text
    expect(result.locator("code.key")).to_have_text("web:evil")
    hit = result.locator("a.hit").first
    expect(hit.locator(".snippet")).to_have_text(HOSTILE)
    expect(hit.locator("mark")).to_have_text(["refund"])
    expect(ui.summary()).to_be_hidden()  # the list's part gives way to the results
    assert ui.page.locator("img").count() == 0 and ui.page.locator(".search-results b").count() == 0
    ui.page.wait_for_timeout(300)  # an onerror would have fired by now
    assert dialogs == []
    ui.shot("search-results")

    ui.page.reload()  # the query comes back from the hash
    expect(results(ui)).to_have_count(1)
    expect(ui.page.get_by_label("Search messages")).to_have_value("refund")
    ui.page.get_by_role("button", name="Clear search").click()
    expect(ui.summary()).to_have_text("2 sessions · page 1")
    expect(ui.page.get_by_role("list", name="Search results")).to_be_hidden()


def test_a_hit_opens_the_session_at_its_message_with_the_match_marked(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    filler = [f"small talk number {i}" for i in range(260)]
    long_answer = "\n".join(f"line {i}: nothing to see here" for i in range(40)) + "\nthe Kerberos ticket expired\n"
    filler[250] = long_answer  # past the first 200 messages rendered, and folded (long)
    write(sessions, "ops:deep", said(*filler))
    wait_indexed(daemon, 1)
    ui.sign_in("#/sessions?q=kerberos")
    hit = results(ui).first.locator("a.hit").first
    expect(hit.locator(".hit-where")).to_have_text("user #251")
    hit.click()
    page = ui.page
    expect(page.get_by_role("heading", level=1)).to_have_text("ops:deep")
    assert "message=250" in page.url
    target = page.locator("ol.messages > li").nth(250)
    expect(target).to_have_class("search-target")
    mark = target.locator("mark.search-match")
    expect(mark).to_have_text(["Kerberos"])
    expect(mark).to_be_visible()  # its fold is open
    expect(mark).to_be_in_viewport()
    ui.shot("search-hit")
    page.get_by_role("link", name="← Sessions").click()  # back to the results
    expect(results(ui)).to_have_count(1)


def test_the_build_progress_shows_while_the_index_is_incomplete(
    start_daemon: Callable[..., Daemon], open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    # Enough text that building the index outlasts signing in (about 20 MB).
    words = " ".join(f"word{i} lorem ipsum dolor sit amet" for i in range(60))
    for i in range(6000):
        write(sessions, f"bulk:{i:05d}", said(f"common {words}", words, words, words), updated=1_700_000_000.0 + i)
    daemon = start_daemon()
    ui = open_page(daemon.url)
    ui.sign_in("#/sessions?q=common")
    progress = ui.page.locator(".search-progress")
    expect(progress).to_contain_text("Building the search index")
    expect(progress).to_contain_text("of 6,000 sessions indexed")
    ui.shot("search-progress")
    expect(progress).to_be_hidden(timeout=60_000)  # complete: the progress goes
    expect(ui.page.locator(".search-summary")).to_contain_text("so far for “common”")


def test_a_search_asked_for_before_the_list_is_painted_raises_nothing(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    # CI saw it once: the list drew its rows, the address turned to a search before the next frame,
    # and the frame's mark read the rows of the list that had gone ("reading 'rows' of null").
    # Made certain here: the search is asked for as soon as the rows are drawn, before any frame.
    write(sessions, "t:1", said("secret words"))
    wait_indexed(daemon, 1)
    ui.goto("")
    ui.page.evaluate(
        """() => new MutationObserver((changes, observer) => {
            const summary = document.querySelector(".sessions-view .summary");
            if (!summary || !summary.textContent.includes("1 session")) return;
            observer.disconnect();
            history.replaceState(null, "", "#/sessions?q=secret");
            window.dispatchEvent(new HashChangeEvent("hashchange"));
        }).observe(document.body, {subtree: true, childList: true, characterData: true})"""
    )
    ui.page.get_by_label("API token").fill(TOKEN)
    ui.page.get_by_role("button", name="Sign in").click()
    expect(results(ui)).to_have_count(1)
    ui.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 50)))")
    assert ui.unexpected_console() == []


def test_a_result_goes_when_its_session_is_deleted(ui: PageUnderTest, daemon: Daemon, sessions: Path) -> None:
    write(sessions, "t:1", said("the invoice is wrong"))
    doomed = write(sessions, "t:2", said("another invoice please"))
    wait_indexed(daemon, 2)
    ui.sign_in("#/sessions?q=invoice")
    expect(results(ui)).to_have_count(2)
    expect(ui.page.get_by_role("status").first).to_contain_text("Live")
    doomed.unlink()
    expect(results(ui)).to_have_count(1)
    expect(results(ui).locator("code.key")).to_have_text("t:1")
    expect(ui.page.locator(".search-summary")).to_have_text("1 session for “invoice”, best first.")


def test_search_off_hides_the_box(
    start_daemon: Callable[..., Daemon], open_page: Callable[..., PageUnderTest], sessions: Path
) -> None:
    write(sessions, "t:1", said("secret words"))
    daemon = start_daemon(SESSIOND_SEARCH="0")
    ui = open_page(daemon.url)
    ui.expect_console(r"status of 404")  # the search the address asks for
    ui.sign_in()
    expect(ui.summary()).to_have_text("1 session · page 1")
    expect(ui.page.get_by_role("search", name="Filter sessions")).to_be_visible()
    expect(ui.page.locator("form.search-box")).to_be_hidden()
    ui.page.evaluate("location.hash = '#/sessions?q=secret'")
    expect(ui.page.locator(".search-view .error")).to_contain_text("search is turned off")
    expect(ui.page.locator("form.search-box")).to_be_hidden()
