"""Pull requests through GitHub's REST API (`POST /repos/{owner}/{repo}/pulls`).

The token comes from clauderon's credential store (the daemon's `GITHUB_TOKEN`/`GH_TOKEN`
or `secrets/github_token`); it never reaches a container. `[github] api_url` in
config.toml points elsewhere (GitHub Enterprise, tests).
"""

from __future__ import annotations

from typing import Any

import httpx

from .errors import ClauderonError

DEFAULT_API = "https://api.github.com"
TIMEOUT = 30.0


class GitHubError(ClauderonError):
    code = "github_error"
    status = 502


def api_url_for(host: str, configured: str | None) -> str:
    """The API base: the configured one, else github.com's, else GitHub Enterprise's
    convention (https://<host>/api/v3)."""
    if configured:
        return configured.rstrip("/")
    if host in ("github.com", "www.github.com", "ssh.github.com"):
        return DEFAULT_API
    return f"https://{host}/api/v3"


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    text = str(data.get("message", "")) if isinstance(data, dict) else ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        details = [
            str(e.get("message") or e.get("code")) if isinstance(e, dict) else str(e)
            for e in errors[:3]
        ]
        text = "; ".join([text, *details]) if text else "; ".join(details)
    return text.replace("\n", " ")[:300] or response.reason_phrase


async def create_pull(
    api_url: str,
    token: str,
    owner: str,
    repo: str,
    *,
    head: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> tuple[str, bool]:
    """Open a pull request; (its URL, whether it already existed)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "clauderon",
    }
    payload: dict[str, Any] = {
        "title": title,
        "head": head,
        "base": base,
        "body": body,
        "draft": draft,
    }
    where = f"{owner}/{repo}"
    try:
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=TIMEOUT) as http:
            response = await http.post(f"/repos/{owner}/{repo}/pulls", json=payload)
            if response.status_code == 201:
                return str(response.json()["html_url"]), False
            if response.status_code == 422 and "already exists" in response.text:
                found = await http.get(
                    f"/repos/{owner}/{repo}/pulls",
                    params={"head": f"{owner}:{head}", "base": base, "state": "open"},
                )
                if found.status_code == 200 and isinstance(found.json(), list) and found.json():
                    return str(found.json()[0]["html_url"]), True
    except httpx.HTTPError as exc:
        raise GitHubError(f"cannot reach the GitHub API at {api_url}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GitHubError(f"unexpected answer from {api_url}: {exc}") from None
    if response.status_code == 401:
        raise GitHubError(
            f"GitHub refused the token (401: {_message(response)}); set a valid one with "
            "`clauderon config set-credential github_token`"
        )
    if response.status_code == 404:
        raise GitHubError(
            f"repository {where} not found at {api_url}, or the token cannot open pull "
            "requests there (404)"
        )
    raise GitHubError(
        f"GitHub did not open the pull request on {where} "
        f"({response.status_code}: {_message(response)})"
    )
