"""What an agent is doing, from every source that knows a part of it.

Hooks say what the agent reported last; the container says whether it still runs; the
proxy says whether a model request is in flight; Claude Code's transcript shows an
interrupted turn (Escape fires no hook). Together they never leave a stopped agent
shown as `working`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..backends import ContainerStatus
from ..models import AgentStatus, SessionStatus

# Exit codes of an agent that was stopped rather than one that failed.
CLEAN_EXITS = frozenset({0, 130, 137, 143})
INTERRUPTED = "[Request interrupted by user"

_CLAUDE_EVENTS = {
    "UserPromptSubmit": AgentStatus.WORKING,
    "PreToolUse": AgentStatus.WORKING,
    "PostToolUse": AgentStatus.WORKING,
    "PermissionRequest": AgentStatus.WAITING_APPROVAL,
    "Stop": AgentStatus.WAITING_INPUT,
    "SessionEnd": AgentStatus.EXITED,
}
_CLAUDE_NOTIFICATIONS = {
    "permission_prompt": AgentStatus.WAITING_APPROVAL,
    "idle_prompt": AgentStatus.IDLE,
}
_CODEX_NOTIFICATIONS = {"agent-turn-complete": AgentStatus.WAITING_INPUT}


def status_from_report(agent: str, event: str, payload: dict[str, Any]) -> AgentStatus | None:
    """Map an agent's hook report to a status; None for reports that say nothing new."""
    if agent == "claude":
        if event == "SessionStart":
            # A fresh start submits the prompt next; a resumed one waits for the user.
            resumed = payload.get("source") == "resume"
            return AgentStatus.WAITING_INPUT if resumed else None
        if event == "Notification":
            return _CLAUDE_NOTIFICATIONS.get(str(payload.get("notification_type")))
        return _CLAUDE_EVENTS.get(event)
    if agent == "codex" and event == "notify":
        return _CODEX_NOTIFICATIONS.get(str(payload.get("type")))
    return None


def effective_status(
    reported: AgentStatus,
    lifecycle: SessionStatus,
    container: ContainerStatus | None,
    model_calls: int,
    transcript: Path | None,
) -> AgentStatus:
    if lifecycle != SessionStatus.RUNNING and lifecycle != SessionStatus.STOPPED:
        return AgentStatus.UNKNOWN if lifecycle != SessionStatus.ARCHIVED else AgentStatus.EXITED
    if container is None:
        return AgentStatus.UNKNOWN
    if container.state in ("exited", "dead"):
        code = container.exit_code
        return AgentStatus.EXITED if code in CLEAN_EXITS else AgentStatus.ERROR
    if container.state != "running":
        return AgentStatus.UNKNOWN  # created, restarting, paused
    if model_calls > 0:
        return AgentStatus.WORKING
    if reported == AgentStatus.EXITED:
        return AgentStatus.UNKNOWN  # it reported ending, yet runs: restarted since
    if reported == AgentStatus.WORKING and transcript is not None and was_interrupted(transcript):
        return AgentStatus.WAITING_INPUT
    return reported


def was_interrupted(transcript: Path) -> bool:
    """Whether the transcript's last entry is an interruption by the user."""
    try:
        with transcript.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return False
    return bool(tail) and INTERRUPTED in tail[-1]
