"""Browser tests: Debian's chromium driven by Playwright, against a real daemon on a real workspace.

Every test gets its own daemon (a `sessiond` process on a fresh workspace, rate
limits off, trash on unless it says otherwise) and its own browser context. The
page's console is watched: an error or an uncaught exception fails the test,
except those a test declares it expects (a 401 for a wrong token, say).
Screenshots go to the test's tmp_path/screens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import TOKEN, Daemon

from .chromium import CHROMIUM_ARGS

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Locator,
        Page,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run does)",
)
DEFAULT_ENV = {
    "SESSIOND_RATE_LIMIT_PER_IP": "0",
    "SESSIOND_RATE_LIMIT_PER_TOKEN": "0",
    "SESSIOND_TRASH_DAYS": "7",
    "SESSIOND_ACCESS_LOG": "0",
    "SESSIOND_EVENTS_KEEPALIVE": "1",
}

if sync_playwright is not None:
    expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium per test module (module scope: its loop never outlives the module)."""
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, chromium_sandbox=False)
        yield chromium
        chromium.close()


@pytest.fixture
def start_daemon(workspace: Path) -> Iterator[Callable[..., Daemon]]:
    """Start a real sessiond on the test's workspace: start_daemon(SESSIOND_X="...")."""
    started: list[Daemon] = []

    def start(port: int | None = None, **env: str | None) -> Daemon:
        daemon = Daemon(workspace, env={**DEFAULT_ENV, **env}, port=port)
        started.append(daemon)
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.__exit__()


@pytest.fixture
def daemon(start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon()


def wait_indexed(daemon: Daemon, count: int, timeout: float = 10) -> None:
    """Wait until the daemon lists *count* sessions: files written just before the page looks."""
    deadline = time.monotonic() + timeout
    while json.loads(daemon.get("/api/v1/sessions")[1])["count"] != count:
        assert time.monotonic() < deadline, f"the daemon never listed {count} sessions"
        time.sleep(0.02)


class PageUnderTest:
    """A browser tab on the daemon's page, with its console watched and screenshots named."""

    def __init__(self, context: BrowserContext, base: str, screens: Path) -> None:
        self.context = context
        self.base = base
        self.screens = screens
        self.page: Page = context.new_page()
        self.problems: list[str] = []
        self.console: list[str] = []  # every message the page logs, of any level
        self.expected: list[re.Pattern[str]] = []
        self.requests: list[Any] = []
        self._watch(self.page)

    def _watch(self, page: Page) -> None:
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("console", lambda msg: self.problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("request", lambda request: self.requests.append(request))  # noqa: PLW0108 (Playwright cannot wrap a builtin method)

    def new_tab(self) -> Page:
        """Another tab in the same browser context (its own sessionStorage)."""
        page = self.context.new_page()
        self._watch(page)
        return page

    def expect_console(self, pattern: str) -> None:
        """A console error matching *pattern* is part of what the test does."""
        self.expected.append(re.compile(pattern))

    def unexpected_console(self) -> list[str]:
        return [p for p in self.problems if not any(pattern.search(p) for pattern in self.expected)]

    def goto(self, hash_: str = "") -> None:
        self.page.goto(f"{self.base}/ui/{hash_}")

    def sign_in(self, hash_: str = "", token: str = TOKEN) -> None:
        self.goto(hash_)
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("navigation", name="Views")).to_be_visible()

    def shot(self, name: str) -> Path:
        self.screens.mkdir(exist_ok=True)
        path = self.screens / f"{len(list(self.screens.iterdir())):02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # -- the sessions table --

    @property
    def rows(self) -> Locator:
        return self.page.locator("table.sessions tbody tr")

    def row(self, key: str) -> Locator:
        return self.rows.filter(has=self.page.locator("td.key", has_text=key)).filter(
            has=self.page.get_by_role("link", name=key, exact=True)
        )

    def keys(self) -> list[str]:
        return self.page.locator("table.sessions tbody td.key").all_text_contents()

    def summary(self) -> Locator:
        return self.page.locator(".sessions-view .summary")

    def filter(self, **values: str) -> None:
        """Fill filter fields (prefix=, updated_after=, min_messages=, limit=, ...) and apply them."""
        form = self.page.get_by_role("search", name="Filter sessions")
        for name, value in values.items():
            group, label = FIELDS[name]
            field = (form.get_by_role("group", name=group) if group else form).get_by_label(label, exact=True)
            if name == "limit":
                field.select_option(value)
            else:
                field.fill(value)
        form.get_by_role("button", name="Apply").click()


FIELDS = {
    "prefix": (None, "Key prefix"),
    "updated_after": ("Updated", "after"),
    "updated_before": ("Updated", "before"),
    "created_after": ("Created", "after"),
    "created_before": ("Created", "before"),
    "min_messages": ("Messages", "at least"),
    "max_messages": ("Messages", "at most"),
    "limit": (None, "Per page"),
}


@pytest.fixture
def open_page(browser: Browser, tmp_path: Path) -> Iterator[Callable[..., PageUnderTest]]:
    """open_page(daemon_url, **context_options): a fresh context and tab at 1280x800, UTC, en-US."""
    pages: list[PageUnderTest] = []

    def open_(base: str, **options: Any) -> PageUnderTest:
        settings = {
            "viewport": {"width": 1280, "height": 800},
            "locale": "en-US",
            "timezone_id": "UTC",
            "accept_downloads": True,
            **options,
        }
        ui = PageUnderTest(browser.new_context(**settings), base, tmp_path / "screens")
        pages.append(ui)
        return ui

    yield open_
    problems = [p for ui in pages for p in ui.unexpected_console()]
    for ui in pages:
        ui.context.close()
    assert not problems, "console errors:\n" + "\n".join(problems)


@pytest.fixture
def ui(open_page: Callable[..., PageUnderTest], daemon: Daemon) -> PageUnderTest:
    return open_page(daemon.url)
