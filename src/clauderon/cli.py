"""The command-line front end: a thin client of the daemon's API.

It parses arguments, calls the API and prints. Every decision about sessions is made by
the daemon's SessionManager; the CLI only shows the result, or the error on one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import click
import typer

from . import __version__
from .client import Client
from .display import printable
from .errors import ClauderonError

app = typer.Typer(
    name="clauderon",
    help="Run coding agents (Claude Code, Codex) in isolated, parallel Docker sessions.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
daemon_app = typer.Typer(
    help="Run or manage the daemon (started on demand by every command).",
    invoke_without_command=True,
)
app.add_typer(daemon_app, name="daemon")
config_app = typer.Typer(help="The credentials the proxy injects.", no_args_is_help=True)
app.add_typer(config_app, name="config")
token_app = typer.Typer(help="API tokens for the daemon's TCP listener.", no_args_is_help=True)
app.add_typer(token_app, name="token")

_client: Client | None = None


def client() -> Client:
    global _client
    if _client is None:
        _client = Client()
    return _client


def echo(message: str = "") -> None:
    """Print a line; whatever a session put in it cannot drive the terminal."""
    typer.echo(printable(message))


def err(message: str) -> None:
    typer.echo(printable(message), err=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))  # JSON escapes control characters


def complete_session_name(incomplete: str) -> list[str]:
    """Session names for shell completion: asks a running daemon (never starts one), and
    gives up quickly, so a tab press never hangs."""
    try:
        sessions = Client(autostart=False).request(
            "GET", "/api/sessions", params={"archived": True}, timeout=2.0
        )
    except (ClauderonError, OSError):
        return []
    return sorted(s["name"] for s in sessions if s["name"].startswith(incomplete))


SESSION_NAME = typer.Argument(
    ..., help="The session's name.", autocompletion=complete_session_name, show_default=False
)


def _age(timestamp: str) -> str:
    then = datetime.fromisoformat(timestamp)
    seconds = int((datetime.now(UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _run_with_progress(method: str, path: str, **kwargs: Any) -> Any:
    """Call a long operation, showing its progress on stderr; return its result."""
    if not sys.stderr.isatty():  # scripts get the result only (and skip importing rich)
        result = None
        for event in client().stream(method, path, **kwargs):
            if event["type"] == "result":
                result = event["result"]
        return result
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

    console = Console(stderr=True)
    result = None
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("Starting", total=None)
        for event in client().stream(method, path, **kwargs):
            if event["type"] == "progress":
                total = event.get("total")
                is_bytes = total is not None and total > 100
                bar.update(
                    task,
                    description=event["message"],
                    completed=event.get("current") if is_bytes else None,
                    total=total if is_bytes else None,
                )
            elif event["type"] == "result":
                result = event["result"]
    return result


# --- create ---------------------------------------------------------------------------


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClauderonError(f"invalid --env {pair!r}: use KEY=VALUE")
        env[key] = value
    return env


@app.command()
def create(
    repo: str = typer.Option(..., "--repo", "-r", help="Repository (or a subdirectory of one)."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="What the agent should do."),
    backend: str = typer.Option("docker", "--backend", "-b", help="Where the agent runs."),
    agent: str = typer.Option("claude", "--agent", "-a", help="claude or codex."),
    name: str | None = typer.Option(None, "--name", help="Session name (default: from prompt)."),
    image: str | None = typer.Option(None, "--image", help="Container image."),
    cpu_limit: str | None = typer.Option(None, "--cpu-limit", help="CPUs, e.g. 2, 0.5, 500m."),
    memory_limit: str | None = typer.Option(None, "--memory-limit", help="e.g. 512m, 8g."),
    pull_policy: str = typer.Option(
        "if-not-present", "--pull-policy", help="always | if-not-present | never."
    ),
    model: str | None = typer.Option(None, "--model", help="Model name passed to the agent."),
    base_branch: str | None = typer.Option(
        None, "--base-branch", help="Start the branch here (default: HEAD)."
    ),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE for the agent (repeat)."),
    print_mode: bool = typer.Option(False, "--print", help="One non-interactive run."),
    ask_permissions: bool = typer.Option(
        False, "--ask-permissions", help="Keep the agent's permission prompts."
    ),
    agent_version: str | None = typer.Option(
        None, "--agent-version", help="Agent version to provide if the image has none."
    ),
    egress: str = typer.Option(
        "allowlist", "--egress", help="allowlist | open | off (model API only)."
    ),
    access_mode: str = typer.Option(
        "read-write", "--access-mode", help="read-write | read-only (writes refused)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the session as JSON."),
) -> None:
    """Create a session: a worktree on a new branch and a container running the agent."""
    request_id = str(uuid.uuid4())
    body = {
        "repo": os.path.abspath(os.path.expanduser(repo)),
        "prompt": prompt,
        "backend": backend,
        "agent": agent,
        "name": name,
        "image": image,
        "cpu_limit": cpu_limit,
        "memory_limit": memory_limit,
        "pull_policy": pull_policy,
        "model": model,
        "base_branch": base_branch,
        "env": _parse_env(env),
        "print_mode": print_mode,
        "ask_permissions": ask_permissions,
        "agent_version": agent_version,
        "egress": egress,
        "access_mode": access_mode,
        "request_id": request_id,
    }
    try:
        session = _run_with_progress("POST", "/api/sessions", json=body)
    except KeyboardInterrupt:
        err("Interrupted: cancelling the creation…")
        cancelled = client().request(
            "POST", "/api/sessions/cancel", json={"request_id": request_id}
        )
        err(
            "Cancelled; nothing was left behind."
            if cancelled["cancelled"]
            else "The creation had already ended; see `clauderon list`."
        )
        raise typer.Exit(130) from None
    for warning in session.get("warnings", []):
        err(f"warning: {warning}")
    if as_json:
        print_json(session)
        return
    echo(f"Session {session['name']} is running ({session['agent']} in {session['container']}).")
    echo(f"  worktree: {session['worktree']} (branch {session['branch']})")
    if session["print_mode"]:
        echo(f"  output:   clauderon logs {session['name']} -f")
    else:
        echo(f"  attach:   clauderon attach {session['name']}")


# --- reading --------------------------------------------------------------------------


@app.command("list")
def list_sessions(
    archived: bool = typer.Option(False, "--archived", help="Include archived sessions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List sessions."""
    sessions = client().request("GET", "/api/sessions", params={"archived": archived})
    if as_json:
        print_json(sessions)
        return
    if not sessions:
        echo("No sessions. Start one with: clauderon create --repo PATH --prompt TEXT")
        return
    rows = [("NAME", "STATE", "AGENT", "STATUS", "WORK", "IMAGE", "AGE", "REPO")]
    problems = [(s["name"], s["error"]) for s in sessions if s.get("error")]
    problems += [(s["name"], f"warning: {w}") for s in sessions for w in s.get("warnings", [])]
    for s in sessions:
        state = s["state"] + (f" ({s['exit_code']})" if s.get("exit_code") is not None else "")
        repo = s["repo"] + (f"/{s['subdirectory']}" if s["subdirectory"] else "")
        rows.append(
            (
                s["name"],
                state,
                s["agent"],
                s["agent_status"].replace("_", " "),
                _work(s),
                s["image"],
                _age(s["created_at"]),
                repo,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for name, error in problems:
        err(f"{name}: {error}")
    for row in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])


def _work(s: dict[str, Any]) -> str:
    """`+2 -1 5f dirty`: commits ahead/behind the base branch, files changed, uncommitted
    changes; `merged` once landed (from the daemon's cache: no git runs for `list`)."""
    parts = []
    if s.get("ahead") is not None:
        parts.append(f"+{s['ahead']} -{s['behind']}")
    if s.get("changed_files") is not None:
        parts.append(f"{s['changed_files']}f")
    if s.get("dirty"):
        parts.append("dirty")
    if s.get("merged"):
        parts.append("merged")
    if s.get("pr_url"):
        parts.append("PR")
    return " ".join(parts) or "-"


@app.command()
def attach(name: str = SESSION_NAME) -> None:
    """Attach this terminal to a session's agent (detaching leaves it running).

    The agent's terminal output reaches yours as it is (raw, escape sequences included):
    that is what attaching is."""
    from .terminal import DETACH_HUMAN, console_path, run

    client().request("GET", f"/api/sessions/{name}/attach")  # checks it, starts it if stopped
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        raise ClauderonError(
            "attach needs a terminal (use `clauderon screen` or `clauderon send` from scripts)"
        )
    err(f"Attached to {name}. Detach with {DETACH_HUMAN}: the agent keeps running.")
    with client().websocket(console_path(name)) as ws:
        outcome = run(ws)
    typer.echo(f"\r\nclauderon: {printable(outcome)}.", err=True)  # the terminal is raw


@app.command()
def logs(
    name: str = SESSION_NAME,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output."),
    tail: int | None = typer.Option(None, "--tail", help="Only the last N lines."),
) -> None:
    """Print the output of a session's container, raw: escape sequences included, as the
    agent's terminal wrote them (pipe it through `cat -v` to see them instead)."""
    params: dict[str, Any] = {"follow": follow}
    if tail is not None:
        params["tail"] = tail
    out = sys.stdout.buffer
    try:
        for chunk in client().stream_bytes("GET", f"/api/sessions/{name}/logs", params=params):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


# --- lifecycle ------------------------------------------------------------------------


@app.command()
def stop(name: str = SESSION_NAME) -> None:
    """Stop a session's container (the worktree and the conversation are kept)."""
    client().request("POST", f"/api/sessions/{name}/stop")
    echo(f"Stopped {name}. Start it again with: clauderon start {name}")


@app.command()
def start(name: str = SESSION_NAME) -> None:
    """Start a stopped session; its agent continues the same conversation."""
    _run_with_progress("POST", f"/api/sessions/{name}/start")
    echo(f"Started {name}.")


@app.command()
def archive(name: str = SESSION_NAME) -> None:
    """Remove a session's container but keep its worktree and branch."""
    client().request("POST", f"/api/sessions/{name}/archive")
    echo(
        f"Archived {name}: container removed, worktree kept. "
        f"Bring it back with: clauderon unarchive {name}"
    )


@app.command()
def unarchive(name: str = SESSION_NAME) -> None:
    """Recreate an archived session's container from its record."""
    _run_with_progress("POST", f"/api/sessions/{name}/unarchive")
    echo(f"Unarchived {name}: it is running again.")


@app.command()
def refresh(name: str = SESSION_NAME) -> None:
    """Pull the session's image and recreate its container (everything else is kept)."""
    result = _run_with_progress("POST", f"/api/sessions/{name}/refresh")
    if result and result.get("warning"):
        err(
            f"warning: could not pull {result['session']['image']} ({result['warning']}); "
            "recreated from the local image"
        )
    echo(f"Refreshed {name}.")


@app.command()
def delete(
    name: str = SESSION_NAME,
    force: bool = typer.Option(
        False, "--force", "-f", help="Delete even with unsaved work (it is saved to a ref first)."
    ),
) -> None:
    """Delete a session: container, worktree and branch. Refuses to lose work."""
    result = client().request("DELETE", f"/api/sessions/{name}", params={"force": force})
    echo(f"Deleted {name}.")
    if result.get("saved_ref"):
        echo(f"Its work was saved as {result['saved_ref']}. Get it back with:")
        echo(f"  {result['restore_hint']}")
    for branch in result.get("agent_branches", []):
        echo(f"The agent's branch {branch} is kept as refs/clauderon/{name}/branches/{branch}.")


@app.command()
def send(name: str = SESSION_NAME, text: str = typer.Argument(..., help="The message.")) -> None:
    """Type a message into the running agent and press Enter, without attaching."""
    client().request("POST", f"/api/sessions/{name}/send", json={"text": text})
    echo(f"Sent to {name}.")


@app.command()
def screen(name: str = SESSION_NAME) -> None:
    """Print what the agent's terminal shows now."""
    echo(client().request("GET", f"/api/sessions/{name}/screen")["text"].rstrip())


# --- review and land ------------------------------------------------------------------


def _pager() -> Any:
    """$PAGER (else `less -R`) reading from a pipe, like git's; None when there is none."""
    import shlex
    import subprocess

    command = os.environ.get("PAGER") or "less"
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")  # quit if one screen, keep colors, no init
    try:
        argv = shlex.split(command)
        if argv and os.path.basename(argv[0]) == "less" and "-R" not in argv:
            argv.append("-R")
        return subprocess.Popen(argv, stdin=subprocess.PIPE, env=env) if argv else None
    except (OSError, ValueError):
        return None


@app.command()
def diff(
    name: str,
    stat: bool = typer.Option(False, "--stat", help="Only a summary per file."),
    name_only: bool = typer.Option(False, "--name-only", help="Only the changed files' names."),
    base: str | None = typer.Option(
        None, "--base", help="Compare with this revision (default: where the session started)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="The changed files as JSON (path, added, deleted, binary)."
    ),
) -> None:
    """Everything a session changed: its commits, uncommitted and untracked files."""
    if as_json:
        print_json(client().request("GET", f"/api/sessions/{name}/changes", params={"base": base}))
        return
    tty = sys.stdout.isatty()
    params = {"stat": stat, "name_only": name_only, "base": base, "color": False}
    chunks = client().stream_bytes("GET", f"/api/sessions/{name}/diff", params=params)
    if tty:  # the agent's bytes never reach the terminal as control sequences
        from .display import terminal_diff

        chunks = terminal_diff(chunks, color="NO_COLOR" not in os.environ)
    first = next(chunks, b"")  # an error is printed before any pager starts
    pager = _pager() if tty else None
    out = pager.stdin if pager is not None else sys.stdout.buffer
    try:
        out.write(first)
        for chunk in chunks:
            out.write(chunk)
        out.flush()
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the pager was quit early
    finally:
        if pager is not None:
            with contextlib.suppress(BrokenPipeError):
                pager.stdin.close()
            pager.wait()


@app.command()
def commit(
    name: str,
    message: str | None = typer.Option(
        None, "--message", "-m", help="The message (default: from the prompt and the files)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Commit everything in a session's worktree on its branch (from the host)."""
    result = client().request("POST", f"/api/sessions/{name}/commit", json={"message": message})
    if as_json:
        print_json(result)
        return
    files = result["files"]
    echo(f"Committed {len(files)} file(s) on {result['branch']} as {result['commit'][:12]}.")


@app.command()
def merge(
    name: str,
    into: str | None = typer.Option(
        None, "--into", help="The branch to land on (default: the one it was created from)."
    ),
    squash: bool = typer.Option(False, "--squash", help="One commit with all the changes."),
    rebase: bool = typer.Option(False, "--rebase", help="Replay each commit on top."),
    merge_commit: bool = typer.Option(
        False, "--merge", help="A merge commit (fast-forward if possible; the default)."
    ),
    message: str | None = typer.Option(None, "--message", "-m", help="The commit message."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Land a session's commits on its base branch in your repository."""
    if squash + rebase + merge_commit > 1:
        raise ClauderonError("choose one of --squash, --rebase and --merge")
    mode = "squash" if squash else "rebase" if rebase else "merge"
    body = {"into": into, "mode": mode, "message": message}
    result = client().request("POST", f"/api/sessions/{name}/merge", json=body)
    if as_json:
        print_json(result)
        return
    if result["already_merged"]:
        echo(f"{result['into']} already has every commit of {name}; marked merged.")
        return
    how = "fast-forward" if result["fast_forward"] and mode != "squash" else mode
    echo(f"Merged {name} into {result['into']} ({how}): now {result['commit'][:12]}.")
    if result["checkout_updated"]:
        echo(f"  updated the checkout at {result['checkout_updated']}")
    echo(f"  delete the session when done: clauderon delete {name}")


@app.command()
def push(
    name: str,
    remote: str = typer.Option("origin", "--remote", help="The remote to push to."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Push a session's branch with your own git setup (from the host, never the container)."""
    body = {"remote": remote, "ssh_auth_sock": os.environ.get("SSH_AUTH_SOCK")}
    result = client().request("POST", f"/api/sessions/{name}/push", json=body)
    if as_json:
        print_json(result)
        return
    echo(f"Pushed {result['branch']} to {remote} ({result['status'] or 'done'}).")


@app.command()
def pr(
    name: str,
    title: str | None = typer.Option(None, "--title", help="Default: from the prompt."),
    body: str | None = typer.Option(None, "--body", help="Default: the prompt and commits."),
    draft: bool = typer.Option(False, "--draft", help="Open it as a draft."),
    base: str | None = typer.Option(
        None, "--base", help="The branch to merge into (default: the session's base branch)."
    ),
    remote: str = typer.Option("origin", "--remote", help="The GitHub remote."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Push a session's branch if needed and open a GitHub pull request."""
    request = {
        "title": title,
        "body": body,
        "draft": draft,
        "base": base,
        "remote": remote,
        "ssh_auth_sock": os.environ.get("SSH_AUTH_SOCK"),
    }
    result = client().request("POST", f"/api/sessions/{name}/pr", json=request)
    if as_json:
        print_json(result)
        return
    if result["existing"]:
        err(f"{name} already has a pull request:")
    echo(result["url"])


@token_app.command("create")
def token_create(name: str = typer.Option("default", "--name", help="A label for it.")) -> None:
    """Make an API token for `clauderon daemon --listen` (shown once)."""
    token = client().request("POST", "/api/tokens", json={"name": name})
    echo(token["token"])
    err(
        f"Token {token['id']} ({name}) created; it is shown only now. Send it as "
        "`Authorization: Bearer <token>`."
    )


@token_app.command("list")
def token_list() -> None:
    """The API tokens (ids and names; the tokens themselves are not kept)."""
    for token in client().request("GET", "/api/tokens"):
        echo(f"{token['id']}  {token['name']:<20} {token['created_at'][:19]}")


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke an API token."""
    client().request("DELETE", f"/api/tokens/{token_id}")
    echo(f"Revoked {token_id}.")


@app.command("set-access-mode")
def set_access_mode(
    name: str = SESSION_NAME, mode: str = typer.Argument(..., help="read-write | read-only")
) -> None:
    """Change what a running session may write; applies to its next request."""
    client().request("POST", f"/api/sessions/{name}/access-mode", json={"access_mode": mode})
    echo(f"{name} is now {mode}.")


# `allow` and `disallow` take the same scope.
SESSION_SCOPE = typer.Option(
    None,
    "--session",
    "-s",
    help="Only this session (default: every session).",
    autocompletion=complete_session_name,
)


def _allow_change(host: str | None, session: str | None, allow: bool) -> None:
    if not host:
        raise ClauderonError("name a host (e.g. example.com, *.example.com or host:8443)")
    result = client().request(
        "POST", "/api/allow" if allow else "/api/disallow", json={"host": host, "session": session}
    )
    echo(result["message"])


@app.command()
def allow(
    host: str | None = typer.Argument(None, help="host, *.domain or host:port", show_default=False),
    session: str | None = SESSION_SCOPE,
    show: bool = typer.Option(False, "--list", help="Show what decides egress."),
    as_json: bool = typer.Option(False, "--json", help="With --list: print JSON."),
) -> None:
    """Let sessions reach a host, from their next request (no restart)."""
    if not show:
        _allow_change(host, session, True)
        return
    rows = client().request("GET", "/api/allow", params={"session": session})
    if as_json:
        print_json(rows)
        return
    echo(f"{'RULE':<6} {'HOST':<40} {'FOR':<28} FROM")
    for row in rows:
        scope = f"session {row['session']}" if row["session"] else "all sessions"
        source = {"live": "clauderon allow", "config": "config.toml", "default": "default"}
        echo(f"{row['rule']:<6} {row['host']:<40} {scope:<28} {source[row['source']]}")


@app.command()
def disallow(
    host: str | None = typer.Argument(None, help="host, *.domain or host:port", show_default=False),
    session: str | None = SESSION_SCOPE,
) -> None:
    """Refuse a host to sessions from their next request (takes back an `allow`)."""
    _allow_change(host, session, False)


@app.command()
def audit(
    name: str | None = typer.Argument(
        None, help="Only this session's requests.", autocompletion=complete_session_name
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new requests."),
    limit: int = typer.Option(50, "--limit", "-n", help="How many past requests to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """Show the proxy's audit log: every request a session made, and what was decided."""
    params: dict[str, Any] = {"limit": limit}
    if name:
        client().request("GET", f"/api/sessions/{name}")  # a clear error for unknown names
        params["session"] = name

    def show(entry: dict[str, Any]) -> None:
        if as_json:
            echo(json.dumps(entry))
            return
        injected = f" +{entry['credential']}" if entry.get("credential") else ""
        refs = f" [{' '.join(entry['refs'])}]" if entry.get("refs") else ""  # a git push
        echo(
            f"{entry['ts'][:19]}  {entry.get('session') or '-':<24} {entry['status']} "
            f"{entry['decision']:<18} {entry['method']} {entry['host']}"
            f"{entry.get('path', '')}{injected}{refs}"
        )

    if not follow:
        for entry in client().request("GET", "/api/audit", params=params):
            show(entry)
        return
    params["follow"] = True
    try:
        buffer = b""
        for chunk in client().stream_bytes("GET", "/api/audit", params=params):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    show(json.loads(line))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@config_app.command("credentials")
def config_credentials(as_json: bool = typer.Option(False, "--json")) -> None:
    """Each credential: where it comes from and a masked value (never the secret)."""
    rows = client().request("GET", "/api/credentials")
    if as_json:
        print_json(rows)
        return
    for row in rows:
        if row["source"]:
            extra = " (refreshed by the proxy)" if row["refreshable"] else ""
            echo(f"{row['name']:<20} {row['masked']:<12} {row['source']}{extra}")
        else:
            echo(
                f"{row['name']:<20} {'not set':<12} "
                f"(${' or $'.join(row['env'])}, or clauderon config set-credential "
                f"{row['name']})"
            )
        if row["warning"]:
            err(f"warning: {row['warning']}")


@config_app.command("set-credential")
def config_set_credential(name: str) -> None:
    """Store a credential read from standard input in ~/.clauderon/secrets/NAME (0600)."""
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"{name}: ")
    else:
        value = sys.stdin.read()
    client().request("PUT", f"/api/credentials/{name}", json={"value": value})
    echo(f"Stored {name}; the proxy uses it from the next request.")


# --- maintenance ----------------------------------------------------------------------


@app.command("clean-cache")
def clean_cache(
    force: bool = typer.Option(False, "--force", "-f", help="Remove the cache volumes."),
) -> None:
    """Show the shared cache volumes (dry run), or remove them with --force."""
    from .limits import format_bytes

    if not force:
        for volume in client().request("GET", "/api/cache"):
            if not volume["exists"]:
                echo(f"{volume['name']}: not created yet")
                continue
            size = format_bytes(volume["size"]) if volume["size"] is not None else "size unknown"
            users = ", ".join(volume["sessions"]) or "no sessions"
            echo(f"{volume['name']}: {size}, used by {users}")
        echo("Nothing removed (dry run). Remove with: clauderon clean-cache --force")
        return
    result = client().request("DELETE", "/api/cache")
    for name in result["removed"]:
        echo(f"Removed {name}")
    for kept in result["kept"]:
        echo(f"Kept {kept['name']}: {kept['reason']}")
    if not result["removed"] and not result["kept"]:
        echo("No cache volumes to remove.")


@app.command()
def reconcile(
    remove_orphans: bool = typer.Option(
        False, "--remove-orphans", help="Remove clauderon containers no session owns."
    ),
) -> None:
    """Compare the store, the containers and the worktrees, and repair what is safe."""
    report = _run_with_progress("POST", "/api/reconcile", params={"remove_orphans": remove_orphans})
    _print_reconcile(report)
    orphans = [c for c in report["orphan_containers"] if c not in report["removed_orphans"]]
    if (
        orphans
        and sys.stdin.isatty()
        and typer.confirm(
            f"Remove {len(orphans)} container(s) that no session owns?", default=False
        )
    ):
        report = _run_with_progress("POST", "/api/reconcile", params={"remove_orphans": True})
        for name in report["removed_orphans"]:
            echo(f"Removed {name}")


def _print_reconcile(report: dict[str, Any]) -> None:
    lines = []
    for name in report["rolled_back"]:
        lines.append(f"Rolled back the unfinished creation of {name}")
    for name in report["recreated"]:
        lines.append(f"Recreated the missing container of {name}")
    for name in report.get("restarted", []):
        lines.append(f"Restarted the agent of {name}, which had stopped on its own")
    for name in report["adopted"]:
        lines.append(f"Took back the running container of {name}")
    for name in report["gave_up"]:
        lines.append(f"Gave up recreating the container of {name} (see `clauderon list`)")
    for failure in report["failed"]:
        lines.append(f"Could not recreate {failure['session']}: {failure['error']}")
    for name in report["missing_worktrees"]:
        lines.append(f"Worktree missing for {name} (delete it with `clauderon delete {name}`)")
    for name in report["orphan_containers"]:
        if name in report["removed_orphans"]:
            lines.append(f"Removed container {name}, which no session owns")
        else:
            lines.append(
                f"Container {name} belongs to no session "
                "(remove with `clauderon reconcile --remove-orphans`)"
            )
    for path in report["orphan_worktrees"]:
        lines.append(f"Directory {path} belongs to no session (left alone)")
    echo("\n".join(lines) if lines else "All sessions are in sync.")


@app.command()
def tui() -> None:
    """Open the terminal dashboard (also what `clauderon` alone does on a terminal)."""
    from .tui import run

    raise typer.Exit(run())


@app.command()
def doctor() -> None:
    """Check that everything clauderon needs is in place, and say how to fix what is not."""
    from .doctor import Check, run_checks

    try:
        checks = run_checks()
    except Exception as exc:  # never a traceback: say what could not run
        checks = [Check("doctor", False, f"could not run ({type(exc).__name__}: {exc})", "")]
    failed = 0
    for check in checks:
        mark = "ok  " if check.ok else ("warn" if check.warning else "FAIL")
        echo(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok:
            echo(f"       fix: {check.fix}")
            failed += 0 if check.warning else 1
    if failed:
        raise typer.Exit(1)


@app.command()
def web(
    listen: str = typer.Option(
        "127.0.0.1:3030", "--listen", help="Serve the web UI on HOST:PORT (loopback by default)."
    ),
    fetch_assets: bool = typer.Option(
        False, "--fetch-assets", help="Fetch xterm.js from the npm registry (pinned) first."
    ),
) -> None:
    """Serve the web UI from the daemon and print a one-time login link."""
    from .daemon.server import parse_listen
    from .web import FETCH_COMMAND, missing_assets

    host, port = parse_listen(listen)
    if fetch_assets:
        from .web.assets import FetchError, fetch

        try:
            fetch()
        except (FetchError, OSError) as exc:
            raise ClauderonError(f"web UI assets: {exc}") from None
        echo("Fetched the web UI's assets (xterm.js).")
    if missing_assets():
        raise ClauderonError(
            f"the web UI's assets (xterm.js) are missing or outdated: run `{FETCH_COMMAND}`"
        )
    c = client()
    answer = c.request("POST", "/api/web/listen", json={"host": host, "port": port})
    pid = c.request("GET", "/api/health")["pid"]
    if answer["started"]:
        echo(f"The daemon (pid {pid}) now also listens on {host}:{port} (until it stops).")
    else:
        echo(f"The daemon (pid {pid}) already listens on {host}:{port}.")
    login = c.request("POST", "/api/web/login")
    shown = _url_host(host)
    minutes = max(1, int(login["expires_in"]) // 60)
    echo(f"Open this link to log in (it works once, for {minutes} minutes):")
    echo(f"  http://{shown}:{port}/login?token={login['token']}")
    if host not in ("127.0.0.1", "::1", "localhost"):
        echo("Anyone who can reach that address needs the link or a token; use it on trusted")
        echo("networks only (the traffic is not encrypted).")


def _url_host(host: str) -> str:
    """The host part of a URL a browser can open for a listener on `host`."""
    import socket

    if host in ("0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


# --- daemon ---------------------------------------------------------------------------


@daemon_app.callback()
def daemon(
    ctx: typer.Context,
    listen: str | None = typer.Option(
        None,
        "--listen",
        help="Also serve the API on HOST:PORT (every request needs a token, loopback too).",
    ),
) -> None:
    """Run the daemon in the foreground (with no subcommand)."""
    if ctx.invoked_subcommand is None:
        from .daemon.server import run_daemon
        from .paths import Paths

        raise typer.Exit(run_daemon(Paths.from_env(), listen))


@daemon_app.command("status")
def daemon_status() -> None:
    """Say whether the daemon runs, and where."""
    health = Client(autostart=False).ping()
    if health is None:
        echo("The daemon is not running (commands start it on demand).")
        raise typer.Exit(3)
    echo(
        f"The daemon is running: pid {health['pid']}, version {health['version']}, "
        f"home {health['home']}"
    )


@daemon_app.command("stop")
def daemon_stop() -> None:
    """Stop the daemon (sessions keep running; it restarts on demand)."""
    import time

    c = Client(autostart=False)
    health = c.ping()
    if health is None:
        echo("The daemon is not running.")
        return
    c.request("POST", "/api/daemon/shutdown")
    for _ in range(300):  # until the process is gone, its proxy port free again
        try:
            os.kill(health["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    echo(f"Stopped the daemon (pid {health['pid']}).")


def version_callback(value: bool) -> None:
    if value:
        echo(f"clauderon {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", "-V", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    pass


def main() -> None:
    """Entry point: every error ends as one line on stderr and a non-zero exit."""
    if len(sys.argv) == 1 and sys.stdin.isatty() and sys.stdout.isatty():
        sys.argv.append("tui")  # `clauderon` alone on a terminal opens the dashboard
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        code = app(standalone_mode=False, prog_name="clauderon")
        sys.exit(code if isinstance(code, int) else 0)
    except ClauderonError as exc:
        err(f"clauderon: error: {exc.message}")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err("clauderon: aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err("clauderon: interrupted")
        sys.exit(130)
    except click.ClickException as exc:  # usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        code = getattr(exc, "exit_code", 1)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if code == 2 and ctx is not None else ""
        err(f"clauderon: error: {message}{hint}")
        sys.exit(code)
