"""A session's own git directory, and bringing what the agent commits back to the host.

The container never sees the user's git directory. It gets, per session:

- G = `<home>/sessions/<name>/git`, a git dir of its own (rw): HEAD, config (the main
  repository's `extensions.*` and `remote.*`, credentials stripped), `packed-refs` (the
  main repository's branches, tags and remote branches as of the session's start),
  `objects/` (its own) with `objects/info/alternates` = the main repository's objects,
  and `worktrees/<id>/` (HEAD on the session's branch, the index, `commondir` = G).
- `G/worktrees/<id>` mounted at the host path of the worktree's admin dir, so the
  worktree's `.git` file resolves to the session's own state inside; the main `objects`
  read-only; and a read-only copy of the `.git` file over `/workspace/.git`.

Host-side git never uses G: the daemon reads G's refs as data (no links followed,
regular files only, bounded), copies G's loose objects and packs as data into a mirror
repository M = `<home>/sessions/<name>/mirror` that only clauderon writes (pack indexes
are rebuilt by `git index-pack`, never copied), and fetches from M into the main
repository with every object checked (`transfer.fsckObjects`), hooks and fsmonitor off.
The refs are then moved by one `git update-ref --stdin` transaction guarded by the old
values. See `sync` for the rules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .git import REPO_LOCK, GitError, remove_tree, run_git

log = logging.getLogger(__name__)

# Options for every host-side git command here: nothing configured or planted runs.
SAFE_OPTS = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]
MAX_REF_FILE = 4096
MAX_PACKED_REFS = 64 * 1024**2
MAX_REFS = 20_000  # refs read from G (loose and packed)
MAX_AGENT_BRANCHES = 500  # branches of the agent brought back
MAX_OBJECT_FILE = 4 * 1024**3
MAX_INDEX = 512 * 1024**2
DETACHED = "HEAD"  # how the agent's detached HEAD is brought back (no branch has that name)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BAD_REF = re.compile(
    r"[\x00-\x20\x7f-\x9f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock/|^\.|^/|/$|\.$|\.lock$"
)
_LOOSE_DIR = re.compile(r"[0-9a-f]{2}")
_PACK = re.compile(r"pack-[0-9a-f]{40,64}\.pack")
_CRED_URL = re.compile(r"^(https?://)[^/@]*@", re.IGNORECASE)
_PASSWORD_URL = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):[^/@]*@", re.IGNORECASE)


def valid_branch(name: str) -> bool:
    """A branch name git would accept (conservatively): safe to put in a ref transaction."""
    if not 0 < len(name) <= 200 or name == "@" or "\ufffd" in name or _BAD_REF.search(name):
        return False
    try:
        name.encode()
    except UnicodeEncodeError:  # not UTF-8 on disk
        return False
    return True


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# --- reading and writing in a directory the container controls -----------------------


def _open_dir(name: str | Path, dir_fd: int | None = None) -> int | None:
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except OSError:
        return None


@contextlib.contextmanager
def _dir(name: str | Path, dir_fd: int | None = None) -> Iterator[int | None]:
    fd = _open_dir(name, dir_fd)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _open_regular(name: str, dir_fd: int, limit: int) -> tuple[int, int] | None:
    """(fd, size) of a regular file no bigger than `limit`, never through a link."""
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        return None
    return fd, info.st_size


def read_regular(name: str, dir_fd: int, limit: int) -> bytes | None:
    opened = _open_regular(name, dir_fd, limit)
    if opened is None:
        return None
    fd, size = opened
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(size + 1)  # (a file that grew meanwhile: read again next time)
    return data if len(data) <= min(size, limit) else None


def _copy_regular(name: str, dir_fd: int, target: Path, limit: int) -> bool:
    """Copy a regular file out of a hostile dir into `target` (ours), atomically."""
    opened = _open_regular(name, dir_fd, limit)
    if opened is None:
        return False
    fd, size = opened
    tmp = target.with_name(f".incoming-{target.name}")
    with os.fdopen(fd, "rb") as src, open(tmp, "wb") as dst:
        copied = 0
        while chunk := src.read(1024 * 1024):
            copied += len(chunk)
            if copied > size:  # it grows while we read: not now
                break
            dst.write(chunk)
    if copied != size:
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, target)
    return True


def _write_locked(
    dir_fd: int, name: str, data: bytes, expect: bytes | None = None, check: bool = False
) -> bool:
    """Replace `name` in a hostile dir the way git does: take `<name>.lock` (O_EXCL, never
    through a link), with `check` make sure it still holds `expect` (None: absent), and
    rename over it."""
    lock = f"{name}.lock"
    try:
        fd = os.open(
            lock,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=dir_fd,
        )
    except OSError:
        return False  # git inside holds it (or something sits there): next time
    try:
        if check and read_regular(name, dir_fd, MAX_REF_FILE) != expect:
            raise OSError("changed meanwhile")
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
        os.rename(lock, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True
    except OSError:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(lock, dir_fd=dir_fd)
        return False


# --- the session's layout -------------------------------------------------------------


@dataclass(frozen=True)
class SessionGit:
    """Where a session's git state lives, on the host."""

    git_dir: Path  # G: the container's common git dir
    mirror: Path  # M: host-only, what the main repository fetches from
    dotgit: Path  # the `.git` file mounted read-only over /workspace/.git
    common_dir: Path  # the main repository's git dir
    admin_dir: Path  # <common>/worktrees/<id>: git's own admin dir, host-only
    worktree: Path
    branch: str
    name: str

    @property
    def worktree_id(self) -> str:
        return self.admin_dir.name

    @property
    def container_admin(self) -> Path:
        return self.git_dir / "worktrees" / self.worktree_id

    def git(
        self, args: list[str], *, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """git in the main repository (never in G, never in the worktree)."""
        return run_git(
            [*SAFE_OPTS, f"--git-dir={self.common_dir}", *args],
            cwd=self.common_dir,
            env={"GIT_CONFIG_NOSYSTEM": "1", **(env or {})},
            check=check,
        )


def extra_alternates(common_dir: Path) -> list[Path]:
    """Object dirs the main repository borrows from (they must be visible inside too)."""
    alternates = common_dir / "objects" / "info" / "alternates"
    if not alternates.is_file():
        return []
    found = []
    for line in alternates.read_text(errors="replace").splitlines()[:8]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = (common_dir / "objects" / line).resolve()
        if path.is_dir():
            found.append(path)
    return found


def _config_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _strip_credentials(url: str) -> str:
    url = _CRED_URL.sub(r"\1", url)
    return _PASSWORD_URL.sub(r"\1@", url)


def _main_config(lay: SessionGit) -> tuple[str, int, dict[str, list[tuple[str, str]]]]:
    """The config text for G and M (format, extensions, remotes) and the hex id length."""
    proc = lay.git(
        [
            "config",
            "--local",
            "-z",
            "--get-regexp",
            r"^(core\.repositoryformatversion|extensions\..*|remote\..*\.(url|pushurl|fetch))$",
        ],
        check=False,
    )
    version = "0"
    extensions: list[tuple[str, str]] = []
    remotes: dict[str, list[tuple[str, str]]] = {}
    for entry in proc.stdout.split("\0"):
        key, _, value = entry.partition("\n")
        if key == "core.repositoryformatversion":
            version = value.strip() if value.strip().isdigit() else "0"
        elif key.startswith("extensions."):
            extensions.append((key.removeprefix("extensions."), value))
        elif key.startswith("remote."):
            sub, _, item = key.removeprefix("remote.").rpartition(".")
            if item in ("url", "pushurl"):
                value = _strip_credentials(value)
            remotes.setdefault(sub, []).append((item, value))
    hexlen = 64 if any(k == "objectformat" and v == "sha256" for k, v in extensions) else 40
    lines = ["[core]", f"\trepositoryformatversion = {version}", "\tbare = true"]
    if extensions:
        lines.append("[extensions]")
        lines += [f"\t{k} = {_config_value(v)}" for k, v in extensions]
    return "\n".join(lines) + "\n", hexlen, remotes


def _remote_sections(remotes: dict[str, list[tuple[str, str]]]) -> str:
    out = []
    for sub, items in remotes.items():
        quoted = sub.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'[remote "{quoted}"]')
        out += [f"\t{k} = {_config_value(v)}" for k, v in items]
    return "\n".join(out) + ("\n" if out else "")


_AGENT_CONFIG = """\
[core]
\tlogAllRefUpdates = true
[gc]
\tworktreePruneExpire = never
[repack]
\twriteBitmaps = false
"""


def _snapshot_refs(lay: SessionGit) -> list[tuple[str, str]]:
    proc = lay.git(
        [
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
            "refs/remotes",
        ]
    )
    refs = []
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition(" ")
        if sha and ref:
            refs.append((ref, sha))
    return refs


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)


def _init_bare(path: Path, config: str, alternates: Path) -> None:
    for sub in ("refs/heads", "refs/tags", "objects/pack", "objects/info"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    _write(path / "config", config)
    _write(path / "objects" / "info" / "alternates", f"{alternates}\n")


def build_layout(lay: SessionGit, tip: str, index: Path | None) -> SyncState:
    """Create G, M and the `.git` file for a session whose branch is at `tip`."""
    base_config, hexlen, remotes = _main_config(lay)
    refs = dict(_snapshot_refs(lay))
    refs[f"refs/heads/{lay.branch}"] = tip
    g = lay.git_dir
    _init_bare(
        g, base_config + _AGENT_CONFIG + _remote_sections(remotes), lay.common_dir / "objects"
    )
    _write(g / "HEAD", f"ref: refs/heads/{lay.branch}\n")
    packed = "".join(
        f"{sha} {ref}\n" for ref, sha in sorted(refs.items(), key=lambda r: r[0].encode())
    )
    _write(g / "packed-refs", "# pack-refs with: sorted \n" + packed)
    for extra in ("info/exclude", "shallow"):
        source = lay.common_dir / extra
        if source.is_file() and not source.is_symlink():
            _write(g / extra, source.read_bytes())
    admin = lay.container_admin
    admin.mkdir(parents=True, exist_ok=True)
    _write(admin / "HEAD", f"ref: refs/heads/{lay.branch}\n")
    _write(admin / "commondir", f"{g}\n")
    _write(admin / "gitdir", "/workspace/.git\n")
    if index is not None:
        with _dir(index.parent) as fd:
            if fd is not None:
                _copy_regular(index.name, fd, admin / "index", MAX_INDEX)
    _init_bare(lay.mirror, base_config, lay.common_dir / "objects")
    _write(lay.mirror / "HEAD", f"ref: refs/heads/{lay.branch}\n")
    _write(lay.dotgit, f"gitdir: {lay.admin_dir}\n")
    baseline = {
        ref.removeprefix("refs/heads/"): sha
        for ref, sha in refs.items()
        if ref.startswith("refs/heads/") and ref != f"refs/heads/{lay.branch}"
    }
    return SyncState(tip=tip, hexlen=hexlen, baseline=baseline)


# --- state ----------------------------------------------------------------------------


@dataclass
class SyncState:
    """What the daemon knows of a session's branches (persisted in the store)."""

    tip: str  # refs/heads/<name> as both sides last agreed
    hexlen: int = 40
    baseline: dict[str, str] = field(default_factory=dict)  # G's other branches at start
    agent: dict[str, str] = field(default_factory=dict)  # branches the agent made or moved
    conflicts: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "hexlen": self.hexlen,
                "baseline": self.baseline,
                "agent": self.agent,
                "conflicts": self.conflicts,
            }
        )

    @classmethod
    def from_row(cls, tip: str, data: str) -> SyncState:
        raw = json.loads(data)
        return cls(
            tip=tip,
            hexlen=raw.get("hexlen", 40),
            baseline=raw.get("baseline", {}),
            agent=raw.get("agent", {}),
            conflicts=raw.get("conflicts", []),
        )


@dataclass(frozen=True)
class AgentRefs:
    heads: dict[str, str]  # branch → tip, as G says (loose over packed)
    detached: str | None = None  # the worktree's HEAD, when it is not on a branch


def read_agent_refs(lay: SessionGit, hexlen: int | None = None) -> AgentRefs:
    """G's branches, read as data: no link followed, regular files only, bounded."""
    hex_re = re.compile(rf"[0-9a-f]{{{hexlen}}}" if hexlen else r"[0-9a-f]{40}|[0-9a-f]{64}")
    heads: dict[str, str] = {}
    with _dir(lay.git_dir) as g:
        if g is None:
            return AgentRefs({})
        packed = read_regular("packed-refs", g, MAX_PACKED_REFS)
        if packed:
            for raw in packed.split(b"\n")[: MAX_REFS * 2]:
                if not raw or raw[:1] in (b"#", b"^"):
                    continue
                sha, _, ref = raw.decode(errors="replace").partition(" ")
                name = ref.removeprefix("refs/heads/")
                if ref.startswith("refs/heads/") and hex_re.fullmatch(sha) and valid_branch(name):
                    heads[name] = sha
        with _dir("refs", g) as refs, _dir("heads", refs) if refs is not None else _none() as top:
            if top is not None:
                _walk_loose(top, "", heads, hex_re, [0])
        detached = None
        with (
            _dir("worktrees", g) as wts,
            _dir(lay.worktree_id, wts) if wts is not None else _none() as admin,
        ):
            head = read_regular("HEAD", admin, MAX_REF_FILE) if admin is not None else None
            text = head.decode(errors="replace").strip() if head else ""
            if hex_re.fullmatch(text):
                detached = text
    return AgentRefs(heads, detached)


@contextlib.contextmanager
def _none() -> Iterator[None]:
    yield None


def _walk_loose(
    dir_fd: int, prefix: str, heads: dict[str, str], hex_re: re.Pattern[str], count: list[int]
) -> None:
    if prefix.count("/") > 16:
        return
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            count[0] += 1
            if count[0] > MAX_REFS:
                return
            name = prefix + entry.name
            if entry.name.endswith(".lock"):
                continue
            if entry.is_dir(follow_symlinks=False):
                with _dir(entry.name, dir_fd) as sub:
                    if sub is not None:
                        _walk_loose(sub, name + "/", heads, hex_re, count)
            elif entry.is_file(follow_symlinks=False) and valid_branch(name):
                data = read_regular(entry.name, dir_fd, MAX_REF_FILE)
                sha = data.decode(errors="replace").strip() if data else ""
                if hex_re.fullmatch(sha):
                    heads[name] = sha


def read_host_branch(lay: SessionGit) -> str | None:
    """refs/heads/<name> in the main repository (loose file, else git)."""
    loose = lay.common_dir / "refs" / "heads" / lay.branch
    try:
        text = loose.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text):
            return text
    except OSError:
        pass
    proc = lay.git(["rev-parse", "--verify", "--quiet", f"refs/heads/{lay.branch}"], check=False)
    return proc.stdout.strip() or None


# --- objects --------------------------------------------------------------------------


def copy_objects(lay: SessionGit) -> None:
    """G's loose objects and packs into M, as data (pack indexes rebuilt, never copied)."""
    target = lay.mirror / "objects"
    with _dir(lay.git_dir) as g, _dir("objects", g) if g is not None else _none() as objs:
        if objs is None:
            return
        with os.scandir(objs) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        for name in names:
            if _LOOSE_DIR.fullmatch(name):
                with _dir(name, objs) as sub:
                    if sub is not None:
                        _copy_loose(sub, target / name)
        with _dir("pack", objs) as packs:
            if packs is not None:
                _copy_packs(lay, packs, target / "pack")


def _copy_loose(dir_fd: int, target: Path) -> None:
    with os.scandir(dir_fd) as entries:
        files = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    for name in files:
        if not re.fullmatch(r"[0-9a-f]{38}|[0-9a-f]{62}", name) or (target / name).exists():
            continue
        target.mkdir(exist_ok=True)
        _copy_regular(name, dir_fd, target / name, MAX_OBJECT_FILE)


def _copy_packs(lay: SessionGit, dir_fd: int, target: Path) -> None:
    with os.scandir(dir_fd) as entries:
        packs = [e.name for e in entries if _PACK.fullmatch(e.name)]
    for name in packs:
        pack = target / name
        if pack.with_suffix(".idx").exists():
            continue
        if not _copy_regular(name, dir_fd, pack, MAX_OBJECT_FILE):
            continue
        proc = run_git(
            [*SAFE_OPTS, f"--git-dir={lay.mirror}", "index-pack", str(pack)],
            cwd=lay.mirror,
            check=False,
        )
        if proc.returncode != 0:
            log.warning("%s: ignoring a pack the agent wrote (%s)", lay.name, proc.stderr.strip())
            pack.unlink(missing_ok=True)
            pack.with_suffix(".idx").unlink(missing_ok=True)


def fetch_tips(lay: SessionGit, tips: set[str]) -> set[str]:
    """Bring the objects of `tips` from M into the main repository, each one checked as
    from an untrusted remote. Returns the tips that arrived whole."""
    if not tips:
        return set()
    ordered = sorted(tips)
    packed = "".join(f"{sha} refs/sync/{i}\n" for i, sha in enumerate(ordered))
    (lay.mirror / "packed-refs").write_text("# pack-refs with: sorted \n" + packed)

    def fetch(indexes: list[int]) -> bool:
        proc = lay.git(
            [
                "-c",
                "transfer.fsckObjects=true",
                "-c",
                "fetch.fsckObjects=true",  # the user's own setting would win otherwise
                "-c",
                "gc.auto=0",
                "-c",
                "protocol.file.allow=always",
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-auto-gc",
                "--no-recurse-submodules",
                "--no-auto-maintenance",
                str(lay.mirror),
                *(f"refs/sync/{i}" for i in indexes),
            ],
            check=False,
        )
        if proc.returncode != 0:
            log.info("%s: fetch from the mirror failed: %s", lay.name, proc.stderr.strip())
        return proc.returncode == 0

    everything = list(range(len(ordered)))
    if fetch(everything):
        return set(ordered)
    return {ordered[i] for i in everything if len(ordered) > 1 and fetch([i])}


# --- the sync -------------------------------------------------------------------------


@dataclass
class SyncResult:
    tip: str | None = None  # the session's branch moved on the host to this
    written_back: str | None = None  # the host's tip was written into G
    saved: list[str] = field(default_factory=list)  # refs that keep replaced tips
    conflict: dict[str, str] | None = None
    agent_branches: dict[str, str] | None = None  # when they changed


class GitSync:
    """Per-session git dirs and the sync of their branches into the main repository."""

    def __init__(self, sessions_dir: Path, store: Any) -> None:
        self.sessions_dir = sessions_dir
        self.store = store
        self._seen: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def layout(self, session: Any) -> SessionGit:
        base = self.sessions_dir / session.name
        return SessionGit(
            git_dir=base / "git",
            mirror=base / "mirror",
            dotgit=base / "dotgit",
            common_dir=Path(session.git_common_dir),
            admin_dir=Path(session.git_dir),
            worktree=Path(session.worktree),
            branch=session.branch,
            name=session.name,
        )

    def _lock(self, session_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(session_id, threading.Lock())

    def state(self, session_id: str) -> SyncState | None:
        row = self.store.get_git_sync(session_id)
        return SyncState.from_row(*row) if row else None

    def _save(self, session_id: str, state: SyncState) -> None:
        self.store.put_git_sync(session_id, state.tip, state.to_json())

    def prepare(self, session: Any, tip: str) -> SessionGit:
        """At creation: the session's git dir, mirror and `.git` file."""
        lay = self.layout(session)
        state = build_layout(lay, tip, lay.admin_dir / "index")
        self._save(session.id, state)
        return lay

    def ensure(self, session: Any) -> SessionGit:
        """Before a container is (re)created: a session made before per-session git dirs
        moves to them now, from its branch as the main repository has it."""
        lay = self.layout(session)
        if lay.git_dir.is_dir() and self.state(session.id) is not None:
            return lay
        with self._lock(session.id):
            tip = read_host_branch(lay) or session.base_commit
            self._repair_admin_dir(lay)
            remove_tree(lay.git_dir)  # possibly written by an old container: read-only
            remove_tree(lay.mirror)  # directories included, links never followed
            # The old admin dir was the agent's: its index is copied as data for the
            # container; the host's is rebuilt from the branch.
            state = build_layout(lay, tip, lay.admin_dir / "index")
            self._reset_host_index(lay, tip)
            self._save(session.id, state)
            self._seen.pop(session.id, None)
        return lay

    def _repair_admin_dir(self, lay: SessionGit) -> None:
        """What git needs in the host admin dir and the worktree's `.git` file, rewritten
        (an older layout let the agent write them)."""
        with _dir(lay.admin_dir) as admin:
            if admin is None:
                raise GitError(f"the worktree's git dir {lay.admin_dir} is missing")
            for name, text in (
                ("HEAD", f"ref: refs/heads/{lay.branch}\n"),
                ("commondir", "../..\n"),
                ("gitdir", f"{lay.worktree / '.git'}\n"),
            ):
                with contextlib.suppress(OSError):
                    os.unlink(f"{name}.lock", dir_fd=admin)
                if not _write_locked(admin, name, text.encode()):
                    raise GitError(f"cannot rewrite {lay.admin_dir / name}")
        with _dir(lay.worktree) as root:
            if root is not None:
                with contextlib.suppress(OSError):
                    os.unlink(".git.lock", dir_fd=root)
                _write_locked(root, ".git", f"gitdir: {lay.admin_dir}\n".encode())

    def _reset_host_index(self, lay: SessionGit, tip: str, old: str | None = None) -> None:
        """The host's index of the worktree at `tip` (so `git status` there stays right);
        from `old`, a two-tree merge keeps the stat data of unchanged files."""
        env = {"GIT_INDEX_FILE": str(lay.admin_dir / "index")}
        if old and lay.git(["read-tree", "-m", old, tip], env=env, check=False).returncode == 0:
            return
        lay.git(["read-tree", tip], env=env)

    def forget(self, session_id: str) -> None:
        self._seen.pop(session_id, None)
        self.store.delete_git_sync(session_id)

    def sync(self, session: Any, force: bool = False) -> SyncResult | None:
        """Bring the agent's commits to the main repository (and the user's host commits
        into G). Cheap when nothing changed since the last call. Rules:

        - the session's branch moved inside only: the host's follows; a tip it replaces
          that the new one does not contain is kept under refs/clauderon/<name>/replaced/;
        - moved on the host only (the user committed in the worktree): G's follows, and
          the container's index is refreshed from the host's;
        - moved on both: the agent's tip wins, the host's is kept under
          refs/clauderon/<name>/conflict/ and reported;
        - any other branch the agent creates or moves: refs/clauderon/<name>/branches/<b>.
        """
        lay = self.layout(session)
        if not lay.git_dir.is_dir() or not lay.common_dir.is_dir():
            return None  # an older layout (until its container is recreated), or no repo
        with self._lock(session.id):
            agent = read_agent_refs(lay)
            host_tip = read_host_branch(lay)
            fingerprint = (tuple(sorted(agent.heads.items())), agent.detached, host_tip)
            if not force and self._seen.get(session.id) == fingerprint:
                return None  # the common case: a few file reads, no git, no store
            state = self.state(session.id)
            if state is None:
                return None
            agent = read_agent_refs(lay, state.hexlen)
            try:
                result = self._apply(session.id, lay, state, agent, host_tip)
            except Exception:
                # Said once (the caller logs it); tried again when something changes.
                self._seen[session.id] = fingerprint
                raise
            if result is not False:
                self._seen[session.id] = fingerprint
            return result if isinstance(result, SyncResult) else None

    def _is_ancestor(self, lay: SessionGit, old: str, new: str) -> bool:
        if old == new:
            return True
        proc = lay.git(["merge-base", "--is-ancestor", old, new], check=False)
        return proc.returncode == 0

    def _apply(
        self,
        session_id: str,
        lay: SessionGit,
        state: SyncState,
        agent: AgentRefs,
        host_tip: str | None,
    ) -> SyncResult | bool:
        """False: try again later (a ref moved meanwhile, or a lock was held)."""
        branch, tip = lay.branch, state.tip
        agent_tip = agent.heads.get(branch)
        agent_moved = agent_tip is not None and agent_tip != tip
        host_moved = host_tip is not None and host_tip != tip
        others = _agent_branches(agent.heads, branch, state.baseline)
        known = {tip, *agent.heads.values(), *state.baseline.values()}
        if agent.detached and agent.detached not in known:
            # Commits on a detached HEAD inside: kept like a branch named HEAD.
            others[DETACHED] = agent.detached
        if not agent_moved and not host_moved and others == state.agent:
            return True
        wanted = {s for b, s in others.items() if state.agent.get(b) != s}
        if agent_tip is not None and agent_moved:
            wanted.add(agent_tip)
        arrived: set[str] = set()
        if wanted:
            copy_objects(lay)
            arrived = fetch_tips(lay, wanted)
        result = SyncResult()
        lines: list[str] = []
        saved: dict[str, str] = {}  # sha → ref
        stamp = _stamp()
        prefix = f"refs/clauderon/{lay.name}"

        def keep(sha: str, kind: str) -> str:
            ref = saved.get(sha) or f"{prefix}/{kind}/{stamp}-{sha[:12]}"
            saved[sha] = ref
            return ref

        # (host_tip/agent_tip are not None when host_moved/agent_moved: said again for
        # the type checker, which does not follow the flags)
        new_tip, write_back = tip, None
        if agent_tip is not None and agent_moved and agent_tip in arrived:
            if host_tip is not None and host_moved and self._is_ancestor(lay, agent_tip, host_tip):
                write_back = new_tip = host_tip
            else:
                if (
                    host_tip is not None
                    and host_moved
                    and not self._is_ancestor(lay, host_tip, agent_tip)
                ):
                    ref = keep(host_tip, "conflict")
                    result.conflict = {
                        "ref": ref,
                        "host_tip": host_tip,
                        "agent_tip": agent_tip,
                        "at": stamp,
                    }
                elif not host_moved and not self._is_ancestor(lay, tip, agent_tip):
                    keep(tip, "replaced")
                expected = host_tip or "0" * state.hexlen
                lines.append(f"update refs/heads/{branch} {agent_tip} {expected}")
                new_tip = result.tip = agent_tip
        elif host_tip is not None and host_moved:
            write_back = new_tip = host_tip
        elif agent_moved:
            log.warning("%s: the agent's branch tip %s did not arrive whole", lay.name, agent_tip)

        mirrored = dict(state.agent)
        updates, deletes = [], []
        for name, sha in others.items():
            old = state.agent.get(name)
            if old == sha or sha not in arrived:
                continue
            if old and not self._is_ancestor(lay, old, sha):
                keep(old, "replaced")
            updates.append((name, sha))
        for name, old in state.agent.items():
            if name in others:
                continue
            if not self._is_ancestor(lay, old, new_tip):
                keep(old, "replaced")
            deletes.append(name)
        lines += [f"update {ref} {sha}" for sha, ref in saved.items()]
        result.saved = sorted(saved.values())

        # The session's branch and the kept tips first, all or nothing; then the agent's
        # branches (deleted before they are written, as `a` may become `a/b`), which
        # can never hold the session's branch back.
        if lines and not _update_refs(lay, lines):
            return False
        if deletes and _update_refs(lay, [f"delete {prefix}/branches/{n}" for n in deletes]):
            for name in deletes:
                mirrored.pop(name)
        if updates and _update_refs(
            lay, [f"update {prefix}/branches/{n} {sha}" for n, sha in updates]
        ):
            mirrored.update(updates)
        if result.tip:
            self._reset_host_index(lay, result.tip, host_tip)
        if write_back:
            if not self._write_back(lay, agent_tip, write_back):
                return False
            result.written_back = write_back
        if mirrored != state.agent:
            result.agent_branches = mirrored
        if result.conflict:
            state.conflicts.append(result.conflict)
        if new_tip != tip and state.conflicts:
            state.conflicts = [  # merged into the branch, or its ref deleted: settled
                c
                for c in state.conflicts
                if not self._is_ancestor(lay, c["host_tip"], new_tip)
                and lay.git(["rev-parse", "--verify", "--quiet", c["ref"]], check=False).stdout
            ]
        state.tip, state.agent = new_tip, mirrored
        self._save(session_id, state)
        return result

    def _write_back(self, lay: SessionGit, expect: str | None, tip: str) -> bool:
        """The host's tip into G's branch (and the host's index into the container's)."""
        with _dir(lay.git_dir) as g, _dir("refs", g) if g is not None else _none() as refs:
            if refs is None:
                return False
            with contextlib.suppress(OSError):
                os.mkdir("heads", 0o755, dir_fd=refs)
            with _dir("heads", refs) as heads:
                if heads is None:
                    return False
                current = read_regular(lay.branch, heads, MAX_REF_FILE)
                if current is not None and expect and current.strip() != expect.encode():
                    return False
                data = f"{tip}\n".encode()
                if not _write_locked(heads, lay.branch, data, expect=current, check=True):
                    return False
            with (
                _dir("worktrees", g) as wts,
                _dir(lay.worktree_id, wts) if wts is not None else _none() as admin,
            ):
                head = read_regular("HEAD", admin, MAX_REF_FILE) if admin is not None else None
                if admin is not None and head == f"ref: refs/heads/{lay.branch}\n".encode():
                    index = lay.admin_dir / "index"
                    if index.is_file():
                        _write_locked(admin, "index", index.read_bytes())
        return True


def _update_refs(lay: SessionGit, lines: list[str]) -> bool:
    with REPO_LOCK:  # with clauderon's other changes to the repository (deletes, saves)
        return _update_refs_locked(lay, lines)


def _update_refs_locked(lay: SessionGit, lines: list[str]) -> bool:
    proc = subprocess.run(
        [
            "git",
            *SAFE_OPTS,
            f"--git-dir={lay.common_dir}",
            "update-ref",
            "-m",
            f"clauderon: sync of session {lay.name}",
            "--stdin",
        ],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        cwd=lay.common_dir,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"},
        check=False,
    )
    if proc.returncode != 0:
        log.info("%s: ref update refused (%s); trying again later", lay.name, proc.stderr.strip())
    return proc.returncode == 0


def _agent_branches(heads: dict[str, str], branch: str, baseline: dict[str, str]) -> dict[str, str]:
    """Branches other than the session's that the agent created or moved (bounded, and
    never one that is a prefix directory of another: git could not store both)."""
    found = {b: s for b, s in heads.items() if b not in (branch, DETACHED) and baseline.get(b) != s}
    names = sorted(found)[:MAX_AGENT_BRANCHES]
    kept: dict[str, str] = {}
    for name in names:
        if any(name.startswith(k + "/") for k in kept):
            continue
        kept[name] = found[name]
    return kept


def unsaved_agent_branches(lay: SessionGit, branches: dict[str, str]) -> list[str]:
    """Agent branches holding commits that no user branch, tag or remote has (the
    session's own branch does not count: it is about to go)."""
    out = []
    for name in sorted(branches):
        ref = f"refs/clauderon/{lay.name}/branches/{name}"
        proc = lay.git(
            [
                "rev-list",
                "-n1",
                ref,
                "--not",
                f"--exclude=refs/heads/{lay.branch}",
                "--branches",
                "--tags",
                "--remotes",
            ],
            check=False,
        )
        if proc.returncode != 0 or proc.stdout.strip():
            out.append(name)
    return out
