import os
import threading
from datetime import UTC, datetime, timedelta

import pyte
import pytest

from clauderon.backends import ContainerStatus
from clauderon.daemon.console import render
from clauderon.daemon.manager import reconcile_due
from clauderon.daemon.status import (
    effective_status,
    status_from_report,
    transcript_interrupted,
    was_interrupted,
)
from clauderon.models import AgentStatus, SessionStatus

RUNNING = ContainerStatus("c", "running")


@pytest.mark.parametrize(
    ("agent", "event", "payload", "status"),
    [
        ("claude", "SessionStart", {"source": "startup"}, None),
        ("claude", "SessionStart", {"source": "resume"}, AgentStatus.WAITING_INPUT),
        ("claude", "UserPromptSubmit", {}, AgentStatus.WORKING),
        ("claude", "PreToolUse", {"tool_name": "Bash"}, AgentStatus.WORKING),
        ("claude", "PermissionRequest", {}, AgentStatus.WAITING_APPROVAL),
        (
            "claude",
            "Notification",
            {"notification_type": "permission_prompt"},
            AgentStatus.WAITING_APPROVAL,
        ),
        ("claude", "Notification", {"notification_type": "idle_prompt"}, AgentStatus.IDLE),
        ("claude", "Notification", {"notification_type": "auth_success"}, None),
        ("claude", "Stop", {}, AgentStatus.WAITING_INPUT),
        ("claude", "SessionEnd", {}, AgentStatus.EXITED),
        ("claude", "Bogus", {}, None),
        ("codex", "notify", {"type": "agent-turn-complete"}, AgentStatus.WAITING_INPUT),
        ("codex", "notify", {"type": "other"}, None),
        ("gemini", "Stop", {}, None),
    ],
)
def test_reports(agent, event, payload, status):
    assert status_from_report(agent, event, payload) == status


def test_a_stopped_agent_is_never_working():
    working = AgentStatus.WORKING
    run = SessionStatus.RUNNING
    assert (
        effective_status(working, run, ContainerStatus("c", "exited", 0), 0, False)
        == AgentStatus.EXITED
    )
    assert (
        effective_status(working, run, ContainerStatus("c", "exited", 143), 0, False)
        == AgentStatus.EXITED
    )
    assert (
        effective_status(working, run, ContainerStatus("c", "exited", 1), 0, False)
        == AgentStatus.ERROR
    )
    assert (
        effective_status(working, run, ContainerStatus("c", "dead", 137), 1, False)
        == AgentStatus.EXITED
    )
    assert effective_status(working, run, None, 0, False) == AgentStatus.UNKNOWN
    assert (
        effective_status(working, run, ContainerStatus("c", "restarting"), 0, False)
        == AgentStatus.UNKNOWN
    )


def test_model_calls_in_flight_mean_working():
    assert (
        effective_status(AgentStatus.WAITING_INPUT, SessionStatus.RUNNING, RUNNING, 1, False)
        == AgentStatus.WORKING
    )


def test_an_interrupted_turn_waits_for_input(tmp_path):
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"a":1}\n{"message":{"content":"[Request interrupted by user]"}}\n')
    assert was_interrupted(transcript)
    assert (
        effective_status(
            AgentStatus.WORKING, SessionStatus.RUNNING, RUNNING, 0, was_interrupted(transcript)
        )
        == AgentStatus.WAITING_INPUT
    )
    transcript.write_text('{"message":{"content":"[Request interrupted by user]"}}\n{"b":2}\n')
    assert not was_interrupted(transcript)
    assert not was_interrupted(tmp_path / "missing.jsonl")


def test_archived_and_creating():
    assert (
        effective_status(AgentStatus.WORKING, SessionStatus.ARCHIVED, None, 0, False)
        == AgentStatus.EXITED
    )
    assert (
        effective_status(AgentStatus.WORKING, SessionStatus.CREATING, None, 0, False)
        == AgentStatus.UNKNOWN
    )


def test_reconcile_backs_off_then_gives_up():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not reconcile_due(0, start, start + timedelta(seconds=29))
    assert reconcile_due(0, start, start + timedelta(seconds=30))
    assert not reconcile_due(1, start, start + timedelta(seconds=119))
    assert reconcile_due(1, start, start + timedelta(seconds=120))
    assert reconcile_due(2, start, start + timedelta(seconds=300))
    assert not reconcile_due(3, start, start + timedelta(days=1))


def test_render_redraws_the_screen():
    screen = pyte.Screen(20, 3)
    stream = pyte.ByteStream(screen)
    stream.feed(b"\x1b[31;1mred\x1b[0m plain\r\n\x1b[38;2;1;2;3mrgb\x1b[0m")
    again = pyte.Screen(20, 3)
    pyte.ByteStream(again).feed(render(screen))
    assert again.display == screen.display
    assert again.buffer[0][0].fg == "red" and again.buffer[0][0].bold
    assert again.buffer[1][0].fg == "010203"
    assert (again.cursor.x, again.cursor.y) == (screen.cursor.x, screen.cursor.y)


def _transcript_dir(worktree, name="-workspace"):
    projects = worktree / ".claude" / "projects" / name
    projects.mkdir(parents=True)
    return projects


INTERRUPTED_LINE = '{"message":{"content":"[Request interrupted by user]"}}\n'


def test_the_transcript_is_found_in_any_project(tmp_path):
    _transcript_dir(tmp_path, "a")
    (_transcript_dir(tmp_path, "b") / "sid.jsonl").write_text(INTERRUPTED_LINE)
    assert transcript_interrupted(tmp_path, "sid")
    assert not transcript_interrupted(tmp_path, "other")
    assert not transcript_interrupted(tmp_path / "missing", "sid")


def test_a_fifo_transcript_never_blocks(tmp_path):
    # What an agent did (issue 9): its transcript a FIFO; the daemon hung opening it.
    os.mkfifo(_transcript_dir(tmp_path) / "sid.jsonl")
    done = threading.Event()
    result = []
    worker = threading.Thread(
        target=lambda: (result.append(transcript_interrupted(tmp_path, "sid")), done.set()),
        daemon=True,
    )
    worker.start()
    assert done.wait(10), "reading a FIFO transcript blocked"
    assert result == [False]
    assert not was_interrupted(tmp_path / ".claude" / "projects" / "-workspace" / "sid.jsonl")


def test_links_in_the_transcript_path_are_not_followed(tmp_path):
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "sid.jsonl").write_text(INTERRUPTED_LINE)
    worktree = tmp_path / "wt"
    worktree.mkdir()
    projects = _transcript_dir(worktree)
    (projects / "sid.jsonl").symlink_to(outside / "sid.jsonl")
    assert not transcript_interrupted(worktree, "sid")
    assert not was_interrupted(projects / "sid.jsonl")
    (projects / "sid.jsonl").unlink()
    projects.rmdir()
    projects.symlink_to(outside)  # a linked project directory
    assert not transcript_interrupted(worktree, "sid")
    (worktree / ".claude" / "projects" / "-workspace").unlink()
    (worktree / ".claude" / "projects").rmdir()
    (worktree / ".claude" / "projects").symlink_to(tmp_path)  # or the whole tree
    assert not transcript_interrupted(worktree, "sid")


def test_only_the_tail_of_a_big_transcript_is_read(tmp_path):
    path = _transcript_dir(tmp_path) / "sid.jsonl"
    with path.open("w") as handle:
        handle.write('{"x":"' + "y" * 5_000_000 + '"}\n')
        handle.write(INTERRUPTED_LINE)
    assert transcript_interrupted(tmp_path, "sid")


def test_an_agent_that_cannot_reach_its_model_is_an_error_with_the_reason():
    from clauderon.daemon.status import status_reason

    running = ContainerStatus("c", "running")
    no_key = "no credential for api.anthropic.com is set on the host"
    refused = "the model API api.anthropic.com answered 401"
    # "Not logged in" waits for ever, whatever the agent last reported.
    assert status_reason(AgentStatus.WORKING, running, 0, None, no_key) == (
        AgentStatus.ERROR,
        no_key,
    )
    assert status_reason(AgentStatus.WORKING, running, 0, refused, None) == (
        AgentStatus.ERROR,
        refused,
    )
    # A call in flight: it is working now.
    assert status_reason(AgentStatus.WORKING, running, 1, refused, None) == (
        AgentStatus.WORKING,
        None,
    )
    assert status_reason(AgentStatus.WAITING_INPUT, running, 0, None, None) == (
        AgentStatus.WAITING_INPUT,
        None,
    )
    exited = ContainerStatus("c", "exited", exit_code=3)
    assert status_reason(AgentStatus.ERROR, exited, 0, None, None) == (
        AgentStatus.ERROR,
        "the agent exited with code 3",
    )
