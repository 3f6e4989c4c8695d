"""The session record and the requests that change it.

The record is the single source of truth for what the user asked for: refresh,
restart, unarchive and reconcile rebuild the container from it, so nothing the user
chose is ever dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

DEFAULT_IMAGE = "clauderon-base:bookworm"
# What a container holds where a credential would go; the proxy swaps in the real one.
CREDENTIAL_PLACEHOLDER = "clauderon-proxy-placeholder"


class SessionStatus(StrEnum):
    CREATING = "creating"
    RUNNING = "running"  # the container should be running
    STOPPED = "stopped"  # stopped by the user; worktree and container kept
    ARCHIVED = "archived"  # container removed, worktree and branch kept
    FAILED = "failed"
    DELETING = "deleting"


class AgentKind(StrEnum):
    CLAUDE = "claude"
    CODEX = "codex"


class BackendKind(StrEnum):
    DOCKER = "docker"


class Egress(StrEnum):
    ALLOWLIST = "allowlist"  # model APIs, GitHub, package registries (+ config.toml)
    OPEN = "open"  # any host (still through the proxy, still audited)
    OFF = "off"  # the model API only


class AccessMode(StrEnum):
    READ_WRITE = "read-write"
    READ_ONLY = "read-only"


class AgentStatus(StrEnum):
    WORKING = "working"
    WAITING_APPROVAL = "waiting_approval"  # a permission prompt is open
    WAITING_INPUT = "waiting_input"  # the turn finished: the user's move
    IDLE = "idle"  # waiting for a long while
    EXITED = "exited"
    ERROR = "error"
    UNKNOWN = "unknown"


class PullPolicy(StrEnum):
    ALWAYS = "always"
    IF_NOT_PRESENT = "if-not-present"
    NEVER = "never"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Session(BaseModel):
    id: str
    name: str
    status: SessionStatus
    backend: str = BackendKind.DOCKER.value  # a kind of the backends registry (backends/)
    agent: AgentKind = AgentKind.CLAUDE
    # Version of the agent clauderon provides when the image has none.
    agent_version: str | None = None
    model: str | None = None
    prompt: str
    print_mode: bool = False
    ask_permissions: bool = False
    image: str = DEFAULT_IMAGE
    pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    cpu_limit: float | None = None
    memory_limit: int | None = None  # bytes
    env: dict[str, str] = Field(default_factory=dict)
    egress: Egress = Egress.ALLOWLIST
    access_mode: AccessMode = AccessMode.READ_WRITE
    # The session's proxy credential: how the proxy knows which session is calling.
    proxy_token: str = ""
    # Carried by the agent's status reports (hooks), which are refused without it.
    hook_token: str = ""
    agent_status: AgentStatus = AgentStatus.UNKNOWN  # as the agent last reported it
    agent_status_at: datetime | None = None
    # Why the agent's last model call failed (a 401/403 upstream, egress denied), as the
    # proxy saw it; cleared by the next call that succeeds.
    model_error: str | None = None
    # Recovery: how often reconcile tried to recreate a missing container, and when.
    reconcile_attempts: int = 0
    last_reconcile_at: datetime | None = None
    # A delete got past saving the work (its container is gone): what is left is removal,
    # and a daemon that finishes it must not save the half-removed worktree again.
    removing_files: bool = False
    repo: str  # root of the main repository's work tree
    subdirectory: str = ""  # where --repo pointed, relative to the root
    worktree: str
    branch: str
    base_branch: str | None = None
    base_commit: str = ""
    git_common_dir: str = ""  # the main repository's git dir
    git_dir: str = ""  # this worktree's own git dir (<common>/worktrees/<id>)
    # Where `merge` lands the work by default: --base-branch when it names a branch, else
    # the branch checked out in the user's repository at creation (None: detached).
    base_ref: str | None = None
    # Review and land (review.py): the last merge, and the pull request opened.
    merged_into: str | None = None
    merged_commit: str | None = None  # the tip of merged_into the merge made
    merged_tip: str | None = None  # the session's tip that was merged
    merged_at: datetime | None = None
    pr_url: str | None = None
    container: str | None = None  # container name while one exists
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def workdir(self) -> str:
        return "/workspace/" + self.subdirectory if self.subdirectory else "/workspace"


class SessionView(Session):
    """A session as the front ends see it: the record plus what the backend reports."""

    proxy_token: str = Field(default="", exclude=True)  # the daemon's business only
    hook_token: str = Field(default="", exclude=True)
    # running / exited / created / restarting / paused / missing / none (no container)
    container_state: str = "none"
    exit_code: int | None = None
    state: str = ""  # one word for humans: the status, or what the container says instead
    warnings: list[str] = Field(default_factory=list)  # things the user should know now
    # Why `agent_status` is `error` when the agent itself did not say so (it cannot reach
    # its model, or its container exited badly).
    agent_status_reason: str | None = None
    # Branches the agent created or moved inside, brought back as
    # refs/clauderon/<name>/branches/<branch>.
    agent_branches: list[str] = Field(default_factory=list)
    # Its work as of the last look (cached: `list` runs no git): commits ahead of / behind
    # its base branch, files changed since base_commit (commits and uncommitted), and
    # whether the worktree has uncommitted changes. None until first computed.
    ahead: int | None = None
    behind: int | None = None
    changed_files: int | None = None
    dirty: bool | None = None
    merged: bool = False  # merged_tip is the branch's tip: nothing new since the merge


class CreateSessionRequest(BaseModel):
    repo: str
    prompt: str
    backend: str = BackendKind.DOCKER.value
    agent: str = AgentKind.CLAUDE.value
    name: str | None = None
    image: str | None = None
    pull_policy: str = PullPolicy.IF_NOT_PRESENT.value
    cpu_limit: str | None = None
    memory_limit: str | None = None
    model: str | None = None
    base_branch: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    print_mode: bool = False
    ask_permissions: bool = False
    agent_version: str | None = None
    egress: str = Egress.ALLOWLIST.value
    access_mode: str = AccessMode.READ_WRITE.value
    # Chosen by the client so it can cancel a creation it started (Ctrl-C).
    request_id: str | None = None


class DeleteResult(BaseModel):
    name: str
    saved_ref: str | None = None
    restore_hint: str | None = None
    # Branches the agent made inside, kept under refs/clauderon/<name>/branches/.
    agent_branches: list[str] = Field(default_factory=list)


class CommitRequest(BaseModel):
    message: str | None = None


class MergeRequest(BaseModel):
    into: str | None = None
    mode: str = "merge"  # merge | squash | rebase
    message: str | None = None


class PushRequest(BaseModel):
    remote: str = "origin"
    # The CLI's SSH agent, so `git push` over SSH works as it would in the user's shell.
    ssh_auth_sock: str | None = None


class PullRequestRequest(BaseModel):
    remote: str = "origin"
    title: str | None = None
    body: str | None = None
    draft: bool = False
    base: str | None = None
    ssh_auth_sock: str | None = None
