"""Git operations: resolving the user's repository, worktrees, and saving work.

A session's worktree, and its git dir under `<repo>/.git/worktrees/`, are written to by
an untrusted agent, so host-side git never reads their pointers or config: each command
runs with a private git dir made by clauderon (its `commondir` points at the main
repository; only the worktree's HEAD and index are copied in, as data), with hooks,
fsmonitor and submodules off. An agent that rewrites `/workspace/.git`, `commondir` or
`gitdir` cannot make the host run its code.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from .errors import ClauderonError, InvalidInput

# Paths the agent's tools write because HOME is /workspace: they are not the user's
# work, so they are neither committed by the agent nor counted as unsaved work.
AGENT_HOME_EXCLUDES = """\
# Written by clauderon: agent and tool state in the session's home (/workspace).
/.claude.json
/.claude.json.*
/.claude/*
!/.claude/settings.json
!/.claude/commands/
!/.claude/agents/
!/.claude/skills/
/.clauderon/
/.codex/
/.cargo/registry/
/.cargo/git/
/.cargo/.package-cache*
/.cache/
/.npm/
/.local/
/.config/
/.ssh/
/.gitconfig
/.bash_history
/.python_history
/.lesshst
/.wget-hsts
/.viminfo
"""

# Options that stop git from running anything configured or planted in a worktree.
_UNTRUSTED_OPTS = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]
_IDENTITY = {
    "GIT_AUTHOR_NAME": "clauderon",
    "GIT_AUTHOR_EMAIL": "clauderon@localhost",
    "GIT_COMMITTER_NAME": "clauderon",
    "GIT_COMMITTER_EMAIL": "clauderon@localhost",
}


class GitError(ClauderonError):
    code = "git_error"
    status = 500


def run_git(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(f"git {args[0]} failed: {detail[-1] if detail else 'no output'}")
    return proc


@dataclass(frozen=True)
class RepoInfo:
    root: Path  # top of the main work tree
    subdirectory: str  # where the user pointed, relative to root ("" at the root)
    common_dir: Path  # the repository's git dir (shared by all worktrees)
    head: str  # commit at HEAD


def resolve_repo(path: str) -> RepoInfo:
    """Check that `path` is inside a git work tree with at least one commit."""
    try:
        target = Path(path).expanduser()
    except RuntimeError:  # `~user` for a user this machine does not know
        raise InvalidInput(f"repository path {path!r}: no such user's home directory") from None
    if not target.exists():
        raise InvalidInput(f"repository path {path!r} does not exist")
    if not target.is_dir():
        raise InvalidInput(f"repository path {path!r} is not a directory")
    target = target.resolve()
    probe = run_git(
        [
            "rev-parse",
            "--path-format=absolute",
            "--show-toplevel",
            "--git-common-dir",
            "--is-bare-repository",
        ],
        cwd=target,
        check=False,
    )
    if probe.returncode != 0:
        if "must be run in a work tree" in probe.stderr:
            raise InvalidInput(f"{path!r} is a bare repository: point --repo at a checkout")
        if "not a git repository" in probe.stderr:
            raise InvalidInput(f"{path!r} is not inside a git repository (run `git init` there)")
        raise InvalidInput(f"cannot read the git repository at {path!r}: {probe.stderr.strip()}")
    lines = probe.stdout.splitlines()
    if len(lines) < 3 or lines[-1] == "true":
        raise InvalidInput(f"{path!r} is a bare repository: point --repo at a checkout")
    root, common_dir = Path(lines[0]).resolve(), Path(lines[1]).resolve()
    head = run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=root, check=False)
    if head.returncode != 0:
        raise InvalidInput(
            f"repository {str(root)!r} has no commits yet: commit something first "
            "(a session's branch starts from a commit)"
        )
    subdirectory = target.relative_to(root).as_posix()
    return RepoInfo(
        root=root,
        subdirectory="" if subdirectory == "." else subdirectory,
        common_dir=common_dir,
        head=head.stdout.strip(),
    )


def resolve_commit(repo: RepoInfo, rev: str) -> str:
    if rev.startswith("-"):
        raise InvalidInput(f"invalid --base-branch {rev!r}")
    proc = run_git(
        ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo.root, check=False
    )
    if proc.returncode != 0:
        raise InvalidInput(f"base branch {rev!r} does not exist in {repo.root}")
    return proc.stdout.strip()


def branch_exists(repo_root: Path, branch: str) -> bool:
    proc = run_git(
        ["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=repo_root, check=False
    )
    return proc.returncode == 0


# Held for clauderon's own changes to a user's repository (worktrees, branches, saved
# refs): git's ref and packed-refs locks make parallel writers fail rather than wait.
# One lock for every repository: each change takes milliseconds.
REPO_LOCK = threading.Lock()


def add_worktree(repo_root: Path, path: Path, branch: str, base_commit: str) -> Path:
    """Create `path` on a new branch; return the worktree's own git dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with REPO_LOCK:
        run_git(["worktree", "add", "--quiet", "-b", branch, str(path), base_commit], cwd=repo_root)
    # Read the .git file now, while it is still the one git just wrote.
    pointer = (path / ".git").read_text().strip()
    if not pointer.startswith("gitdir: "):
        raise GitError(f"unexpected .git file in new worktree {path}")
    return Path(pointer.removeprefix("gitdir: ")).resolve()


def _make_writable_and_retry(
    function: Callable[..., object],
    path: str,
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None],
) -> None:
    """rmtree's error handler: a directory without write permission (Go's module cache is
    read-only by design) cannot lose its entries. Give the parent back its write bit and
    try again — through a descriptor opened without following links, so a link the agent
    planted never redirects the chmod — and ignore entries that vanished meanwhile."""
    error = exc_info[1]
    if isinstance(error, FileNotFoundError):
        return
    if not isinstance(error, PermissionError):
        raise error
    for directory in {os.path.dirname(path), path}:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            mode = os.fstat(fd).st_mode
            os.fchmod(fd, stat.S_IMODE(mode) | stat.S_IRWXU)
        finally:
            os.close(fd)
    with suppress(FileNotFoundError):
        function(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree the agent wrote: read-only directories included, links
    removed rather than followed, entries vanishing meanwhile tolerated."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def remove_worktree(
    repo_root: Path, path: Path, git_dir: Path | None = None, common_dir: Path | None = None
) -> None:
    """Remove a worktree's files and registration (only after its work is safe).

    Done by hand rather than with `git worktree remove`: the worktree's git dir is the
    agent's to rewrite, so nothing in it decides what gets deleted. `git_dir` is the one
    recorded when the worktree was made (unknown when a creation was cancelled while git
    made it: then `git worktree prune` finds it, its worktree being gone). The prune and
    the removal hold the repository lock, and a removal tolerates an admin dir that a
    parallel delete's prune took first."""
    remove_tree(path)
    with REPO_LOCK:
        if git_dir and common_dir and git_dir.parent == common_dir / "worktrees":
            remove_tree(git_dir)
        run_git(["worktree", "prune"], cwd=repo_root, check=False)


def delete_branch(repo_root: Path, branch: str, only_at: str | None = None) -> None:
    """Delete a branch; with `only_at`, only while it still points at that commit (an undo
    must never take a branch someone else made or moved)."""
    if not branch_exists(repo_root, branch):
        return
    if only_at is not None:
        tip = run_git(["rev-parse", f"refs/heads/{branch}"], cwd=repo_root).stdout.strip()
        if tip != only_at:
            return
    with REPO_LOCK:
        run_git(["branch", "-D", "--quiet", branch], cwd=repo_root)


def _not_elsewhere(branch: str, also: tuple[str, ...] = ()) -> list[str]:
    return [
        "--not",
        f"--exclude={branch}",
        "--branches",
        "--remotes",
        "--tags",
        "--glob=refs/clauderon/*",
        *also,
    ]


def base_ref(repo: RepoInfo, base_branch: str | None) -> str | None:
    """The branch a session's work goes back to: --base-branch when it names a local
    branch, else (no --base-branch) the branch checked out where the user pointed."""
    if base_branch is not None:
        name = base_branch.removeprefix("refs/heads/")
        return name if branch_exists(repo.root, name) else None
    proc = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo.root, check=False)
    return proc.stdout.strip() or None


def unique_branch_commits(
    repo_root: Path, branch: str, also_not: tuple[str, ...] = ()
) -> list[str]:
    """Commits on `branch` that no other branch, tag, remote or saved ref holds (nor
    `also_not`: commits already landed)."""
    if not branch_exists(repo_root, branch):
        return []
    proc = run_git(
        ["rev-list", f"refs/heads/{branch}", *_not_elsewhere(branch, also_not)], cwd=repo_root
    )
    return proc.stdout.split()


def create_saved_ref(
    git: Callable[..., subprocess.CompletedProcess[str]], session_name: str, commit: str
) -> str:
    """A new ref refs/clauderon/<session>/<UTC time> holding `commit`; never overwrites an
    earlier save (two saves in one second get -2, -3…)."""
    base = f"refs/clauderon/{session_name}/{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    with REPO_LOCK:
        for attempt in range(1, 100):
            ref = base if attempt == 1 else f"{base}-{attempt}"
            # An empty old value: only if the ref does not exist yet.
            if git(["update-ref", ref, commit, ""], check=False).returncode == 0:
                return ref
    raise GitError(f"could not create a saved ref under {base}")


def save_branch(repo_root: Path, branch: str, session_name: str) -> str:
    """Keep a branch's commits under refs/clauderon/<session>/ (its worktree is gone)."""
    tip = run_git(["rev-parse", f"refs/heads/{branch}"], cwd=repo_root).stdout.strip()
    return create_saved_ref(
        lambda args, check=True: run_git(args, cwd=repo_root, check=check), session_name, tip
    )


_HEAD_RE = re.compile(r"ref: refs/heads/[^\s:~^?*\[\\]+|[0-9a-f]{40}|[0-9a-f]{64}")


def _read_plain_file(path: Path, limit: int) -> str | None:
    """Read a small regular file without following a symlink an agent may have planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit).decode(errors="replace")


@dataclass(frozen=True)
class Worktree:
    """A session worktree, addressed without trusting any file inside it."""

    root: Path
    git_dir: Path  # <common>/worktrees/<id>
    common_dir: Path
    branch: str
    excludes_file: Path

    def git(
        self, args: list[str], *, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        with self._private_git_dir() as git_dir:
            safe_env = {
                "GIT_DIR": str(git_dir),
                "GIT_WORK_TREE": str(self.root),
                "GIT_CONFIG_NOSYSTEM": "1",
                **(env or {}),
            }
            return run_git(
                [*_UNTRUSTED_OPTS, "-c", f"core.excludesFile={self.excludes_file}", *args],
                cwd=self.root,
                env=safe_env,
                check=check,
            )

    @contextmanager
    def _private_git_dir(self) -> Iterator[Path]:
        """A git dir of clauderon's own for this worktree (see the module docstring)."""
        with tempfile.TemporaryDirectory(prefix="clauderon-git-") as tmp:
            private = Path(tmp)
            (private / "commondir").write_text(f"{self.common_dir}\n")
            head = _read_plain_file(self.git_dir / "HEAD", 4096)
            if head is None or not _HEAD_RE.fullmatch(head.strip()):
                head = f"ref: refs/heads/{self.branch}"
            (private / "HEAD").write_text(head.strip() + "\n")
            index = self.git_dir / "index"
            if index.is_file() and not index.is_symlink():
                shutil.copyfile(index, private / "index", follow_symlinks=False)
            yield private

    def changed_files(self) -> list[str]:
        """Uncommitted changes and untracked files (ignoring agent home files)."""
        proc = self.git(
            ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=all"]
        )
        entries = [e for e in proc.stdout.split("\0") if e]
        files: list[str] = []
        skip_next = False
        for entry in entries:
            if skip_next:  # the source path of a rename
                skip_next = False
                continue
            files.append(entry[3:])
            skip_next = entry[0] in "RC"
        return files

    def unique_commits(self, also_not: tuple[str, ...] = ()) -> list[str]:
        """Commits on the session's branch (or its HEAD) that no other ref (nor
        `also_not`) holds."""
        heads = [f"refs/heads/{self.branch}"] if self._has_branch() else []
        head = self.git(["rev-parse", "--verify", "--quiet", "HEAD"], check=False)
        if head.returncode == 0:
            heads.append(head.stdout.strip())
        if not heads:
            return []
        proc = self.git(["rev-list", *heads, *_not_elsewhere(self.branch, also_not)])
        return proc.stdout.split()

    def _has_branch(self) -> bool:
        proc = self.git(
            ["show-ref", "--verify", "--quiet", f"refs/heads/{self.branch}"], check=False
        )
        return proc.returncode == 0

    def save_work(self, session_name: str) -> str:
        """Save uncommitted changes and unique commits under refs/clauderon/<name>/.

        The saved commit's tree is the worktree as it is now (untracked files included,
        ignored files not), its parent the worktree's HEAD, so one ref keeps both.
        """
        head = self.git(["rev-parse", "--verify", "--quiet", "HEAD"], check=False).stdout.strip()
        if not head:
            head = self.git(["rev-parse", f"refs/heads/{self.branch}"]).stdout.strip()
        with tempfile.TemporaryDirectory(prefix="clauderon-save-") as tmp:
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_IDENTITY}
            self.git(["read-tree", head], env=index_env)
            self.git(["add", "--all", "--", "."], env=index_env)
            tree = self.git(["write-tree"], env=index_env).stdout.strip()
        head_tree = self.git(["rev-parse", f"{head}^{{tree}}"]).stdout.strip()
        parents = ["-p", head]
        branch_tip = self.git(
            ["rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}"], check=False
        ).stdout.strip()
        if branch_tip and branch_tip != head:
            parents += ["-p", branch_tip]
        if tree != head_tree or len(parents) > 2:
            message = f"clauderon: work of session {session_name}, saved before delete"
            commit = self.git(
                ["commit-tree", tree, *parents, "-m", message], env=_IDENTITY
            ).stdout.strip()
        else:
            commit = head
        return create_saved_ref(self.git, session_name, commit)
