"""The dashboard driven by Textual's Pilot against a real daemon, real sessions (the real
engine, real Claude Code in clauderon-agents:bookworm) and the fake model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from clauderon.client import Client
from clauderon.tui.app import ClauderonApp
from clauderon.tui.daemon import DaemonClient
from clauderon.tui.screens.delete import DeleteScreen
from clauderon.tui.screens.new_session import NewSessionScreen
from clauderon.tui.widgets.console_view import ConsoleView
from clauderon.tui.widgets.session_list import SessionList

from .conftest import AGENTS_IMAGE, Live, run, until
from .screen_text import screen_text

pytestmark = [pytest.mark.docker, pytest.mark.agent]

AGENT_LINE = "bypass permissions"


def make_app(live: Live) -> ClauderonApp:
    client = Client(paths=live.clauderon.paths, autostart=False)
    sessions = client.request("GET", "/api/sessions", params={"archived": True})
    return ClauderonApp(DaemonClient(client), sessions=sessions, default_repo=str(live.repo))


def row(app: ClauderonApp, name: str) -> str:
    return next((line for line in screen_text(app).splitlines() if f" {name} " in line), "")


def console(app: ClauderonApp) -> str:
    """The whole screen the read-only viewer holds (the pane shows what fits of it)."""
    return app.screen.query_one(ConsoleView).text


def notes(app: ClauderonApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def test_list_live_status_and_send(live: Live):
    async def scenario() -> None:
        app = make_app(live)
        async with app.run_test(size=(100, 30)) as pilot:
            # The session is listed, waiting for the user, and marked so.
            line = await until(pilot, lambda: row(app, "first"), what="first listed")
            assert "waiting input" in line and line.split()[1] == "!"
            # Its live screen: the agent's own terminal, read-only.
            # (Claude Code's status line, drawn under its input box.)
            await until(pilot, lambda: AGENT_LINE in console(app), what="the agent's screen")
            await until(pilot, lambda: AGENT_LINE in screen_text(app), 10, "drawn in the pane")
            # Another client stops it: the change arrives live, through /ws/events.
            live.clauderon.run("stop", "first")
            await until(pilot, lambda: "exited" in row(app, "first"), what="stopped live")
            # x starts it again from the dashboard.
            await pilot.press("x")
            await until(pilot, lambda: "running" in row(app, "first"), what="started")
            # s sends a message, as `clauderon send`.
            await until(pilot, lambda: AGENT_LINE in console(app), 60, "its screen again")
            await pilot.press("s")
            await until(pilot, lambda: app.screen.query("#message"), what="send dialog")
            await pilot.press(*"and goodbye", "enter")
            live.api.wait_for(lambda r: "and goodbye" in json.dumps(r.json), timeout=90)
            await until(pilot, lambda: "Sent to first" in notes(app), what="sent note")
            await until(pilot, lambda: "waiting input" in row(app, "first"), what="waiting again")

    run(scenario())


def test_create_through_the_form_then_delete_refuses_unsaved_work(live: Live):
    before = live.clauderon.leftovers(live.repo)

    async def scenario() -> None:
        app = make_app(live)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("n")
            form = await until(
                pilot, lambda: isinstance(app.screen, NewSessionScreen) and app.screen
            )
            assert form.query_one("#repo", Input).value == str(live.repo)
            form.query_one("#prompt", TextArea).load_text("write the\nreport")
            form.query_one("#image", Input).value = AGENTS_IMAGE
            form.query_one("#name", Input).value = "from-form"
            # An error shows in the form, and the daemon leaves nothing behind.
            form.query_one("#base", Input).value = "no-such-branch"
            await pilot.press("ctrl+s")
            error = await until(
                pilot,
                lambda: (
                    form.query_one("#form-error").display
                    and str(form.query_one("#form-error").render())
                ),
                what="the error in the form",
            )
            assert "no-such-branch" in error
            assert live.clauderon.leftovers(live.repo) == before
            # Corrected, it creates the session, which the list shows and selects.
            form.query_one("#base", Input).value = ""
            await pilot.press("ctrl+s")
            await until(pilot, lambda: not isinstance(app.screen, NewSessionScreen), 180)
            await until(pilot, lambda: row(app, "from-form"), what="the new session")
            # Its agent reads the prompt and finishes its turn: that arrives live, with a
            # toast (and the bell).
            live.api.wait_for(lambda r: "write the\\nreport" in json.dumps(r.json), 120)
            await until(pilot, lambda: "waiting input" in row(app, "from-form"), 120, "status live")
            await until(
                pilot,
                lambda: "from-form is waiting for input" in notes(app),
                what="the announcement",
            )
            # Unsaved work: delete is refused and says what would be lost.
            worktree = Path(
                next(s for s in live.clauderon.sessions() if s["name"] == "from-form")["worktree"]
            )
            (worktree / "notes.txt").write_text("precious\n")
            table = app.screen.query_one(SessionList)
            table.move_cursor(row=table.shown.index("from-form"))
            await pilot.press("D")
            dialog = await until(pilot, lambda: isinstance(app.screen, DeleteScreen) and app.screen)
            await pilot.click("#delete")
            refusal = await until(
                pilot,
                lambda: (
                    "Refused" in str(dialog.query_one("#what").render())
                    and str(dialog.query_one("#what").render())
                ),
                what="the refusal",
            )
            assert "notes.txt" in refusal and "refs/clauderon/from-form/" in refusal
            assert any(s["name"] == "from-form" for s in live.clauderon.sessions())
            # Saving it first, then deleting: the note says where it is.
            await pilot.click("#delete")
            await until(pilot, lambda: not isinstance(app.screen, DeleteScreen), 60)
            saved = await until(
                pilot,
                lambda: next((n for n in notes(app) if "saved as" in n), None),
                what="where the work went",
            )
            assert "refs/clauderon/from-form/" in saved
            await until(pilot, lambda: not row(app, "from-form"), what="gone from the list")
            await pilot.press("q")

    run(scenario())
    assert live.clauderon.leftovers(live.repo)["containers"] == before["containers"]
    refs = live.clauderon.run("list", "--json").json  # the daemon still answers
    assert [s["name"] for s in refs] == ["first"]


def test_session_names_complete_from_the_running_daemon(live: Live):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "clauderon"],
        env={
            **os.environ,
            **live.clauderon.env,
            "_CLAUDERON_COMPLETE": "complete_bash",
            "COMP_WORDS": "clauderon attach fi",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.split() == ["first"], result.stderr
