"""A fresh `make run`, then the page at the URL the README's first screen gives, signed in as it says."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support import README, Demo

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser

FIRST_SCREEN = "\n".join(README.splitlines()[:30])


def demo_keys(demo: Demo) -> set[str]:
    """The keys of `make run`'s workspace, as the daemon serves them."""
    keys = set()
    for path in (demo.run_dir / "workspace" / "sessions").glob("*.json"):
        try:
            keys.add(json.loads(path.read_bytes())["key"])
        except ValueError:
            pass  # the demo's invalid file
    return keys


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    demo = Demo(tmp_path / "run", {})
    yield demo
    demo.stop()


def test_the_readme_first_screen_url_opens_the_page_on_a_fresh_make_run(
    demo: Demo, open_page: Callable[..., PageUnderTest]
) -> None:
    urls = re.findall(r"http://127\.0\.0\.1:8080/ui/", FIRST_SCREEN)
    assert urls, "the README's first screen does not show the page's URL"
    assert "cat .run/token" in FIRST_SCREEN  # and where the token to paste is
    printed = (demo.run_dir.parent / f"make-run-{demo.port}.log").read_text()
    assert f"Web page: {demo.url}/ui/" in printed  # make run says it too

    ui = open_page(demo.url)
    ui.page.goto(urls[0].replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}"))
    ui.page.get_by_label("API token").fill((demo.run_dir / "token").read_text())  # as pasted: newline and all
    ui.page.get_by_role("button", name="Sign in").click()
    sessions = len(demo_keys(demo))
    expect(ui.summary()).to_have_text(f"{sessions} sessions · page 1")
    shown = ui.keys()
    assert shown and shown == sorted(demo_keys(demo))[: len(shown)]
    expect(ui.page.get_by_role("status").first).to_contain_text("Live")
    ui.shot("make-run")
    alice = json.loads((demo.run_dir / "workspace" / "sessions" / "user_alice_project-planning.json").read_text())
    messages = len(alice["messages"])
    ui.filter(prefix="user:alice:")
    ui.row("user:alice:project-planning").get_by_role("link").click()
    expect(ui.page.get_by_role("list", name="Messages").locator("article")).to_have_count(messages)
    ui.page.get_by_role("link", name="Overview").click()
    expect(ui.page.locator(".tiles")).to_contain_text(f"Sessions{sessions}")
