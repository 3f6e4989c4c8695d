"""Claude Code: a native binary, settings in ~/.claude.json (HOME is /workspace)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..models import CREDENTIAL_PLACEHOLDER, AgentKind, Session
from ..spec import Mount
from . import REPORT_COMMAND, Agent

log = logging.getLogger(__name__)


def _read_template(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


# Hooks that report the agent's status (the project's own hooks still run beside them).
STATUS_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "Notification",
    "Stop",
    "SessionEnd",
)


def _hooks() -> dict[str, Any]:
    def command(event: str) -> dict[str, Any]:
        return {"type": "command", "command": f"{REPORT_COMMAND} claude {event}", "timeout": 10}

    return {
        event: [{"matcher": "*", "hooks": [command(event)]}]
        if event == "PreToolUse"
        else [{"hooks": [command(event)]}]
        for event in STATUS_EVENTS
    }


class ClaudeCode(Agent):
    kind = AgentKind.CLAUDE
    command = "claude"
    display_name = "Claude Code"
    model_host = "api.anthropic.com"
    default_version = "2.1.332"

    def npm_package(self, version: str, arch: str, musl: bool) -> tuple[str, list[str]]:
        suffix = "-musl" if musl else ""
        return f"@anthropic-ai/claude-code-linux-{arch}{suffix}@{version}", ["package/claude"]

    def write_settings(self, session: Session, session_dir: Path, home: Path) -> list[Mount]:
        # ~/.claude.json: the user's template (~/.clauderon/claude.json, if any) plus the
        # smallest set of keys that lets `claude "prompt"` start and submit at once: no
        # onboarding, no "use this API key?" question, no trust dialog. Each session gets its
        # own writable copy: the CLI rewrites it constantly, and sessions must not share it.
        settings = _read_template(home / "claude.json")
        projects = settings.setdefault("projects", {})
        for path in {"/workspace", session.workdir}:
            projects.setdefault(path, {}).update(
                hasTrustDialogAccepted=True, hasCompletedProjectOnboarding=True
            )
        settings.update(hasCompletedOnboarding=True, bypassPermissionsModeAccepted=True)
        # The key the CLI sees is the proxy's placeholder: approve it (the CLI keeps the last
        # 20 characters of an approved key).
        responses = settings.setdefault("customApiKeyResponses", {})
        responses.setdefault("approved", []).append(CREDENTIAL_PLACEHOLDER[-20:])
        responses.setdefault("rejected", [])
        claude_json = session_dir / "claude.json"
        claude_json.write_text(json.dumps(settings, indent=2) + "\n")
        claude_json.chmod(0o600)

        # Managed settings (read-only, highest precedence) choose the permission mode, so
        # nothing has to be written into the worktree's .claude/settings.json, which may be
        # the project's own.
        managed_dir = session_dir / "claude-managed"
        managed_dir.mkdir(exist_ok=True)
        mode = "default" if session.ask_permissions else "bypassPermissions"
        managed: dict[str, Any] = {"permissions": {"defaultMode": mode}, "hooks": _hooks()}
        if not session.ask_permissions:
            managed["skipDangerousModePermissionPrompt"] = True
        (managed_dir / "managed-settings.json").write_text(json.dumps(managed, indent=2) + "\n")
        return [
            Mount(str(claude_json), "/workspace/.claude.json"),
            Mount(str(managed_dir), "/etc/claude-code", read_only=True),
        ]

    def env(self, session: Session) -> dict[str, str]:
        return {
            # The container is the sandbox: allow bypass mode even when the uid is 0.
            "IS_SANDBOX": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
