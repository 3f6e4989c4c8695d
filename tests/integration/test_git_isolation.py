"""The agent cannot harm the user's repository (issue 7), on the real engine.

One session is attacked from inside (as the agent's user, in /workspace) with everything
that used to reach the main repository; a second session stands by. The attacks plant
code that would leave a marker in a host directory no container sees, then every
host-side command runs. Afterwards the main repository is as it was, but for the
attacked session's own branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from clauderon.client import Client

from .conftest import AGENTS_IMAGE, Clauderon, exec_in, git, wait_for

pytestmark = pytest.mark.docker

QUIET = ("--image", AGENTS_IMAGE, "--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")


def make_repo(root: Path) -> Path:
    root.mkdir()
    git("init", "-q", "-b", "main", cwd=root)
    git("config", "user.email", "dev@example.com", cwd=root)
    git("config", "user.name", "Dev Eloper", cwd=root)
    git("remote", "add", "origin", "https://user:s3cret-token@example.com/project.git", cwd=root)
    for i in range(3):
        (root / f"f{i}.txt").write_text(f"{i}\n")
        git("add", ".", cwd=root)
        git("commit", "-qm", f"commit {i}", cwd=root)
    git("branch", "feature", cwd=root)
    git("tag", "v1", cwd=root)
    git("tag", "-a", "v2", "-m", "annotated", cwd=root)
    return root


def host_state(repo: Path, exclude: str) -> dict[str, str]:
    """Every ref but the session's own (and clauderon's hidden ones), HEAD and the index."""
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo).splitlines()
    state = {
        ref: sha
        for ref, sha in (line.split() for line in refs)
        if ref != f"refs/heads/{exclude}" and not ref.startswith("refs/clauderon/")
    }
    state["HEAD"] = (repo / ".git" / "HEAD").read_text()
    state["index"] = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    state["config"] = (repo / ".git" / "config").read_text()
    return state


def git_dir_digest(path: Path) -> str:
    """A session git dir's refs, config, HEAD and objects (not its index: the agent's own
    git may refresh it)."""
    digest = hashlib.sha256()
    for part in ("HEAD", "config", "packed-refs", "refs", "objects", "worktrees/*/HEAD"):
        for item in sorted(path.glob(part)):
            files = [item] if item.is_file() else sorted(item.rglob("*"))
            for f in files:
                if f.is_file() and not f.is_symlink():
                    digest.update(str(f.relative_to(path)).encode() + f.read_bytes())
    return digest.hexdigest()


def worktree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for name in git("ls-files", cwd=path).splitlines():
        digest.update(name.encode() + (path / name).read_bytes())
    return digest.hexdigest() + git("status", "--porcelain", "--untracked-files=no", cwd=path)


class Rig:
    def __init__(self, base: Path, clauderon: Clauderon):
        self.base = base
        self.clauderon = clauderon
        self.repo = make_repo(base / "repo")
        self.markers = base / "markers"  # a host directory no container sees
        self.markers.mkdir()
        self.attacked = clauderon.create(self.repo, "--name", "attacked", *QUIET)
        self.bystander = clauderon.create(self.repo, "--name", "bystander", *QUIET)
        self.container = clauderon.container(self.attacked)
        self.common = (self.repo / ".git").resolve()

    def inside(self, command: str) -> tuple[int, str]:
        return exec_in(self.container, command)

    def head_inside(self) -> str:
        code, out = self.inside("git rev-parse HEAD")
        assert code == 0, out
        return out.strip()

    def host_tip(self, branch: str = "attacked") -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.repo)

    def hidden(self, prefix: str) -> dict[str, str]:
        out = git("for-each-ref", "--format=%(refname) %(objectname)", prefix, cwd=self.repo)
        return dict(line.split() for line in out.splitlines())


@pytest.fixture(scope="module")
def rig(tmp_path_factory, docker_client):
    base = tmp_path_factory.mktemp("git-isolation")
    clauderon = Clauderon(base / "home", docker_client)
    try:
        yield Rig(base, clauderon)
    finally:
        clauderon.cleanup()


def test_nothing_of_the_main_git_dir_is_writable_inside(rig):
    mounts = {m["Destination"]: m for m in rig.container.attrs["Mounts"]}
    session_git = str(rig.clauderon.paths.sessions / "attacked" / "git")
    main = {d: m["RW"] for d, m in mounts.items() if m["Source"].startswith(str(rig.common))}
    assert main == {f"{rig.common}/objects": False}
    assert mounts[session_git]["RW"] is True
    assert mounts["/workspace/.git"]["RW"] is False
    # The session's config has the remotes (without credentials) and the format.
    code, out = rig.inside("git remote -v; git config --get core.repositoryformatversion")
    assert code == 0, out
    assert "https://example.com/project.git" in out and "s3cret" not in out


def test_normal_git_works_inside_and_comes_back(rig):
    history = git("rev-list", "--count", "main", cwd=rig.repo)
    code, out = rig.inside(
        "set -e; git status --short; git diff; test $(git log --oneline | wc -l) = "
        f"{history}; git branch -a | grep -q feature; git tag | grep -q v2; "
        "echo a > a.txt; git add a.txt; git commit -qm one; git rev-parse HEAD"
    )
    assert code == 0, out
    first = out.split()[-1]
    wait_for(lambda: rig.host_tip() == first)
    assert git("log", "--format=%s", "-1", "attacked", cwd=rig.repo) == "one"
    assert git("diff", "--stat", "main...attacked", cwd=rig.repo).startswith("a.txt")

    code, out = rig.inside("git commit -q --amend -m 'one, amended' && git rev-parse HEAD")
    assert code == 0, out
    amended = out.strip()
    wait_for(lambda: rig.host_tip() == amended)
    assert first in rig.hidden("refs/clauderon/attacked/replaced").values()

    code, out = rig.inside(
        "set -e; for f in b c d; do echo $f > $f.txt; git add $f.txt; git commit -qm $f; done; "
        "GIT_SEQUENCE_EDITOR=\"sed -i '2s/^pick/fixup/'\" git rebase -q -i HEAD~3; "
        "echo dirty >> a.txt; git stash -q; git stash list | grep -q .; git stash pop -q; "
        "git checkout -q -- a.txt; git checkout -q -b side; git checkout -q attacked; "
        "git branch -D -q side; git reset -q HEAD; git gc -q; git status --short; "
        "git log --format=%s"
    )
    assert code == 0, out
    assert out.split()[:3] == ["d", "b", "one,"], out
    rebased = rig.head_inside()
    wait_for(lambda: rig.host_tip() == rebased)
    assert git("fsck", "--no-dangling", cwd=rig.repo) == ""


def test_a_host_commit_in_the_worktree_reaches_the_agent(rig):
    worktree = Path(rig.attacked["worktree"])
    (worktree / "host.txt").write_text("from the host\n")
    git("add", "host.txt", cwd=worktree)
    git("commit", "-qm", "host commit", cwd=worktree)
    tip = rig.host_tip()
    wait_for(lambda: rig.head_inside() == tip)
    code, out = rig.inside("git status --porcelain --untracked-files=no")
    assert code == 0 and out.strip() == "", out
    assert "worktrees/attacked" in git("worktree", "list", cwd=rig.repo)


def test_the_attacks_change_nothing_of_the_users_repository(rig):
    clauderon, repo, common = rig.clauderon, rig.repo, rig.common
    before = host_state(repo, "attacked")
    bystander_git = clauderon.paths.sessions / "bystander" / "git"
    bystander_before = (
        rig.host_tip("bystander"),
        git_dir_digest(bystander_git),
        worktree_digest(Path(rig.bystander["worktree"])),
    )
    session_git = clauderon.paths.sessions / "attacked" / "git"
    admin = f"{common}/worktrees/attacked"
    hook = f"#!/bin/sh\ntouch {rig.markers}/ran-$(basename $0)-$$\n"
    attacks = [
        "git update-ref refs/heads/main HEAD",
        "git branch -D feature",
        "git tag -d v1",
        "git reflog expire --expire=now --all",
        "git gc --prune=now",
        f"git push {repo} HEAD:main",
        f"git push {common} HEAD:main",
        f"echo garbage > {common}/HEAD",
        f"echo garbage > {common}/index",
        f"echo garbage > {common}/packed-refs",
        f"rm -rf {common}/objects/??",
        f"echo {session_git}/evil > {common}/commondir",
        f"echo garbage > {common}/worktrees/bystander/HEAD",
        f"echo garbage > {bystander_git}/HEAD",
        f"rm -rf {bystander_git}/objects",
        "git worktree prune",
        # The session's own git dir: planted code that the host must never run.
        f"mkdir -p {session_git}/evil/hooks {session_git}/hooks",
        *(
            f"printf '{hook}' > {session_git}/{d}/{h} && chmod +x {session_git}/{d}/{h}"
            for d in ("evil/hooks", "hooks")
            for h in (
                "reference-transaction",
                "post-checkout",
                "pre-commit",
                "post-index-change",
                "fsmonitor",
                "filter",
                "ssh",
            )
        ),
        f"printf '[core]\\n\\thooksPath = {session_git}/evil/hooks\\n' >> {session_git}/config",
        f"printf '\\tfsmonitor = {session_git}/hooks/fsmonitor\\n' >> {session_git}/config",
        f"printf '\\tsshCommand = {session_git}/hooks/ssh\\n' >> {session_git}/config",
        f'printf \'[filter "x"]\\n\\tclean = {session_git}/hooks/filter\\n'
        f"\\tsmudge = {session_git}/hooks/filter\\n\\tprocess = {session_git}/hooks/filter\\n'"
        f" >> {session_git}/config",
        "printf '* filter=x\\n' > .gitattributes",
        f"cp -r {session_git}/config {session_git}/evil/config",
        f"sed -i 's/^[0-9a-f]* refs.heads.main$/0000000000000000000000000000000000000000 "
        f"refs\\/heads\\/main/' {session_git}/packed-refs",
        f"echo / > {session_git}/objects/info/alternates",
        "echo x > x.txt && git add x.txt && git commit -qm 'planted' || true",
        f"echo {session_git}/evil > {admin}/commondir",
        f"echo {session_git}/evil > {session_git}/commondir",
        "echo 'gitdir: /tmp' > .git",
        f"echo garbage > {session_git}/HEAD",
        f"echo garbage > {admin}/index",
        f"rm -rf {session_git}/objects/??",
    ]
    for attack in attacks:
        rig.inside(attack)  # most of them fail; what matters is what they changed
    # Every host-side command, with all of that planted.
    clauderon.run("list")
    third = clauderon.create(repo, "--name", "third", *QUIET)
    clauderon.run("refresh", "attacked")
    clauderon.run("reconcile")
    clauderon.run("list", "--json")
    clauderon.run("delete", "third")
    fourth = clauderon.create(repo, "--name", "fourth", *QUIET)
    (Path(fourth["worktree"]) / "w.txt").write_text("work\n")
    assert clauderon.run("delete", "fourth", check=False).code != 0
    clauderon.run("delete", "--force", "fourth")
    assert clauderon.run("delete", "attacked", check=False).code != 0
    assert third

    assert sorted(p.name for p in rig.markers.iterdir()) == []
    assert host_state(repo, "attacked") == before
    assert git("fsck", "--no-dangling", cwd=repo) == ""
    assert git("status", "--porcelain", cwd=repo) == ""
    assert bystander_before == (
        rig.host_tip("bystander"),
        git_dir_digest(bystander_git),
        worktree_digest(Path(rig.bystander["worktree"])),
    )
    worktrees = git("worktree", "list", "--porcelain", cwd=repo)
    assert "worktrees/attacked" in worktrees and "worktrees/bystander" in worktrees
    # The edited packed-refs came back as the agent's branch, not as the user's main.
    assert "refs/clauderon/attacked/branches/main" not in before
    clauderon.run("delete", "--force", "attacked")
    assert sorted(p.name for p in rig.markers.iterdir()) == []
    assert host_state(repo, "attacked") == before
    assert git("fsck", "--no-dangling", cwd=repo) == ""


def test_agent_branches_count_as_work(rig):
    clauderon, repo = rig.clauderon, rig.repo
    session = clauderon.create(repo, "--name", "brancher", *QUIET)
    container = clauderon.container(session)
    code, out = exec_in(
        container,
        "set -e; git checkout -q -b idea; echo i > i.txt; git add i.txt; "
        "git commit -qm idea; git checkout -q brancher; git rev-parse idea",
    )
    assert code == 0, out
    idea = out.strip()
    listed = wait_for(
        lambda: next(
            (s for s in clauderon.sessions() if s["name"] == "brancher" and s["agent_branches"]),
            None,
        )
    )
    assert listed["agent_branches"] == ["idea"]
    refused = clauderon.run("delete", "brancher", check=False)
    assert refused.code != 0 and "branch(es) of the agent (idea)" in refused.stderr
    done = clauderon.run("delete", "--force", "brancher")
    assert "refs/clauderon/brancher/branches/idea" in done.stdout
    assert git("rev-parse", "refs/clauderon/brancher/branches/idea", cwd=repo) == idea


def test_both_sides_committing_keeps_both_and_reports(rig, tmp_path, docker_client):
    # A daemon that syncs only when asked, so both sides move before it looks.
    clauderon = Clauderon(tmp_path / "home", docker_client)
    clauderon.configure(CLAUDERON_SYNC_INTERVAL="3600")
    try:
        session = clauderon.create(rig.repo, "--name", "both", *QUIET)
        container = clauderon.container(session)
        code, out = exec_in(
            container,
            "echo a > a.txt && git add a.txt && git commit -qm agent && git rev-parse HEAD",
        )
        assert code == 0, out
        agent_tip = out.strip()
        worktree = Path(session["worktree"])
        (worktree / "h.txt").write_text("host\n")
        git("add", "h.txt", cwd=worktree)
        git("commit", "-qm", "host", "--", "h.txt", cwd=worktree)
        host_tip = git("rev-parse", "both", cwd=rig.repo)
        events: list[dict] = []
        with Client(paths=clauderon.paths).websocket("/ws/events") as ws:

            def listen() -> None:
                for message in ws:
                    events.append(json.loads(message))
                    if events[-1]["type"] == "branch_conflict":
                        return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            # delete brings the branch up to date first, then refuses (there is work).
            assert clauderon.run("delete", "both", check=False).code != 0
            listener.join(30)
        conflict = next(e for e in events if e["type"] == "branch_conflict")
        assert conflict["host_tip"] == host_tip and conflict["agent_tip"] == agent_tip
        assert git("rev-parse", "both", cwd=rig.repo) == agent_tip
        assert git("rev-parse", conflict["ref"], cwd=rig.repo) == host_tip
        listed = clauderon.run("list")
        assert "yours is kept as" in listed.stderr
        clauderon.run("delete", "--force", "both")
        for sha in (agent_tip, host_tip):
            contained = subprocess.run(
                ["git", "for-each-ref", "--contains", sha, "refs/clauderon/both"],
                cwd=rig.repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert contained.strip(), sha
    finally:
        clauderon.cleanup()


def test_a_session_of_the_old_layout_moves_when_recreated(rig):
    clauderon, repo = rig.clauderon, rig.repo
    session = clauderon.create(repo, "--name", "legacy", *QUIET)
    clauderon.run("archive", "legacy")
    # What an earlier clauderon left: no session git dir, and an admin dir the agent wrote.
    session_dir = clauderon.paths.sessions / "legacy"
    for part in ("git", "mirror", "dotgit"):
        path = session_dir / part
        subprocess.run(["rm", "-rf", str(path)], check=True)
    with contextlib.closing(sqlite3.connect(clauderon.paths.db)) as db, db:
        db.execute("DELETE FROM git_sync WHERE session_id = ?", (session["id"],))
    worktree = Path(session["worktree"])
    (worktree / "old.txt").write_text("old\n")
    git("add", "old.txt", cwd=worktree)
    git("-c", "core.hooksPath=/dev/null", "commit", "-qm", "made before", cwd=worktree)
    admin = rig.common / "worktrees" / "legacy"
    (admin / "commondir").write_text("/nowhere\n")
    before = git("rev-parse", "legacy", cwd=repo)

    clauderon.run("unarchive", "legacy")
    container = clauderon.container(session)
    code, out = exec_in(
        container,
        "set -e; test \"$(git log --format=%s -1)\" = 'made before'; "
        "echo n > new.txt; git add new.txt; git commit -qm after; git rev-parse HEAD",
    )
    assert code == 0, out
    wait_for(lambda: git("rev-parse", "legacy", cwd=repo) == out.strip())
    assert git("rev-parse", "legacy^", cwd=repo) == before
    assert (admin / "commondir").read_text() == "../..\n"
    clauderon.run("delete", "--force", "legacy")
