"""The main screens, drawn from fixed data at a fixed time (see fixed.py), compared with
the SVGs under __snapshots__/. `pytest --snapshot-update tests/tui/test_snapshots.py`
redraws them after a deliberate change; look at them before committing."""

from __future__ import annotations

import asyncio

import pytest
from textual.pilot import Pilot

from clauderon.tui.app import ClauderonApp

from .fixed import NOW, SESSIONS, FixedDaemon


@pytest.fixture(autouse=True)
def _colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)  # one test sets it; the rest draw colour


def make_app() -> ClauderonApp:
    return ClauderonApp(
        FixedDaemon(), sessions=SESSIONS, now=lambda: NOW, default_repo="/home/dev/webshop"
    )


async def settle(pilot: Pilot) -> None:
    await pilot.pause(0.4)  # the console connects after the cursor settles
    await pilot.wait_for_scheduled_animations()
    pilot.app.clear_notifications()  # toasts time out: whether one shows is a matter of time
    await pilot.pause(0.1)


def test_main_80x24(snap_compare):
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle)


def test_main_wide(snap_compare):
    assert snap_compare(make_app(), terminal_size=(160, 36), run_before=settle)


def test_main_no_color(snap_compare, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle)


def test_filter_and_archived(snap_compare):
    async def before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("A", "slash", *"webshop", "enter")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=before)


def test_audit(snap_compare):
    async def before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("down", "l")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=before)


def test_new_session_form(snap_compare):
    async def before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        await pilot.press(*"Add a CSV export", "enter", *"to the orders page")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=before)


def test_delete_shows_what_would_be_lost(snap_compare):
    async def before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("down", "D")
        await settle(pilot)
        await pilot.click("#delete")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=before)


def test_help(snap_compare):
    async def before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=before)


def test_resize_moves_the_screen_beside_the_list():
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert not app.screen.has_class("wide")
            await pilot.resize_terminal(160, 36)
            await settle(pilot)
            assert app.screen.has_class("wide")
            await pilot.resize_terminal(80, 24)
            await settle(pilot)
            assert not app.screen.has_class("wide")
            await pilot.click("#sessions", offset=(10, 2))  # the mouse selects the second row
            await settle(pilot)
            assert app.screen.query_one("#detail-pane").border_title.startswith("add-csv-export")

    asyncio.run(scenario())


def test_diff_merge_and_pull_request_keys():
    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            await pilot.press("d")
            await settle(pilot)
            shown = str(app.screen.query_one("#diff-text").render())
            assert "+def export(): \\x1b]52;c;cm0gLXJmIH4=\\x07return csv" in shown
            assert "\x1b" not in shown
            name = app.screen.sessions.selected["name"]
            daemon = app.daemon
            for key, route in (("m", "merge"), ("p", "pr")):
                await pilot.press(key)
                await settle(pilot)
                await pilot.click("#yes")
                await settle(pilot)
                assert ("POST", f"/api/sessions/{name}/{route}") in daemon.calls

    asyncio.run(scenario())
