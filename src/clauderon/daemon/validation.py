"""Checking a create request: everything that can be known without changing anything.

The option checks are pure functions; the name and repository checks read the store, the
home and the repository, and still change nothing.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import uuid
from pathlib import Path

from .. import git
from ..agents import Agent, get_agent
from ..container import RESERVED_ENV_PREFIX
from ..errors import Conflict, InvalidInput
from ..limits import parse_cpu_limit, parse_memory_limit
from ..models import (
    DEFAULT_IMAGE,
    AccessMode,
    CreateSessionRequest,
    Egress,
    PullPolicy,
    Session,
    SessionStatus,
)
from ..naming import generate_name, validate_name
from .proxycontrol import ProxyControl

log = logging.getLogger(__name__)

MAX_PROMPT_BYTES = 100_000  # an argv string is capped at 128 KiB by the kernel
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Validation(ProxyControl):
    """Part of SessionManager: the checks of a create request."""

    def _validate(self, req: CreateSessionRequest) -> tuple[Session, git.RepoInfo, Agent]:
        """Everything that can be checked without changing anything."""
        backend = self.backends.get(self.backends.check_kind(req.backend))
        agent = get_agent(req.agent)
        try:
            pull_policy = PullPolicy(req.pull_policy)
        except ValueError:
            raise InvalidInput(
                f"unknown pull policy {req.pull_policy!r}: use always, if-not-present or never"
            ) from None
        if not req.prompt.strip():
            raise InvalidInput("the prompt is empty: say what the agent should do (--prompt)")
        if "\x00" in req.prompt:
            raise InvalidInput("the prompt contains a NUL byte")
        if len(req.prompt.encode()) > MAX_PROMPT_BYTES:
            raise InvalidInput(f"the prompt is longer than {MAX_PROMPT_BYTES} bytes")
        for key, value in req.env.items():
            if not _ENV_KEY_RE.fullmatch(key):
                raise InvalidInput(f"invalid --env name {key!r}: use letters, digits and _")
            if key.startswith(RESERVED_ENV_PREFIX):
                raise InvalidInput(f"--env {key} is reserved for clauderon")
            if "\x00" in value:
                raise InvalidInput(f"--env {key} contains a NUL byte")
            if key in self._credential_env_names():
                raise InvalidInput(
                    f"--env {key} would put a credential inside the container; the proxy "
                    "injects it instead: set it in the daemon's environment or with "
                    "`clauderon config set-credential`"
                )
        try:
            egress = Egress(req.egress)
        except ValueError:
            raise InvalidInput(
                f"unknown egress policy {req.egress!r}: use allowlist, open or off"
            ) from None
        try:
            access_mode = AccessMode(req.access_mode)
        except ValueError:
            raise InvalidInput(
                f"unknown access mode {req.access_mode!r}: use read-write or read-only"
            ) from None
        cpu = parse_cpu_limit(req.cpu_limit, os.cpu_count()) if req.cpu_limit else None
        memory = parse_memory_limit(req.memory_limit) if req.memory_limit else None
        image = backend.validate_image(req.image or DEFAULT_IMAGE)
        if req.model is not None and (not req.model.strip() or _CONTROL_RE.search(req.model)):
            raise InvalidInput(f"invalid --model {req.model!r}")
        version = req.agent_version or agent.default_version
        if not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
            raise InvalidInput(f"invalid agent version {version!r}")

        if req.name is not None:
            name = validate_name(req.name)
            self._check_name_free(name, None)
        if not os.path.isabs(os.path.expanduser(req.repo)):
            # The daemon's working directory is not the caller's: a relative path would
            # silently name some other repository (the CLI sends absolute paths).
            raise InvalidInput(f"repository path {req.repo!r} must be absolute")
        repo = git.resolve_repo(req.repo)
        base_commit = git.resolve_commit(repo, req.base_branch) if req.base_branch else repo.head
        base_ref = git.base_ref(repo, req.base_branch)
        if req.name is None:
            name = self._free_name(req.prompt, repo.root)
        else:
            self._check_name_free(name, repo.root)
        session = Session(
            id=str(uuid.uuid4()),
            name=name,
            status=SessionStatus.CREATING,
            backend=backend.kind,
            agent=agent.kind,
            agent_version=version,
            model=req.model,
            prompt=req.prompt,
            print_mode=req.print_mode,
            ask_permissions=req.ask_permissions,
            image=image,
            pull_policy=pull_policy,
            cpu_limit=cpu,
            memory_limit=memory,
            env=dict(req.env),
            egress=egress,
            access_mode=access_mode,
            proxy_token=secrets.token_urlsafe(24),
            hook_token=secrets.token_urlsafe(24),
            repo=str(repo.root),
            subdirectory=repo.subdirectory,
            worktree=str(self.paths.worktree(name)),
            branch=name,
            base_branch=req.base_branch,
            base_ref=base_ref,
            base_commit=base_commit,
            git_common_dir=str(repo.common_dir),
        )
        return session, repo, agent

    def _check_name_free(self, name: str, repo_root: Path | None) -> None:
        if self.store.get_session(name) is not None:
            raise Conflict(f"a session named {name!r} already exists")
        if self.paths.worktree(name).exists():
            raise Conflict(
                f"{self.paths.worktree(name)} already exists: remove it or choose another --name"
            )
        if repo_root is not None and git.branch_exists(repo_root, name):
            raise Conflict(f"branch {name!r} already exists in {repo_root}: choose another --name")

    def _free_name(self, prompt: str, repo_root: Path) -> str:
        for _ in range(20):
            name = generate_name(prompt)
            try:
                self._check_name_free(name, repo_root)
                return name
            except Conflict:
                continue
        raise Conflict("could not find a free session name; give one with --name")
