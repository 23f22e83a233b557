"""Keys and contents are attacker-controlled: they render as text, and the page's CSP refuses inline code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from tests.support import Daemon, write_atomic

from .conftest import PageUnderTest, needs_browser

pytestmark = needs_browser

HOSTILE_KEYS = [
    '<img src=x onerror="window.__pwned=1">',
    '"><script>window.__pwned=2</script>',
    "<svg onload=window.__pwned=3>:chan",
    "a/b c?d#e%41&f=g",
    "..",
    ".notes",
]
PAYLOAD = '<img src=x onerror="window.__pwned=9"><script>window.__pwned=10</script>'


def hostile_session(key: str) -> dict[str, object]:
    return {
        "key": key,
        "messages": [
            {"role": "user", "content": f"{PAYLOAD} {key}"},
            {"role": "<b>boss</b>", "content": [{"type": "text", "text": PAYLOAD}]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": PAYLOAD, "function": {"name": PAYLOAD, "arguments": json.dumps({"html": PAYLOAD})}}],
            },
            {"role": "tool", "tool_call_id": PAYLOAD, "name": PAYLOAD, "content": PAYLOAD * 40},
        ],
        "summary": PAYLOAD,
        "created_at": 1_764_000_000.0,
        "updated_at": 1_764_000_000.0,
    }


def no_markup_ran(ui: PageUnderTest) -> None:
    ui.page.wait_for_timeout(300)  # an <img onerror> would fire once its load fails
    assert ui.page.evaluate("window.__pwned") is None
    assert ui.page.locator("img, script:not([src]), [onerror], [onload]").count() == 0


def test_hostile_keys_and_contents_render_as_text(
    open_page: Callable[..., PageUnderTest], daemon: Daemon, sessions: Path
) -> None:
    for n, key in enumerate(HOSTILE_KEYS):
        (sessions / f"hostile{n}.json").write_text(json.dumps(hostile_session(key)))
    # With the CSP bypassed, only the way the page builds its DOM stands between these
    # strings and script: an innerHTML anywhere would run them.
    ui = open_page(daemon.url, bypass_csp=True)
    ui.sign_in()
    expect(ui.rows).to_have_count(len(HOSTILE_KEYS))
    assert sorted(ui.keys()) == sorted(HOSTILE_KEYS)
    expect(ui.row("<svg onload=window.__pwned=3>:chan").locator("td.channel")).to_have_text("<svg onload=window.__pwned=3>")
    ui.shot("hostile-table")
    no_markup_ran(ui)

    for key in HOSTILE_KEYS:
        ui.row(key).get_by_role("link").click()
        expect(ui.page.get_by_role("heading", level=1)).to_have_text(key)
        messages = ui.page.get_by_role("list", name="Messages").locator("article")
        expect(messages).to_have_count(4)
        expect(messages.first.locator(".text")).to_have_text(f"{PAYLOAD} {key}")
        expect(messages.nth(1).locator(".role")).to_have_text("<b>boss</b>")
        messages.nth(2).locator("details.tool-call summary").click()
        expect(messages.nth(2).locator("details.tool-call pre")).to_contain_text(json.dumps(PAYLOAD))
        expect(ui.page.get_by_role("region", name="Summary")).to_contain_text(PAYLOAD)
        ui.page.locator("details.fold summary").last.click()
        no_markup_ran(ui)
        ui.page.go_back()
        expect(ui.rows).to_have_count(len(HOSTILE_KEYS))
    ui.row(HOSTILE_KEYS[0]).get_by_role("link").click()
    ui.shot("hostile-session")

    ui.page.get_by_role("link", name="Overview").click()
    expect(ui.page.locator("figure.chart").first).to_contain_text("<svg onload=window.__pwned=3>")
    no_markup_ran(ui)

    # Keys that look like paths or dot segments are still just keys: deletable from the page.
    ui.page.get_by_role("link", name="Sessions").click()
    deleted = ["..", "a/b c?d#e%41&f=g", ".notes"]
    for key in deleted:
        ui.row(key).get_by_role("button", name=f"Delete {key}").click()
        ui.page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
        expect(ui.row(key)).to_have_count(0)
    left = json.loads(daemon.get("/api/v1/sessions")[1])["sessions"]
    assert sorted(left) == sorted(set(HOSTILE_KEYS) - set(deleted))


def test_the_page_refuses_inline_script_eval_and_html_sinks(ui: PageUnderTest) -> None:
    ui.expect_console(r"Content Security Policy|TrustedScript|TrustedHTML")
    response = ui.page.goto(f"{ui.base}/ui/")
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    try:
        ui.page.add_script_tag(content="window.__injected = 1")
    except Exception:
        pass  # refused outright is as good as refused silently
    assert ui.page.evaluate("window.__injected") is None
    # (Code that page.evaluate runs itself may eval; a later task of the page may not.)
    ui.page.evaluate(
        "() => setTimeout(() => { try { eval('1'); window.__eval = 'ran'; } catch (e) { window.__eval = e.name; } })"
    )
    expect(ui.page.locator("body")).to_be_visible()
    ui.page.wait_for_function("() => window.__eval !== undefined")
    assert ui.page.evaluate("window.__eval") == "EvalError"
    assert (
        ui.page.evaluate(
            "() => { try { document.createElement('button').setAttribute('onclick', 'window.__inline = 1'); return 'set'; }"
            " catch (e) { return e.name; } }"
        )
        == "TypeError"
    )  # an inline handler cannot even be written
    assert (
        ui.page.evaluate(
            "() => { try { document.body.innerHTML = '<b>x</b>'; return 'assigned'; } catch (e) { return e.name; } }"
        )
        == "TypeError"
    )
    assert (
        ui.page.evaluate("() => fetch('http://example.invalid/').then(() => 'sent', (e) => e.name)") == "TypeError"
    )  # connect-src 'self': nothing leaves for another origin


def test_a_link_naming_an_inherited_property_falls_back_to_the_sessions_view(ui: PageUnderTest, sessions: Path) -> None:
    write_atomic(sessions, "a:1")
    ui.sign_in("#/constructor")  # a shared link is opened before signing in
    expect(ui.page.get_by_role("heading", name="Sessions")).to_be_visible()
    expect(ui.row("a:1")).to_be_visible()
    for hash_ in ("#/__proto__", "#/toString", "#/hasOwnProperty", "#/valueOf?x=1", "#/overview", "#/constructor"):
        ui.page.evaluate("h => { location.hash = h; }", hash_)
        heading = "Overview" if hash_ == "#/overview" else "Sessions"
        expect(ui.page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    ui.page.reload()  # signed in, straight onto the odd hash
    expect(ui.row("a:1")).to_be_visible()
    assert not ui.unexpected_console()
