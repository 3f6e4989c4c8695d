"""What an agent is doing, from every source that knows a part of it.

Hooks say what the agent reported last; the container says whether it still runs; the
proxy says whether a model request is in flight; Claude Code's transcript shows an
interrupted turn (Escape fires no hook). Together they never leave a stopped agent
shown as `working`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from ..backends import ContainerState, ContainerStatus
from ..models import AgentStatus, SessionStatus

# Exit codes of an agent that was stopped rather than one that failed.
CLEAN_EXITS = frozenset({0, 130, 137, 143})
INTERRUPTED = "[Request interrupted by user"
TAIL_BYTES = 4096
MAX_PROJECT_DIRS = 1000  # `.claude/projects/*` entries looked at, at most
# Opening what a container made: never a link, never wait on a FIFO or a device.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

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
    interrupted: bool,
) -> AgentStatus:
    """`interrupted`: the transcript ends with an interruption (see `transcript_interrupted`;
    read off the event loop, as everything in the worktree is the container's)."""
    if lifecycle != SessionStatus.RUNNING and lifecycle != SessionStatus.STOPPED:
        return AgentStatus.UNKNOWN if lifecycle != SessionStatus.ARCHIVED else AgentStatus.EXITED
    if container is None:
        return AgentStatus.UNKNOWN
    if container.state.ended:
        code = container.exit_code
        return AgentStatus.EXITED if code in CLEAN_EXITS else AgentStatus.ERROR
    if container.state != ContainerState.RUNNING:
        return AgentStatus.UNKNOWN  # created, restarting, paused
    if model_calls > 0:
        return AgentStatus.WORKING
    if reported == AgentStatus.EXITED:
        return AgentStatus.UNKNOWN  # it reported ending, yet runs: restarted since
    if reported == AgentStatus.WORKING and interrupted:
        return AgentStatus.WAITING_INPUT
    return reported


def _tail(fd: int) -> bytes | None:
    """The last bytes of an open file, if it is a regular file."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return None
    return os.pread(fd, TAIL_BYTES, max(0, info.st_size - TAIL_BYTES))


def _interrupted(tail: bytes | None) -> bool:
    lines = (tail or b"").decode(errors="replace").strip().splitlines()
    return bool(lines) and INTERRUPTED in lines[-1]


def was_interrupted(transcript: Path) -> bool:
    """Whether the transcript's last entry is an interruption by the user. Only a regular
    file is read (a link, a FIFO or a device is not), and only its last 4 KiB."""
    try:
        fd = os.open(transcript, _OPEN_FLAGS)
    except OSError:
        return False
    try:
        return _interrupted(_tail(fd))
    except OSError:
        return False
    finally:
        os.close(fd)


def transcript_interrupted(worktree: Path, session_id: str) -> bool:
    """Claude Code's transcript `.claude/projects/*/<id>.jsonl` in the worktree ends with
    an interruption. The worktree is the container's: every step is taken from an open
    directory without following a link, and at most MAX_PROJECT_DIRS entries are read.
    Blocking: call it in a worker thread."""
    name = f"{session_id}.jsonl"
    opened: list[int] = []
    try:
        fd = os.open(worktree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.append(fd)
        for part in (".claude", "projects"):
            fd = os.open(part, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=fd)
            opened.append(fd)
        projects = fd
        with os.scandir(projects) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_PROJECT_DIRS:
                    break
                if not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    project = os.open(entry.name, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=projects)
                except OSError:
                    continue
                try:
                    transcript = os.open(name, _OPEN_FLAGS, dir_fd=project)
                except OSError:
                    continue
                finally:
                    os.close(project)
                try:
                    return _interrupted(_tail(transcript))
                finally:
                    os.close(transcript)
    except OSError:
        return False
    finally:
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
    return False


def status_reason(
    status: AgentStatus,
    container: ContainerStatus | None,
    model_calls: int,
    model_error: str | None,
    missing_credential: str | None,
) -> tuple[AgentStatus, str | None]:
    """The status a user should see, and why when it is an error they must act on: an
    agent that cannot call its model (no credential; the model API refused it; egress
    denies the model host) waits for nothing, whatever its last report said."""
    if container is None or container.state != ContainerState.RUNNING:
        if status == AgentStatus.ERROR and container is not None:
            return status, f"the agent exited with code {container.exit_code}"
        return status, None
    if model_calls > 0:
        return status, None
    if missing_credential:
        return AgentStatus.ERROR, missing_credential
    if model_error:
        return AgentStatus.ERROR, model_error
    return status, None
