"""Codex: a static binary, settings in $CODEX_HOME/config.toml (copied in at start)."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import AgentKind, Session
from ..spec import Mount
from . import REPORT_COMMAND, Agent


def toml_string(value: str) -> str:
    # A TOML basic string has JSON's escapes for everything clauderon writes.
    return json.dumps(value)


class Codex(Agent):
    kind = AgentKind.CODEX
    command = "codex"
    display_name = "Codex"
    model_host = "api.openai.com"
    default_version = "0.171.0"

    def npm_package(self, version: str, arch: str, musl: bool) -> tuple[str, list[str]]:
        triple = {"x64": "x86_64", "arm64": "aarch64"}[arch] + "-unknown-linux-musl"
        vendor = f"package/vendor/{triple}"
        return f"@openai/codex@{version}-linux-{arch}", [
            f"{vendor}/bin/codex",
            f"{vendor}/codex-path/rg",
        ]

    def write_settings(self, session: Session, session_dir: Path, home: Path) -> list[Mount]:
        # Codex ignores OPENAI_BASE_URL; a provider entry is how it takes an endpoint. It is
        # always clauderon's own, so websockets (which the proxy's upstreams may not speak)
        # are off and the key comes from the (placeholder) OPENAI_API_KEY.
        base_url = session.env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        lines = [
            f"# Written by clauderon for session {session.name}; copied to $CODEX_HOME at start.",
            "check_for_update_on_startup = false",
            'preferred_auth_method = "apikey"',
            'model_provider = "clauderon"',
            # Codex reports a finished turn through its notification hook.
            f'notify = ["{REPORT_COMMAND}", "codex", "notify"]',
            "",
            "[analytics]",
            "enabled = false",
            "",
            "[features]",
            "plugins = false",
            "",
            "[model_providers.clauderon]",
            'name = "clauderon"',
            f"base_url = {toml_string(base_url)}",
            'env_key = "OPENAI_API_KEY"',
            'wire_api = "responses"',
            "supports_websockets = false",
        ]
        for path in sorted({"/workspace", session.workdir}):
            lines += ["", f"[projects.{toml_string(path)}]", 'trust_level = "trusted"']
        codex_dir = session_dir / "codex"
        codex_dir.mkdir(exist_ok=True)
        (codex_dir / "config.toml").write_text("\n".join(lines) + "\n")
        return [Mount(str(codex_dir), "/etc/clauderon/codex", read_only=True)]
