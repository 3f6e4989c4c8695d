"""The user's real credentials: read on the host, used only by the proxy.

Sources, first found wins: the daemon's environment (`ANTHROPIC_API_KEY`…), then
`~/.clauderon/secrets/<name>` (directory 0700, files 0600). A secret file may hold an
OAuth token with its refresh token as JSON; the proxy alone refreshes it (one refresh at
a time, however many sessions ask), so parallel sessions never race for a single-use
refresh token, and no container ever sees either token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput

log = logging.getLogger(__name__)

ENV_NAMES: dict[str, tuple[str, ...]] = {
    "anthropic_api_key": ("ANTHROPIC_API_KEY",),
    "claude_oauth_token": ("CLAUDE_CODE_OAUTH_TOKEN",),
    "openai_api_key": ("OPENAI_API_KEY", "CODEX_API_KEY"),
    "github_token": ("GITHUB_TOKEN", "GH_TOKEN"),
}
# Where an OAuth token is refreshed when its file does not say (the CLIs' public clients).
OAUTH_DEFAULTS: dict[str, tuple[str, str]] = {
    "claude_oauth_token": (
        "https://console.anthropic.com/v1/oauth/token",
        "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    ),
}
REFRESH_MARGIN = 60.0  # seconds before expiry

PostJSON = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def env_names(name: str) -> tuple[str, ...]:
    return ENV_NAMES.get(name, (name.upper(),))


def mask(value: str) -> str:
    return f"{value[:4]}…{value[-4:]}" if len(value) >= 16 else "****"


@dataclass
class OAuthState:
    refresh_token: str
    token_url: str
    client_id: str
    expires_at: float | None  # epoch seconds


@dataclass
class Credential:
    name: str
    value: str
    source: str  # "env:NAME" or "file:/path"
    oauth: OAuthState | None = None
    warning: str | None = None

    @property
    def expired(self) -> bool:
        return bool(
            self.oauth
            and self.oauth.expires_at is not None
            and self.oauth.expires_at - REFRESH_MARGIN < time.time()
        )


def _parse_secret(name: str, text: str) -> tuple[str, OAuthState | None]:
    """A plain token, or OAuth JSON (clauderon's shape or Claude's .credentials.json)."""
    text = text.strip()
    if not text.startswith("{"):
        return text, None
    data = json.loads(text)
    if "claudeAiOauth" in data:  # ~/.claude/.credentials.json
        inner = data["claudeAiOauth"]
        data = {
            "access_token": inner.get("accessToken"),
            "refresh_token": inner.get("refreshToken"),
            "expires_at": (inner.get("expiresAt") or 0) / 1000 or None,
        }
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("JSON secret has no access_token")
    refresh = data.get("refresh_token")
    if not refresh:
        return access, None
    default_url, default_client = OAUTH_DEFAULTS.get(name, ("", ""))
    token_url = data.get("token_url") or default_url
    if not token_url:
        raise ValueError("an OAuth secret with a refresh_token needs a token_url")
    expires = data.get("expires_at")
    return access, OAuthState(
        refresh,
        token_url,
        data.get("client_id") or default_client,
        float(expires) if expires else None,
    )


class CredentialStore:
    def __init__(
        self, secrets_dir: Path, names: list[str], environ: Mapping[str, str] | None = None
    ):
        self.secrets_dir = secrets_dir
        self.names = list(dict.fromkeys([*ENV_NAMES, *names]))
        self.environ = dict(os.environ if environ is None else environ)
        self._credentials: dict[str, Credential] = {}
        self._refresh_locks: dict[str, asyncio.Lock] = {}
        self.load()

    def load(self) -> None:
        found: dict[str, Credential] = {}
        dir_warning = None
        if self.secrets_dir.is_dir() and self.secrets_dir.stat().st_mode & 0o077:
            dir_warning = f"{self.secrets_dir} is open to other users: chmod 700 {self.secrets_dir}"
        for name in self.names:
            env = next((e for e in env_names(name) if self.environ.get(e, "").strip()), None)
            if env:
                found[name] = Credential(name, self.environ[env].strip(), f"env:{env}")
                continue
            path = self.secrets_dir / name
            if not path.is_file():
                continue
            warning = dir_warning
            if path.stat().st_mode & 0o077:
                warning = f"{path} is readable by other users: chmod 600 {path}"
            try:
                value, oauth = _parse_secret(name, path.read_text())
            except (ValueError, OSError) as exc:
                log.warning("ignoring secret %s: %s", path, exc)
                continue
            if value:
                found[name] = Credential(name, value, f"file:{path}", oauth, warning)
        for credential in found.values():
            if credential.warning:
                log.warning("%s", credential.warning)
        self._credentials = found

    def get(self, name: str) -> Credential | None:
        return self._credentials.get(name)

    def secret_values(self) -> list[str]:
        """Every real secret the proxy holds (access and refresh tokens), so that none is
        ever handed back to a session."""
        values = []
        for cred in self._credentials.values():
            values.append(cred.value)
            if cred.oauth and cred.oauth.refresh_token:
                values.append(cred.oauth.refresh_token)
        return values

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.names:
            cred = self._credentials.get(name)
            rows.append(
                {
                    "name": name,
                    "source": cred.source if cred else None,
                    "masked": mask(cred.value) if cred else None,
                    "refreshable": bool(cred and cred.oauth),
                    "warning": cred.warning if cred else None,
                    "env": list(env_names(name)),
                }
            )
        return rows

    def set(self, name: str, value: str) -> None:
        """Store a secret file (0600) and use it from now on."""
        if name not in self.names:
            raise InvalidInput(f"unknown credential {name!r}: one of {', '.join(self.names)}")
        value = value.strip()
        if not value:
            raise InvalidInput("the credential is empty (it is read from standard input)")
        try:
            _parse_secret(name, value)
        except ValueError as exc:
            raise InvalidInput(f"invalid credential for {name}: {exc}") from None
        env = next((e for e in env_names(name) if self.environ.get(e, "").strip()), None)
        self._write(self.secrets_dir / name, value + "\n")
        self.load()
        if env:
            raise InvalidInput(
                f"saved {self.secrets_dir / name}, but ${env} in the daemon's environment "
                "takes precedence: unset it and restart the daemon (`clauderon daemon stop`)"
            )

    def _write(self, path: Path, text: str) -> None:
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        tmp.replace(path)

    async def value(self, name: str, post: PostJSON) -> str | None:
        """The credential's current value, refreshed first when it has expired."""
        cred = self._credentials.get(name)
        if cred is None:
            return None
        if cred.expired:
            await self.refresh(name, post)
        return self._credentials[name].value

    def mark_rejected(self, name: str) -> None:
        """The upstream said 401: refresh before the next use, if it can be refreshed."""
        cred = self._credentials.get(name)
        if cred and cred.oauth:
            cred.oauth.expires_at = 0

    async def refresh(self, name: str, post: PostJSON) -> None:
        lock = self._refresh_locks.setdefault(name, asyncio.Lock())
        async with lock:  # single flight: the others wait and use the new token
            cred = self._credentials.get(name)
            if cred is None or cred.oauth is None or not cred.expired:
                return
            oauth = cred.oauth
            log.info("refreshing OAuth credential %s", name)
            body = {"grant_type": "refresh_token", "refresh_token": oauth.refresh_token}
            if oauth.client_id:
                body["client_id"] = oauth.client_id
            answer = await post(oauth.token_url, body)
            access = answer.get("access_token")
            if not isinstance(access, str) or not access:
                raise RuntimeError(f"the token endpoint gave no access_token for {name}")
            oauth.refresh_token = answer.get("refresh_token") or oauth.refresh_token
            expires_in = answer.get("expires_in")
            oauth.expires_at = time.time() + float(expires_in) if expires_in else None
            cred.value = access
            if cred.source.startswith("file:"):
                self._write(
                    Path(cred.source[5:]),
                    json.dumps(
                        {
                            "access_token": access,
                            "refresh_token": oauth.refresh_token,
                            "expires_at": oauth.expires_at,
                            "token_url": oauth.token_url,
                            "client_id": oauth.client_id,
                        }
                    )
                    + "\n",
                )
