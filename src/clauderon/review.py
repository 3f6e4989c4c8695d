"""Review and land a session's work with host-side git: diff, commit, merge, push.

Everything here runs on the host against the user's repository and never trusts the
session's worktree or its git dir: worktree reads go through `git.Worktree` (a private git
dir, hooks and fsmonitor off); everything else runs with `--git-dir=<the main repository's
git dir>`, hooks and fsmonitor off, and computes trees without any checkout
(`git merge-tree --write-tree`, `commit-tree`). A ref moves only by `update-ref` guarded by
its old value, so a concurrent change makes the operation fail instead of losing work.

Blocking (subprocesses): the manager runs these off the event loop, under the session's
lock.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ClauderonError, Conflict, InvalidInput
from .git import REPO_LOCK, GitError, Worktree, run_git

SAFE_OPTS = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]
DIFF_OPTS = ["--no-ext-diff", "--no-textconv"]
MAX_DIFF_BYTES = 32 * 1024**2  # what one diff answer may carry; the rest is cut, and said so
PUSH_TIMEOUT = 300.0
# Identity and date of the throw-away commits that make merge-tree use a chosen base.
_SCRATCH = {
    "GIT_AUTHOR_NAME": "clauderon",
    "GIT_AUTHOR_EMAIL": "clauderon@localhost",
    "GIT_AUTHOR_DATE": "@0 +0000",
    "GIT_COMMITTER_NAME": "clauderon",
    "GIT_COMMITTER_EMAIL": "clauderon@localhost",
    "GIT_COMMITTER_DATE": "@0 +0000",
}
MODES = ("merge", "squash", "rebase")


class UncommittedWork(ClauderonError):
    code = "uncommitted_changes"
    status = 409


class NothingToCommit(ClauderonError):
    code = "nothing_to_commit"
    status = 409


class MergeConflict(ClauderonError):
    code = "merge_conflict"
    status = 409

    def __init__(self, message: str, files: list[str]):
        super().__init__(message)
        self.files = files

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "files": self.files}


class CheckoutInTheWay(ClauderonError):
    code = "checkout_in_the_way"
    status = 409


class PushFailed(ClauderonError):
    code = "push_failed"
    status = 502


def main_git(
    common_dir: Path, args: list[str], *, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """git in the user's repository, by its git dir (never a session's worktree)."""
    return run_git(
        [*SAFE_OPTS, f"--git-dir={common_dir}", *args], cwd=common_dir, env=env, check=check
    )


def rev(common_dir: Path, name: str) -> str | None:
    proc = main_git(
        common_dir,
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"],
        check=False,
    )
    return proc.stdout.strip() or None


def resolve_base(common_dir: Path, name: str) -> str:
    """A user-given revision (`--base`), checked: never an option, must be a commit."""
    if not name or name.startswith("-") or "\x00" in name or len(name) > 300:
        raise InvalidInput(f"invalid revision {name!r}")
    sha = rev(common_dir, name)
    if sha is None:
        raise InvalidInput(f"{name!r} is not a commit in the repository")
    return sha


def check_branch_name(name: str, what: str = "branch") -> str:
    proc = run_git(["check-ref-format", "--branch", name], check=False)
    if name.startswith("-") or proc.returncode != 0:
        raise InvalidInput(f"invalid {what} name {name!r}")
    return name


def first_line(text: str, limit: int = 72) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


# --- the worktree as a tree ----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    head: str  # the worktree's HEAD commit
    tree: str  # the worktree as it is (untracked files included, ignored ones not)
    index: Path  # an index matching `tree` (with the files' stat data), until the block ends


@contextmanager
def snapshot(wt: Worktree) -> Iterator[Snapshot]:
    """Write the worktree's state as a tree object: a temporary index started from the
    host's (for its stat data), `add --all`, `write-tree`. Nothing else changes."""
    head = wt.git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], check=False).stdout
    head = head.strip() or wt.git(["rev-parse", f"refs/heads/{wt.branch}"]).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="clauderon-review-") as tmp:
        index = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(index)}
        host_index = wt.git_dir / "index"
        started = False
        if host_index.is_file() and not host_index.is_symlink():
            index.write_bytes(host_index.read_bytes())
            started = wt.git(["read-tree", "-m", head], env=env, check=False).returncode == 0
        if not started:
            index.unlink(missing_ok=True)
            wt.git(["read-tree", head], env=env)
        wt.git(["add", "--all", "--", "."], env=env)
        tree = wt.git(["write-tree"], env=env).stdout.strip()
        yield Snapshot(head, tree, index)


# --- diff -------------------------------------------------------------------------------


def diff_command(
    common_dir: Path,
    base: str,
    tree: str,
    *,
    stat: bool,
    name_only: bool,
    color: bool,
    numstat: bool = False,
) -> list[str]:
    args = [*SAFE_OPTS, f"--git-dir={common_dir}", "diff", *DIFF_OPTS]
    args.append("--color=always" if color else "--color=never")
    if numstat:  # data: `added<TAB>deleted<TAB>path<NUL>` ("-" counts for binary files)
        args += ["--numstat", "-z", "--no-renames"]
    elif name_only:
        args.append("--name-only")
    elif stat:
        args.append("--stat")
    return ["git", *args, base, tree, "--"]


def parse_numstat(data: bytes) -> list[dict[str, Any]]:
    files = []
    for entry in data.split(b"\0"):
        added, sep1, rest = entry.partition(b"\t")
        deleted, sep2, path = rest.partition(b"\t")
        if not (sep1 and sep2 and path):
            continue
        binary = added == b"-"
        files.append(
            {
                "path": path.decode(errors="replace"),
                "added": None if binary else int(added),
                "deleted": None if binary else int(deleted),
                "binary": binary,
            }
        )
    return files


def stream_command(argv: list[str], cwd: Path, limit: int = MAX_DIFF_BYTES) -> Iterator[bytes]:
    """A command's output in chunks, cut at `limit` bytes (the last chunk says so)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat"}
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    # A pipe with the default buffering: a BufferedReader, whose read1 returns what is
    # there without waiting for the whole 64 KiB.
    assert isinstance(proc.stdout, io.BufferedReader) and proc.stderr is not None
    sent = 0
    try:
        while chunk := proc.stdout.read1(65536):
            if sent + len(chunk) > limit:
                yield chunk[: limit - sent]
                yield (
                    f"\n[clauderon: the diff is longer than {limit // 1024**2} MiB and was cut "
                    "here; use --stat or --name-only, or git diff in the repository]\n"
                ).encode()
                return
            sent += len(chunk)
            yield chunk
        if proc.wait() != 0:
            detail = proc.stderr.read(4096).decode(errors="replace").strip().splitlines()
            raise GitError(f"git diff failed: {detail[-1] if detail else 'no output'}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


# --- numbers for `list` -------------------------------------------------------------------


@dataclass
class Stats:
    """What `list` shows of a session's work; computed off the loop, cached by the manager."""

    key: tuple[str | None, str | None]  # (branch tip, base branch tip) they were made for
    ahead: int | None = None
    behind: int | None = None
    committed: list[str] = field(default_factory=list)  # files changed by its commits
    uncommitted: list[str] = field(default_factory=list)
    dirty_at: float = 0.0  # when `uncommitted` was read (monotonic)

    @property
    def changed_files(self) -> int:
        return len(set(self.committed) | set(self.uncommitted))


def branch_stats(
    common_dir: Path, branch_tip: str | None, base_tip: str | None, base_commit: str
) -> tuple[int | None, int | None, list[str]]:
    """(ahead, behind) of the base branch, and the files the commits changed since
    `base_commit`."""
    if branch_tip is None:
        return None, None, []
    ahead = behind = None
    if base_tip is not None:
        proc = main_git(
            common_dir, ["rev-list", "--left-right", "--count", f"{base_tip}...{branch_tip}"]
        )
        left, _, right = proc.stdout.strip().partition("\t")
        behind, ahead = int(left), int(right)
    files: list[str] = []
    if base_commit and base_commit != branch_tip:
        proc = main_git(
            common_dir, ["diff", *DIFF_OPTS, "--name-only", "-z", base_commit, branch_tip, "--"]
        )
        files = [f for f in proc.stdout.split("\0") if f]
    return ahead, behind, files


_PACKED_CACHE: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}


def read_ref(common_dir: Path, ref: str) -> str | None:
    """A ref of the user's repository read as a file (loose, else packed-refs; the parse is
    cached by the file's size and time): the cheap look `list`'s numbers are keyed on."""
    try:
        text = (common_dir / ref).read_text().strip()
        if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text):
            return text
    except (OSError, UnicodeDecodeError):
        pass
    packed = common_dir / "packed-refs"
    try:
        info = packed.stat()
    except OSError:
        return None
    key = (info.st_mtime_ns, info.st_size)
    cached = _PACKED_CACHE.get(packed)
    if cached is None or cached[0] != key:
        refs: dict[str, str] = {}
        for line in packed.read_text(errors="replace").splitlines():
            if line and line[0] not in "#^":
                sha, _, name = line.partition(" ")
                refs[name] = sha
        _PACKED_CACHE[packed] = cached = (key, refs)
    return cached[1].get(ref)


# --- commit -------------------------------------------------------------------------------


def default_commit_message(prompt: str, changes: str) -> str:
    lines = [ln for ln in changes.splitlines() if ln.strip()]
    shown = "\n".join(f"  {ln}" for ln in lines[:50])
    more = f"\n  … and {len(lines) - 50} more" if len(lines) > 50 else ""
    return f"{first_line(prompt) or 'Work of the session'}\n\nFiles:\n{shown}{more}\n"


def commit_all(
    wt: Worktree, common_dir: Path, prompt: str, message: str | None, identity: dict[str, str]
) -> tuple[str, list[str]]:
    """Commit everything in the worktree on its branch; the host's index of the worktree
    becomes the new commit's (so `git status` is clean on both sides once synced)."""
    with snapshot(wt) as snap:
        head_tree = main_git(common_dir, ["rev-parse", f"{snap.head}^{{tree}}"]).stdout.strip()
        if snap.tree == head_tree:
            raise NothingToCommit(f"nothing to commit in {wt.root}")
        changes = main_git(
            common_dir, ["diff", *DIFF_OPTS, "--name-status", snap.head, snap.tree, "--"]
        ).stdout
        text = message if message is not None else default_commit_message(prompt, changes)
        commit = _commit_tree(common_dir, snap.tree, [snap.head], text, identity)
        # The host's index is locked first (as git does), so the commit and the index
        # that matches it land together or not at all.
        lock = wt.git_dir / "index.lock"
        fd = _lock_index(wt.git_dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(snap.index.read_bytes())
            with REPO_LOCK:
                moved = main_git(
                    common_dir,
                    [
                        "update-ref",
                        "-m",
                        "clauderon commit",
                        f"refs/heads/{wt.branch}",
                        commit,
                        snap.head,
                    ],
                    check=False,
                )
            if moved.returncode != 0:
                raise Conflict(
                    f"branch {wt.branch} moved meanwhile: nothing was committed; try again"
                )
            os.replace(lock, wt.git_dir / "index")
        except BaseException:
            lock.unlink(missing_ok=True)
            raise
    files = [ln.split("\t")[-1] for ln in changes.splitlines() if ln.strip()]
    return commit, files


def _lock_index(admin_dir: Path) -> int:
    """Take the host's `index.lock` of the worktree (O_EXCL, never through a link)."""
    try:
        return os.open(
            admin_dir / "index.lock",
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
        )
    except FileExistsError:
        raise Conflict(
            f"{admin_dir / 'index.lock'} exists: another git command is running in the "
            "worktree; nothing was committed"
        ) from None


def _commit_tree(
    common_dir: Path, tree: str, parents: list[str], message: str, env: dict[str, str]
) -> str:
    args = [*SAFE_OPTS, f"--git-dir={common_dir}", "commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    proc = subprocess.run(
        ["git", *args],
        input=message,
        cwd=common_dir,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"git commit-tree failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


# --- merge --------------------------------------------------------------------------------


@dataclass
class MergeOutcome:
    into: str
    mode: str
    commit: str  # the new tip of `into`
    previous: str  # its tip before
    session_tip: str
    already: bool = False  # nothing to do: `into` had every commit already
    fast_forward: bool = False
    checkout: str | None = None  # the user's worktree that was updated


def _is_ancestor(common_dir: Path, old: str, new: str) -> bool:
    if old == new:
        return True
    proc = main_git(common_dir, ["merge-base", "--is-ancestor", old, new], check=False)
    return proc.returncode == 0


def merge_trees(common_dir: Path, ours: str, theirs: str) -> str:
    """The merged tree of two commits (their merge base as git finds it); MergeConflict
    with the conflicting files otherwise. Writes objects only."""
    proc = main_git(
        common_dir,
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs],
        check=False,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode == 0 and lines:
        return lines[0].strip()
    if proc.returncode == 1:
        files = []
        for line in lines[1:]:
            if not line.strip():
                break
            files.append(line)
        raise MergeConflict("conflict", sorted(set(files)))
    raise GitError(f"git merge-tree failed: {proc.stderr.strip()[-300:]}")


def three_way(common_dir: Path, base: str, ours: str, theirs: str) -> str:
    """`theirs` applied on `ours` relative to `base` (a cherry-pick's tree), through
    throw-away commits whose only common ancestor has `base`'s tree (git 2.39's
    merge-tree has no --merge-base)."""

    def scratch(tree_of: str, parents: list[str]) -> str:
        tree = main_git(common_dir, ["rev-parse", f"{tree_of}^{{tree}}"]).stdout.strip()
        return _commit_tree(common_dir, tree, parents, "clauderon scratch\n", _SCRATCH)

    root = scratch(base, [])
    return merge_trees(common_dir, scratch(ours, [root]), scratch(theirs, [root]))


def worktrees_on(common_dir: Path, branch: str) -> list[Path]:
    """The user's worktrees that have `branch` checked out."""
    proc = main_git(common_dir, ["worktree", "list", "--porcelain"])
    found, path = [], None
    for line in proc.stdout.splitlines():
        if line.startswith("worktree "):
            path = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}" and path is not None:
            found.append(path)
    return found


def _commit_info(common_dir: Path, commit: str) -> tuple[dict[str, str], str]:
    proc = main_git(
        common_dir, ["log", "-1", "--format=%an%x00%ae%x00%ad%x00%B", "--date=raw", commit]
    )
    name, email, date, body = proc.stdout.split("\0", 3)
    author = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    return author, body.rstrip("\n") + "\n"


def plan_merge(
    common_dir: Path,
    session: str,
    branch: str,
    into: str,
    mode: str,
    message: str | None,
    prompt: str,
    identity: dict[str, str],
) -> MergeOutcome:
    """Compute the new tip of `into` (objects only; no ref moves)."""
    src = rev(common_dir, f"refs/heads/{branch}")
    target = rev(common_dir, f"refs/heads/{into}")
    if src is None:
        raise InvalidInput(f"the session's branch {branch} does not exist")
    if target is None:
        raise InvalidInput(f"there is no branch {into!r} to merge into (use --into BRANCH)")
    outcome = MergeOutcome(into, mode, target, target, src)
    if _is_ancestor(common_dir, src, target):
        outcome.already = True
        return outcome
    subjects = main_git(common_dir, ["log", "--format=* %s", f"{target}..{src}"]).stdout
    try:
        if mode == "merge":
            if _is_ancestor(common_dir, target, src):
                outcome.commit, outcome.fast_forward = src, True
                return outcome
            tree = merge_trees(common_dir, target, src)
            text = message or f"Merge session {session} into {into}\n\n{first_line(prompt)}\n"
            outcome.commit = _commit_tree(common_dir, tree, [target, src], text, identity)
        elif mode == "squash":
            if _is_ancestor(common_dir, target, src):
                tree = main_git(common_dir, ["rev-parse", f"{src}^{{tree}}"]).stdout.strip()
            else:
                tree = merge_trees(common_dir, target, src)
            text = message or (
                f"{first_line(prompt) or f'Work of session {session}'}\n\n"
                f"Squashed from session {session}:\n{subjects}"
            )
            outcome.commit = _commit_tree(common_dir, tree, [target], text, identity)
        else:
            outcome.commit = _replay(common_dir, target, src, identity)
            outcome.fast_forward = outcome.commit == src
    except MergeConflict as exc:
        raise MergeConflict(
            f"merging {branch} into {into} ({mode}) conflicts in {len(exc.files)} file(s): "
            f"{', '.join(exc.files[:10])}{', …' if len(exc.files) > 10 else ''}; nothing was "
            f'changed. Ask the agent: clauderon send {session} "Rebase your branch on '
            f'{into} and resolve the conflicts in {", ".join(exc.files[:5])}"',
            exc.files,
        ) from None
    return outcome


def _replay(common_dir: Path, onto: str, src: str, identity: dict[str, str]) -> str:
    proc = main_git(common_dir, ["rev-list", "--reverse", "--parents", f"{onto}..{src}"])
    current = onto
    for line in proc.stdout.splitlines():
        commit, *parents = line.split()
        if len(parents) != 1:
            raise InvalidInput(
                f"the session's branch has merge commit {commit[:12]}: use --merge or --squash"
            )
        if parents[0] == current:
            current = commit  # already on top: kept as it is
            continue
        tree = three_way(common_dir, parents[0], current, commit)
        author, text = _commit_info(common_dir, commit)
        current = _commit_tree(common_dir, tree, [current], text, {**identity, **author})
    return current


def apply_merge(
    common_dir: Path, outcome: MergeOutcome, reason: str, not_under: Path | None = None
) -> MergeOutcome:
    """Move `into` to the new tip. Where the user has it checked out, the checkout follows
    as `git merge` would (`read-tree -m -u`, which refuses to overwrite local changes:
    then nothing changes and CheckoutInTheWay says so). Worktrees under `not_under`
    (the sessions') are never a checkout of the user's: git there would read what an
    agent may have written."""
    if outcome.already:
        return outcome
    old, new, into = outcome.previous, outcome.commit, outcome.into
    with REPO_LOCK:
        updated: list[Path] = []
        for path in worktrees_on(common_dir, into):
            if not_under is not None and path.resolve().is_relative_to(not_under.resolve()):
                continue
            git_in = ["-C", str(path), *SAFE_OPTS]
            run_git([*git_in, "update-index", "-q", "--refresh"], check=False)
            proc = run_git([*git_in, "read-tree", "-m", "-u", old, new], check=False)
            if proc.returncode != 0:
                for done in updated:  # put back what was already moved
                    run_git(["-C", str(done), *SAFE_OPTS, "read-tree", "-m", "-u", new, old])
                detail = (proc.stderr.strip().splitlines() or ["local changes"])[0]
                detail = detail.removeprefix("error: ")
                raise CheckoutInTheWay(
                    f"{into} is checked out in {path} and the merge would overwrite its local "
                    f"changes ({detail}); commit or stash them there and merge again — nothing "
                    "was changed"
                )
            updated.append(path)
            outcome.checkout = str(path)
        moved = main_git(
            common_dir,
            ["update-ref", "-m", reason, f"refs/heads/{into}", new, old],
            check=False,
        )
        if moved.returncode != 0:
            for done in updated:
                run_git(["-C", str(done), *SAFE_OPTS, "read-tree", "-m", "-u", new, old])
            raise Conflict(f"branch {into} moved meanwhile: nothing was merged; try again")
    return outcome


# --- push and pull requests ---------------------------------------------------------------


def remote_names(root: Path) -> list[str]:
    return run_git(["-C", str(root), "remote"], check=False).stdout.split()


def check_remote(root: Path, remote: str) -> str:
    names = remote_names(root)
    if remote not in names:
        known = ", ".join(names) if names else "none"
        raise InvalidInput(f"no remote {remote!r} in {root} (remotes: {known})")
    return remote


def push(root: Path, remote: str, branch: str, env: dict[str, str]) -> str:
    """`git push <remote> <branch>` in the user's repository, with the user's own git
    setup (config, credential helper, SSH agent); returns git's summary line."""
    check_remote(root, remote)
    argv = [
        "git",
        "-C",
        str(root),
        "push",
        "--porcelain",
        remote,
        f"refs/heads/{branch}:refs/heads/{branch}",
    ]
    try:
        proc = subprocess.run(
            argv,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **env},
            capture_output=True,
            text=True,
            timeout=PUSH_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PushFailed(f"git push to {remote} did not finish in {PUSH_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        detail = next((ln for ln in lines if ln.startswith(("fatal", "error", "!"))), None)
        detail = detail or (lines[-1] if lines else f"exit code {proc.returncode}")
        raise PushFailed(f"git push {remote} {branch} failed: {detail}")
    status = next((ln for ln in proc.stdout.splitlines() if "\t" in ln), "")
    return status.strip()


def remote_url(root: Path, remote: str) -> str:
    check_remote(root, remote)
    return run_git(["-C", str(root), "remote", "get-url", remote]).stdout.strip()


_SCP_URL = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")


def parse_github_url(url: str) -> tuple[str, str, str]:
    """(host, owner, repo) from a remote's https, ssh or scp-like URL."""
    host = path = None
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme in ("https", "http", "ssh", "git") and parts.hostname:
            host, path = parts.hostname, parts.path
    else:
        match = _SCP_URL.match(url)
        if match:
            host, path = match.group(1), match.group(2)
    segments = [s for s in (path or "").strip("/").split("/") if s]
    if not host or len(segments) != 2:
        raise InvalidInput(f"cannot tell the GitHub owner and repository from the URL {url!r}")
    owner, repo = segments[0], segments[1].removesuffix(".git")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", owner) or not re.fullmatch(r"[A-Za-z0-9_.-]+", repo):
        raise InvalidInput(f"cannot tell the GitHub owner and repository from the URL {url!r}")
    return host.lower(), owner, repo
