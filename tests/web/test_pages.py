"""The web UI as a user drives it, in Chromium: log in, the live list, a session's
terminal, the create form, delete through its confirmation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clauderon.client import Client
from tests.integration.conftest import REPO_ROOT

from .conftest import AGENTS_IMAGE, Web, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.agent]

AGENT_LINE = "bypass permissions"  # Claude Code's status line under its input box
XSS = "<img src=x onerror=alert(1)>"


def row(page, name: str):
    return page.locator(f'li.session-row[data-name="{name}"]')


def wait_for_agent_screen(page) -> None:
    # (A selector, not wait_for_function: the page's CSP forbids evaluating strings.)
    page.wait_for_selector(f"#terminal .xterm-rows:has-text('{AGENT_LINE}')", timeout=120_000)


def test_login_link_gives_a_cookie_and_no_token_anywhere(context, web: Web):
    web.login_link()
    out = web.clauderon.run("web", "--listen", f"127.0.0.1:{web.port}").stdout
    assert "already listens" in out  # the same listener, nothing restarted
    link = web.login_link()
    token = link.split("token=", 1)[1]
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(link)
    page.wait_for_selector("#connection:has-text('live')")
    # Redirected to a URL without the token.
    assert page.url == f"{web.base}/"
    row(page, "first").locator("a").click()
    page.wait_for_selector("#terminal .xterm-rows")
    # No request after the login link carries the token, or any token.
    assert urls[0] == link and len(urls) > 5
    assert not [url for url in urls[1:] if "token" in url]
    # The cookie is HttpOnly and SameSite=Strict.
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert token not in cookie["value"]
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("document.cookie") == ""  # no script can read it
    # Nothing the daemon logged holds it.
    for log in (web.clauderon.home / "logs").iterdir():
        assert token not in log.read_text(errors="replace"), log
    # The link works once.
    again = context.new_page()
    answer = again.goto(link)
    assert answer.status == 403 and "used already or has expired" in again.inner_text("body")


def test_list_shows_the_session_and_changes_arrive_live(page, web: Web):
    first = row(page, "first")
    first.wait_for()
    assert "waiting input" in first.inner_text()
    assert "repo" in first.locator(".repo").inner_text()
    # Another client stops it: the list follows /ws/events, no reload.
    web.clauderon.run("stop", "first")
    page.wait_for_selector('li.session-row[data-name="first"] .state:has-text("stopped")')
    # Started again from its page.
    first.locator("a").click()
    page.get_by_role("button", name="Start").click()
    page.wait_for_selector("#badge:has-text('running')", timeout=120_000)
    page.goto(f"{web.base}/#/")
    page.wait_for_selector('li.session-row[data-name="first"] .state:has-text("running")')


def test_terminal_shows_the_agent_and_typing_reaches_the_model(page, web: Web):
    page.goto(f"{web.base}/#/s/first")
    wait_for_agent_screen(page)
    page.locator("#terminal").click()
    page.keyboard.type("typed in the browser")
    page.keyboard.press("Enter")
    web.api.wait_for(lambda r: "typed in the browser" in json.dumps(r.json), timeout=90)
    # The send box, as `clauderon send`.
    wait_for_agent_screen(page)
    # A paste arrives as one paste (xterm.js handles the browser's paste event).
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData('text/plain', 'pasted in the browser');
            document.querySelector('#terminal .xterm-helper-textarea').dispatchEvent(
                new ClipboardEvent('paste', {clipboardData: data, bubbles: true}));
        }"""
    )
    page.keyboard.press("Enter")
    web.api.wait_for(lambda r: "pasted in the browser" in json.dumps(r.json), timeout=90)
    # The agent's terminal follows the window's size.
    screen = Client(paths=web.clauderon.paths, autostart=False)
    page.set_viewport_size({"width": 1280, "height": 1000})
    shown = page.locator("#terminal .xterm-rows > div")
    wait_for(
        lambda: screen.request("GET", "/api/sessions/first/screen")["rows"] == shown.count(),
        30,
    )
    taller = shown.count()
    page.set_viewport_size({"width": 1280, "height": 700})
    wait_for(lambda: shown.count() < taller, 30)
    wait_for(
        lambda: screen.request("GET", "/api/sessions/first/screen")["rows"] == shown.count(),
        30,
    )
    wait_for_agent_screen(page)
    page.fill("#send-text", "sent from the box")
    page.click("#send")
    page.wait_for_selector(".notice:has-text('Sent.')")
    web.api.wait_for(lambda r: "sent from the box" in json.dumps(r.json), timeout=90)
    # Its audit log, live: the model calls went through the proxy.
    page.click("#tab-audit")
    page.wait_for_selector("#audit li:has-text('api.anthropic.com')")
    # Its diff: the agent changed nothing.
    page.click("#tab-diff")
    page.wait_for_selector("#diff:has-text('No changes.')")


def test_copy_puts_the_terminals_selection_on_the_clipboard(page, web: Web):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.base)
    page.goto(f"{web.base}/#/s/first")
    wait_for_agent_screen(page)
    page.click("button:has-text('Copy')")  # nothing selected yet
    page.wait_for_selector(".notice:has-text('Select text in the terminal first.')")
    line = page.locator(f"#terminal .xterm-rows > div:has-text('{AGENT_LINE}')").first
    box = line.bounding_box()
    assert box is not None
    # Drag across the whole row, as a user selects.
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, y, steps=5)
    page.mouse.move(box["x"] + box["width"] - 1, y, steps=5)
    page.mouse.up()
    page.click("button:has-text('Copy')")
    page.wait_for_selector(".notice:has-text('Copied the selection.')")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert AGENT_LINE in copied
    assert copied.strip() == line.inner_text().strip()


def test_create_from_the_form_xss_stays_text_delete_through_the_confirmation(page, web: Web):
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    page.click("#new-link")
    page.wait_for_selector("#create-form")
    assert page.input_value("#repo") == str(web.repo)  # the repository the daemon knows
    page.fill("#prompt", XSS)
    page.click("summary")
    page.fill("#image", AGENTS_IMAGE)
    page.fill("#name", "from-web")
    # An error stays in the form.
    page.fill("#base", "no-such-branch")
    page.click("#create")
    error = page.wait_for_selector("#form-error:not([hidden])", timeout=120_000)
    assert "no-such-branch" in error.inner_text()
    assert web.session("from-web") is None
    # Corrected: created, with progress, then its page.
    page.fill("#base", "")
    page.click("#create")
    page.wait_for_url(f"{web.base}/#/s/from-web", timeout=180_000)
    # The prompt is shown as text, never as markup.
    page.click("#tab-details")
    assert page.locator(".facts dd.prompt").inner_text() == XSS
    assert page.locator("img").count() == 0
    web.api.wait_for(lambda r: "onerror=alert(1)" in json.dumps(r.json), timeout=120)
    page.goto(f"{web.base}/#/")
    row(page, "from-web").wait_for()
    assert page.locator("img").count() == 0 and alerts == []

    # Work that would be lost: the confirmation says so, and saving it comes first.
    worktree = Path(web.session("from-web")["worktree"])
    (worktree / "notes.txt").write_text("precious\n")
    page.wait_for_selector('li.session-row[data-name="from-web"]')
    page.goto(f"{web.base}/#/s/from-web")
    page.click("#delete")
    page.wait_for_selector("dialog[open]:has-text('Delete the session')")
    page.click("dialog button:has-text('Delete')")
    refusal = page.wait_for_selector("dialog[open] .lost", timeout=120_000).inner_text()
    assert "notes.txt" in refusal
    assert web.session("from-web") is not None
    page.click("dialog button:has-text('Save and delete')")
    page.wait_for_url(f"{web.base}/#/", timeout=120_000)
    notice = page.wait_for_selector(".notice:has-text('Deleted from-web')").inner_text()
    assert "refs/clauderon/from-web/" in notice
    assert web.session("from-web") is None
    assert row(page, "from-web").count() == 0


def test_phone_and_desktop_layouts(browser, web: Web):
    """Both layouts fit their screens; screenshots for the README with
    CLAUDERON_WEB_SCREENSHOTS=docs (or any directory)."""
    out = os.environ.get("CLAUDERON_WEB_SCREENSHOTS")
    for label, viewport, mobile in (
        ("desktop", {"width": 1280, "height": 800}, False),
        ("phone", {"width": 390, "height": 844}, True),
    ):
        context = browser.new_context(
            viewport=viewport, is_mobile=mobile, has_touch=mobile, device_scale_factor=1
        )
        try:
            page = context.new_page()
            page.goto(web.login_link())
            row(page, "first").wait_for()
            for where in ("#/", "#/s/first"):
                page.goto(f"{web.base}/{where}")
                page.wait_for_timeout(300)
                # Nothing but the terminal scrolls sideways.
                assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            wait_for_agent_screen(page)
            if out:
                target = Path(out) if os.path.isabs(out) else REPO_ROOT / out
                target.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(target / f"web-{label}-session.png"))
                page.goto(f"{web.base}/#/")
                row(page, "first").wait_for()
                page.screenshot(path=str(target / f"web-{label}.png"))
        finally:
            context.close()


def test_usable_with_the_keyboard(page, web: Web):
    def focused() -> str:
        return page.evaluate("document.activeElement.id || document.activeElement.className")

    page.keyboard.press("n")
    page.wait_for_selector("#create-form")
    assert focused() == "prompt"
    page.goto(f"{web.base}/#/")
    row(page, "first").wait_for()
    for _ in range(20):  # Tab reaches the session's row; Enter opens it
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('li.session-row') !== null"):
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"{web.base}/#/s/first")
    page.wait_for_selector("#terminal .xterm-rows")
    assert "xterm-helper-textarea" in focused()  # typing goes to the agent
    page.keyboard.press("Control+BracketRight")  # Ctrl+] leaves the terminal
    assert focused() == "send-text"
    page.focus("#delete")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open]:has-text('Delete the session')")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"  # the safe choice
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    assert web.session("first") is not None
