"""From a session record to the container that runs it: `build_container_spec` is pure
(unit-tested without Docker); `prepare_mountpoints` is the one part that writes, inside
the worktree, without following links."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .agents import Agent, entrypoint_script
from .agents.provision import CONTAINER_AGENT_DIR
from .errors import ClauderonError
from .forwarder import CONTAINER_PATH as FORWARDER_PATH
from .models import Session
from .paths import Paths
from .spec import ContainerSpec, Mount

WORKSPACE = "/workspace"
# Shared caches, by volume name (root's); every other user has their own (see cache_volumes).
CACHE_VOLUMES = {
    "clauderon-cargo-registry": f"{WORKSPACE}/.cargo/registry",
    "clauderon-cargo-git": f"{WORKSPACE}/.cargo/git",
    "clauderon-sccache": f"{WORKSPACE}/.cache/sccache",
}
# git reads $HOME/.config/git/ignore by default, whatever environment a tool gives it.
CONTAINER_GITIGNORE = f"{WORKSPACE}/.config/git/ignore"
CONTAINER_CA_PATH = "/etc/clauderon/proxy-ca.pem"
CONTAINER_PROXY_DIR = "/run/clauderon"  # the session's proxy socket (read-only)
# Every way common tools are told which CAs to trust: all TLS is the proxy's.
CA_ENV = (
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CODEX_CA_CERTIFICATE",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
)
# Keys the user cannot set with --env: clauderon's own parameters.
RESERVED_ENV_PREFIX = "CLAUDERON_"


def cache_volumes(uid: int) -> dict[str, str]:
    """The cache volumes of the user with `uid` → their mount targets. Root keeps the plain
    names; any other user gets `<name>-<uid>`: a cache another user can write could plant
    code in this user's builds (build scripts, compiler outputs), and a volume made by
    another user is not writable by this one."""
    suffix = "" if uid == 0 else f"-{uid}"
    return {f"{name}{suffix}": target for name, target in CACHE_VOLUMES.items()}


def container_name(session_name: str, instance: str) -> str:
    """`clauderon-<session>-<home>`: two homes (two users, or a test's) can both have a
    session `fix-bug` without their containers' names colliding."""
    return f"clauderon-{session_name}-{instance[:6]}"


def session_labels(paths: Paths, session: Session) -> dict[str, str]:
    return {
        "clauderon.managed": "true",
        "clauderon.instance": paths.instance,
        "clauderon.session": session.name,
        "clauderon.session-id": session.id,
        "clauderon.version": __version__,
    }


@dataclass(frozen=True)
class ProvidedAgent:
    """Agent binaries clauderon mounts because the image has none."""

    directory: Path
    image_path: str  # the image's own PATH, which the agent's bin directory extends


@dataclass(frozen=True)
class ProxyInputs:
    """How the container reaches the credential proxy, and what it holds instead of keys."""

    port: int  # where the forwarder listens on the container's loopback
    ca_cert: Path  # the proxy CA's certificate (never its key)
    placeholders: dict[str, str]  # env var → placeholder, for the credentials the user has
    socket_dir: Path | None = None  # the session's proxy socket directory on the host
    forwarder: Path | None = None  # the forwarder binary on the host


@dataclass(frozen=True)
class GitMounts:
    """The session's own git state (see gitsync.py): nothing of the main git dir but its
    objects, read-only."""

    git_dir: Path  # the session's common git dir, at its own path (rw)
    admin_dir: Path  # <main git dir>/worktrees/<id>: where the worktree's .git file points
    container_admin: Path  # <git_dir>/worktrees/<id>, mounted at admin_dir (rw)
    objects: Path  # <main git dir>/objects (read-only)
    dotgit: Path  # a `gitdir: <admin_dir>` file, read-only over /workspace/.git
    alternates: tuple[Path, ...] = ()  # object dirs the main repository borrows from


@dataclass(frozen=True)
class SpecInputs:
    """Facts from outside the record that shape the container."""

    uid: int
    gid: int
    git: GitMounts
    git_identity: dict[str, str]  # GIT_AUTHOR_NAME … from the host's git config
    provided_agent: ProvidedAgent | None = None
    proxy: ProxyInputs | None = None


def build_container_spec(
    session: Session, agent: Agent, paths: Paths, inputs: SpecInputs, agent_mounts: list[Mount]
) -> ContainerSpec:
    g = inputs.git
    mounts = [
        Mount(session.worktree, WORKSPACE),
        # Git works inside on the session's own git dir: the worktree's .git file (a
        # read-only copy, so it cannot be repointed) names the admin dir's host path, where
        # the session's own admin dir is mounted; the main objects are read-only.
        Mount(str(g.dotgit), f"{WORKSPACE}/.git", read_only=True),
        Mount(str(g.git_dir), str(g.git_dir)),
        Mount(str(g.container_admin), str(g.admin_dir)),
        Mount(str(g.objects), str(g.objects), read_only=True),
        *(Mount(str(a), str(a), read_only=True) for a in g.alternates),
        Mount(
            str(paths.uploads / session.id),
            f"{WORKSPACE}/.clauderon/uploads/{session.id}",
            read_only=True,
        ),
        Mount(str(paths.hooks), f"{WORKSPACE}/.clauderon/hooks", read_only=True),
        Mount(str(paths.home / "gitignore"), CONTAINER_GITIGNORE, read_only=True),
        *agent_mounts,
        *(
            Mount(volume, target, volume=True)
            for volume, target in cache_volumes(inputs.uid).items()
        ),
    ]
    provided = inputs.provided_agent
    if provided is not None:
        mounts.append(Mount(str(provided.directory), CONTAINER_AGENT_DIR, read_only=True))

    proxy_env: dict[str, str] = {}
    if inputs.proxy is not None:
        mounts.append(Mount(str(inputs.proxy.ca_cert), CONTAINER_CA_PATH, read_only=True))
        if inputs.proxy.socket_dir is not None:
            mounts.append(Mount(str(inputs.proxy.socket_dir), CONTAINER_PROXY_DIR, read_only=True))
        if inputs.proxy.forwarder is not None:
            mounts.append(Mount(str(inputs.proxy.forwarder), FORWARDER_PATH, read_only=True))
        proxy_env = proxy_environment(session, inputs.proxy)
    env = {
        "HOME": WORKSPACE,
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "LANG": "C.UTF-8",
        "CARGO_HOME": f"{WORKSPACE}/.cargo",
        "SCCACHE_DIR": f"{WORKSPACE}/.cache/sccache",
        # The uid has no passwd entry and may not own every mounted git dir.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
        **inputs.git_identity,
        # So `docker exec … claude` finds a provided agent too, not only the entrypoint.
        **({"PATH": f"{provided.image_path}:{CONTAINER_AGENT_DIR}/bin"} if provided else {}),
        **agent.env(session),
        **session.env,
        **proxy_env,
        "CLAUDERON_AGENT": agent.command,
        "CLAUDERON_SESSION_ID": session.id,
        "CLAUDERON_SESSION_NAME": session.name,
        "CLAUDERON_SESSION_TOKEN": session.hook_token,
        "CLAUDERON_PROMPT": session.prompt,
        "CLAUDERON_MODEL": session.model or "",
        "CLAUDERON_PRINT": "1" if session.print_mode else "0",
        "CLAUDERON_SKIP_PERMISSIONS": "0" if session.ask_permissions else "1",
    }
    return ContainerSpec(
        name=container_name(session.name, paths.instance),
        image=session.image,
        command=["/bin/sh", "-c", entrypoint_script(), "clauderon-entrypoint"],
        workdir=session.workdir,
        user=f"{inputs.uid}:{inputs.gid}",
        env=env,
        mounts=mounts,
        labels=session_labels(paths, session),
        cpu_limit=session.cpu_limit,
        memory_limit=session.memory_limit,
        tty=not session.print_mode,
        restart=not session.print_mode,
    )


def proxy_environment(session: Session, proxy: ProxyInputs) -> dict[str, str]:
    """Everything that sends the container's traffic through the proxy and trusts its CA."""
    # The container has only loopback: the forwarder there is its one way out.
    url = f"http://clauderon:{session.proxy_token}@127.0.0.1:{proxy.port}"
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env["CLAUDERON_PROXY_PORT"] = str(proxy.port)
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    for name in CA_ENV:
        env[name] = CONTAINER_CA_PATH
    # The agents' own quiet settings: no telemetry or update checks to be denied.
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env.update(proxy.placeholders)
    return env


def prepare_mountpoints(spec: ContainerSpec, worktree: Path) -> None:
    """Create the mount points inside the worktree as the user, before Docker creates them
    as root (root-owned directories in a worktree would break its removal later).

    The worktree is the container's: any part of a mount point's path may be a link the
    agent planted to a host directory. Each step is taken from an open directory without
    following links; a link in the way is removed and replaced by what the mount needs,
    anything else in the way (a file where a directory belongs) is an error."""
    root = os.open(worktree, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for mount in spec.mounts:
            if not mount.target.startswith(f"{WORKSPACE}/"):
                continue
            parts = [p for p in mount.target.removeprefix(f"{WORKSPACE}/").split("/") if p]
            if not parts or any(p in (".", "..") for p in parts):
                continue
            is_dir = mount.volume or Path(mount.source).is_dir()
            _prepare(root, parts, is_dir, worktree)
    finally:
        os.close(root)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_dir(parent: int, name: str, where: Path) -> int:
    """Open (creating it if need be) the directory `name` under `parent`, never through a
    link: a link there is replaced by a directory."""
    for _ in range(3):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
        except OSError as exc:  # ELOOP (a link) or ENOTDIR (not a directory)
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISLNK(info.st_mode):
                raise ClauderonError(
                    f"cannot prepare the mount point {where / name}: it is not a directory "
                    f"({exc.strerror}); move it away and try again",
                    code="mountpoint",
                    status=409,
                ) from None
            os.unlink(name, dir_fd=parent)
    raise ClauderonError(
        f"cannot prepare the mount point {where / name}: it keeps changing",
        code="mountpoint",
        status=409,
    )


def _prepare(root: int, parts: list[str], is_dir: bool, worktree: Path) -> None:
    fds: list[int] = []
    try:
        parent, where = root, worktree
        leading = parts if is_dir else parts[:-1]
        for name in leading:
            parent = _open_dir(parent, name, where)
            fds.append(parent)
            where = where / name
        if is_dir:
            return
        name = parts[-1]
        try:
            info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISREG(info.st_mode):
            return
        if info is not None and not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent)  # a link, a FIFO…: never opened, replaced
        elif info is not None:
            raise ClauderonError(
                f"cannot prepare the mount point {where / name}: it is a directory, "
                "a file is mounted there; move it away and try again",
                code="mountpoint",
                status=409,
            )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with contextlib.suppress(FileExistsError):
            os.close(os.open(name, flags, 0o644, dir_fd=parent))
    finally:
        for fd in fds:
            os.close(fd)
