"""The sync rules of per-session git dirs, on plain local repositories (no Docker): the
"agent" is git run with the session's own git dir, as inside the container."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from clauderon import git as cgit
from clauderon.gitsync import GitSync, read_agent_refs, valid_branch
from clauderon.store import Store

from .conftest import git


class Rig:
    def __init__(self, repo: Path, tmp: Path, name: str = "s1"):
        self.repo = repo
        info = cgit.resolve_repo(str(repo))
        worktree = tmp / "worktrees" / name
        admin = cgit.add_worktree(info.root, worktree, name, info.head)
        self.session = SimpleNamespace(
            id=f"id-{name}",
            name=name,
            branch=name,
            git_common_dir=str(info.common_dir),
            git_dir=str(admin),
            worktree=str(worktree),
            base_commit=info.head,
        )
        self.store = Store(tmp / f"db-{name}.sqlite")
        self.sync = GitSync(tmp / "sessions", self.store)
        self.lay = self.sync.prepare(self.session, info.head)
        self.worktree = worktree

    def agent(self, *args: str, check: bool = True) -> str:
        """git as the agent runs it inside: its own git dir, hooks and all."""
        env = {
            **os.environ,
            "GIT_DIR": str(self.lay.container_admin),
            "GIT_WORK_TREE": str(self.worktree),
            "GIT_AUTHOR_NAME": "agent",
            "GIT_AUTHOR_EMAIL": "a@x",
            "GIT_COMMITTER_NAME": "agent",
            "GIT_COMMITTER_EMAIL": "a@x",
        }
        proc = subprocess.run(
            ["git", *args], cwd=self.worktree, env=env, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"agent git {args}: {proc.stderr}")
        return proc.stdout.strip()

    def commit(self, message: str, file: str = "work.txt") -> str:
        (self.worktree / file).write_text(message + "\n")
        self.agent("add", file)
        self.agent("commit", "-qm", message)
        return self.agent("rev-parse", "HEAD")

    def host(self, *args: str) -> str:
        return git(*args, cwd=self.repo)

    def refs(self, pattern: str = "refs/") -> dict[str, str]:
        out = self.host("for-each-ref", "--format=%(refname) %(objectname)", pattern)
        return dict(line.split() for line in out.splitlines())


@pytest.fixture
def rig(repo: Path, tmp_path: Path) -> Rig:
    git("branch", "other", cwd=repo)
    git("tag", "v1", cwd=repo)
    return Rig(repo, tmp_path)


def test_the_agent_sees_the_whole_repository_and_git_works(rig):
    assert rig.agent("status", "--porcelain") == ""
    assert rig.agent("rev-parse", "--abbrev-ref", "HEAD") == "s1"
    assert set(rig.agent("branch", "--format=%(refname:short)").split()) >= {"main", "other"}
    assert rig.agent("tag") == "v1"
    assert rig.agent("log", "--format=%s") == "init"
    assert rig.sync.sync(rig.session) is None  # nothing to do


def test_a_commit_inside_reaches_the_host_branch(rig):
    before = rig.refs()
    tip = rig.commit("agent work")
    result = rig.sync.sync(rig.session)
    assert result is not None and result.tip == tip
    assert rig.host("rev-parse", "s1") == tip
    assert rig.host("log", "--format=%s", "-1", "s1") == "agent work"
    assert rig.host("fsck", "--no-dangling") == ""
    # Nothing else moved; the host's index follows the branch.
    after = rig.refs()
    assert {k: v for k, v in after.items() if k != "refs/heads/s1"} == {
        k: v for k, v in before.items() if k != "refs/heads/s1"
    }
    assert git("status", "--porcelain", cwd=rig.worktree) == ""
    assert rig.sync.sync(rig.session) is None


def test_an_amend_is_followed_and_the_old_tip_kept(rig):
    first = rig.commit("one")
    rig.sync.sync(rig.session)
    rig.agent("commit", "-q", "--amend", "-m", "one, amended")
    amended = rig.agent("rev-parse", "HEAD")
    result = rig.sync.sync(rig.session)
    assert rig.host("rev-parse", "s1") == amended
    kept = [r for r, sha in rig.refs("refs/clauderon/s1/replaced").items() if sha == first]
    assert kept and result.saved == kept


def test_a_fast_forward_keeps_nothing_extra(rig):
    rig.commit("one")
    rig.sync.sync(rig.session)
    rig.commit("two", "two.txt")
    rig.sync.sync(rig.session)
    assert rig.refs("refs/clauderon") == {}


def test_a_host_commit_goes_into_the_session(rig):
    (rig.worktree / "host.txt").write_text("from the host\n")
    git("add", "host.txt", cwd=rig.worktree)
    git("commit", "-qm", "host work", cwd=rig.worktree)
    host_tip = rig.host("rev-parse", "s1")
    result = rig.sync.sync(rig.session)
    assert result.written_back == host_tip
    assert rig.agent("rev-parse", "HEAD") == host_tip
    assert rig.agent("status", "--porcelain") == ""
    # The agent builds on it, and that comes back.
    tip = rig.commit("after the host")
    rig.sync.sync(rig.session)
    assert rig.host("rev-parse", "s1^") == host_tip and rig.host("rev-parse", "s1") == tip


def test_both_moving_keeps_both_and_reports(rig):
    agent_tip = rig.commit("agent side", "a.txt")
    rig.host(
        "update-ref",
        "refs/heads/s1",
        rig.host("commit-tree", "-p", "s1", "-m", "host side", "s1^{tree}"),
    )
    host_tip = rig.host("rev-parse", "s1")
    result = rig.sync.sync(rig.session)
    assert result.conflict is not None and result.conflict["host_tip"] == host_tip
    assert rig.host("rev-parse", "s1") == agent_tip  # the agent wins
    assert rig.host("rev-parse", result.conflict["ref"]) == host_tip  # the user's is kept
    state = rig.sync.state(rig.session.id)
    assert state.conflicts and state.conflicts[0]["ref"] == result.conflict["ref"]


def test_agent_branches_come_back_under_hidden_refs(rig):
    rig.agent("checkout", "-q", "-b", "idea")
    idea = rig.commit("an idea", "idea.txt")
    rig.agent("checkout", "-q", "s1")
    rig.agent("branch", "-f", "main", idea)  # moving the user's branch inside
    result = rig.sync.sync(rig.session)
    assert result.agent_branches == {"idea": idea, "main": idea}
    assert rig.refs("refs/clauderon/s1/branches") == {
        "refs/clauderon/s1/branches/idea": idea,
        "refs/clauderon/s1/branches/main": idea,
    }
    assert rig.host("rev-parse", "main") != idea  # the user's main never moves
    # Deleted inside: its commits stay reachable.
    rig.agent("branch", "-D", "idea")
    rig.agent("branch", "-f", "main", rig.host("rev-parse", "main"))
    rig.sync.sync(rig.session)
    assert rig.refs("refs/clauderon/s1/branches") == {}
    assert idea in rig.refs("refs/clauderon/s1/replaced").values()


def test_garbage_in_the_session_git_dir_is_ignored(rig, tmp_path):
    g = rig.lay.git_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("0" * 40 + "\n")
    (g / "refs" / "heads" / "link").symlink_to(outside / "secret")
    (g / "refs" / "heads" / "bad name").write_text("0" * 40 + "\n")
    (g / "refs" / "heads" / "notsha").write_text("hello\n")
    os.mkfifo(g / "refs" / "heads" / "fifo")
    refs = read_agent_refs(rig.lay, 40)
    assert set(refs.heads) == {"main", "other", "s1"}
    (g / "packed-refs").unlink()
    (g / "packed-refs").symlink_to(outside / "secret")
    assert read_agent_refs(rig.lay, 40).heads == {}


def test_code_planted_in_the_session_git_dir_never_runs_on_the_host(rig, tmp_path):
    marker = tmp_path / "pwned"
    g = rig.lay.git_dir
    hook = f"#!/bin/sh\ntouch {marker}\n"
    hooks = g / "evil-hooks"
    hooks.mkdir()
    for name in ("reference-transaction", "post-checkout", "pre-commit", "post-index-change"):
        (hooks / name).write_text(hook)
        (hooks / name).chmod(0o755)
    evil = tmp_path / "evil-common"
    evil.mkdir()
    rig.commit("work")
    with (g / "config").open("a") as config:
        config.write(
            f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = {hooks}/reference-transaction\n"
            f"\tsshCommand = {hooks}/reference-transaction\n"
            f'[filter "x"]\n\tclean = {hooks}/reference-transaction\n'
            f"\tsmudge = {hooks}/reference-transaction\n"
        )
    (rig.worktree / ".gitattributes").write_text("* filter=x\n")
    (g / "commondir").write_text(f"{evil}\n")
    (g / "objects" / "info" / "alternates").write_text("/\n")
    marker.unlink(missing_ok=True)  # the agent's own git ran its hooks: that is allowed
    result = rig.sync.sync(rig.session)
    assert result is not None and result.tip
    git("status", "--porcelain", cwd=rig.worktree)  # the user's host git, in the worktree
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("main", True),
        ("feat/x", True),
        ("a..b", False),
        ("-x", True),
        ("x.lock", False),
        ("a b", False),
        (".hidden", False),
        ("x/", False),
        ("@", False),
        ("a@{1}", False),
        ("caf\udce9", False),
        ("\x9b31m", False),
        ("été", True),
    ],
)
def test_branch_names(name, ok):
    assert valid_branch(name) is ok


def test_the_state_survives_a_restart(rig):
    rig.commit("one")
    rig.sync.sync(rig.session)
    fresh = GitSync(rig.sync.sessions_dir, rig.store)
    assert fresh.sync(rig.session) is None
    assert fresh.state(rig.session.id).tip == rig.host("rev-parse", "s1")


def test_a_legacy_session_moves_to_its_own_git_dir(repo, tmp_path):
    rig = Rig(repo, tmp_path, "old")
    import shutil

    shutil.rmtree(rig.lay.git_dir)
    rig.store.delete_git_sync(rig.session.id)
    (Path(rig.session.git_dir) / "commondir").write_text("/nowhere\n")  # the old agent's
    (rig.worktree / ".git").write_text("gitdir: /elsewhere\n")
    (rig.worktree / "w.txt").write_text("w\n")
    git(
        "-C",
        str(rig.repo),
        "update-ref",
        "refs/heads/old",
        git("commit-tree", "-p", "old", "-m", "legacy commit", "old^{tree}", cwd=repo),
        cwd=repo,
    )
    rig.sync.ensure(rig.session)
    assert rig.agent("log", "--format=%s", "-1") == "legacy commit"
    assert git("rev-parse", "--git-common-dir", cwd=rig.worktree).endswith(".git")
    assert rig.sync.state(rig.session.id).tip == git("rev-parse", "old", cwd=repo)


def test_commits_on_a_detached_head_come_back(rig):
    rig.agent("checkout", "-q", "--detach")
    tip = rig.commit("detached work")
    result = rig.sync.sync(rig.session)
    assert result.agent_branches == {"HEAD": tip}
    assert rig.refs("refs/clauderon/s1/branches") == {"refs/clauderon/s1/branches/HEAD": tip}
    assert rig.host("rev-parse", "s1") != tip


def test_a_sha256_repository(tmp_path):
    repo = tmp_path / "repo256"
    repo.mkdir()
    git("init", "-q", "--object-format=sha256", "-b", "main", cwd=repo)
    (repo / "a").write_text("a\n")
    git("add", "a", cwd=repo)
    git("-c", "user.name=D", "-c", "user.email=d@x", "commit", "-qm", "init", cwd=repo)
    rig = Rig(repo, tmp_path)
    assert "objectformat" in (rig.lay.git_dir / "config").read_text()
    tip = rig.commit("work")
    assert len(tip) == 64
    rig.sync.sync(rig.session)
    assert rig.host("rev-parse", "s1") == tip


def test_objects_are_copied_as_data_only(rig, tmp_path):
    outside = tmp_path / "secret-pack"
    outside.write_bytes(b"PACK not really")
    packs = rig.lay.git_dir / "objects" / "pack"
    (packs / f"pack-{'a' * 40}.pack").symlink_to(outside)
    (packs / f"pack-{'b' * 40}.pack").write_bytes(b"garbage")
    (packs / f"pack-{'b' * 40}.idx").write_bytes(b"garbage")
    tip = rig.commit("work")
    rig.sync.sync(rig.session)
    assert rig.host("rev-parse", "s1") == tip
    mirror = rig.lay.mirror / "objects" / "pack"
    assert sorted(p.name for p in mirror.iterdir()) == []


def test_unsaved_agent_branches(rig):
    from clauderon.gitsync import unsaved_agent_branches

    rig.agent("checkout", "-q", "-b", "idea")
    rig.commit("idea")
    rig.agent("checkout", "-q", "s1")
    rig.agent("branch", "copy-of-main", "main")  # a new branch with nothing of its own
    rig.sync.sync(rig.session)
    state = rig.sync.state(rig.session.id)
    assert sorted(state.agent) == ["copy-of-main", "idea"]
    assert unsaved_agent_branches(rig.lay, state.agent) == ["idea"]
    git("merge", "-q", "--ff-only", "refs/clauderon/s1/branches/idea", cwd=rig.repo)
    assert unsaved_agent_branches(rig.lay, state.agent) == []


def test_a_branch_that_becomes_a_directory(rig):
    rig.agent("branch", "topic", rig.commit("one"))
    rig.sync.sync(rig.session)
    rig.agent("branch", "-D", "topic")
    rig.agent("branch", "topic/sub", rig.commit("two", "two.txt"))
    rig.sync.sync(rig.session)
    assert list(rig.refs("refs/clauderon/s1/branches")) == ["refs/clauderon/s1/branches/topic/sub"]
    assert rig.host("rev-parse", "s1") == rig.agent("rev-parse", "HEAD")


def test_a_malformed_object_never_enters_the_main_repository(rig):
    before = rig.host("rev-parse", "s1")
    tree = rig.agent("rev-parse", "HEAD^{tree}")
    bad = f"tree {tree}\nparent {before}\nauthor nobody\ncommitter nobody\n\nbad\n"
    env_file = rig.worktree / "bad-commit"
    env_file.write_text(bad)
    sha = rig.agent("hash-object", "-t", "commit", "-w", "--literally", str(env_file))
    rig.agent("update-ref", "refs/heads/s1", sha)
    rig.sync.sync(rig.session)
    assert rig.host("rev-parse", "s1") == before
    assert (
        subprocess.run(["git", "cat-file", "-e", sha], cwd=rig.repo, capture_output=True).returncode
        != 0
    )
