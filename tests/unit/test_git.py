import subprocess
from pathlib import Path

import pytest

from clauderon import git as cgit
from clauderon.errors import InvalidInput

from .conftest import git


def make_worktree(repo: Path, tmp_path: Path, name: str = "s1") -> cgit.Worktree:
    info = cgit.resolve_repo(str(repo))
    excludes = tmp_path / "gitignore"
    excludes.write_text(cgit.AGENT_HOME_EXCLUDES)
    path = tmp_path / "worktrees" / name
    git_dir = cgit.add_worktree(info.root, path, name, info.head)
    return cgit.Worktree(path, git_dir, info.common_dir, name, excludes)


def test_resolve_repo_from_a_subdirectory(repo):
    info = cgit.resolve_repo(str(repo / "pkg"))
    assert info.root == repo.resolve()
    assert info.subdirectory == "pkg"
    assert info.common_dir == (repo / ".git").resolve()
    assert len(info.head) == 40


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("x"), "is not a directory"),
        (lambda p: p.mkdir(), "is not inside a git repository"),
        (lambda p: (p.mkdir(), git("init", "-q", cwd=p)), "has no commits yet"),
        (lambda p: (p.mkdir(), git("init", "-q", "--bare", cwd=p)), "bare repository"),
    ],
)
def test_resolve_repo_refuses(tmp_path, setup, message):
    target = tmp_path / "target"
    setup(target)
    with pytest.raises(InvalidInput, match=message) as info:
        cgit.resolve_repo(str(target))
    assert "\n" not in info.value.message


def test_resolve_commit(repo):
    info = cgit.resolve_repo(str(repo))
    assert cgit.resolve_commit(info, "main") == info.head
    with pytest.raises(InvalidInput, match="does not exist"):
        cgit.resolve_commit(info, "nope")
    with pytest.raises(InvalidInput):
        cgit.resolve_commit(info, "--all")


def test_clean_worktree_has_no_unsaved_work(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    # Agent home files are not the user's work.
    (wt.root / ".claude").mkdir()
    (wt.root / ".claude" / "history.jsonl").write_text("{}")
    (wt.root / ".claude.json").write_text("{}")
    (wt.root / ".cache" / "x").mkdir(parents=True)
    (wt.root / ".cache" / "x" / "f").write_text("1")
    assert wt.changed_files() == []
    assert wt.unique_commits() == []


def test_project_claude_settings_count_as_work(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / ".claude").mkdir()
    (wt.root / ".claude" / "settings.json").write_text("{}")
    assert wt.changed_files() == [".claude/settings.json"]


def test_unsaved_work_is_detected_and_saved(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "README").write_text("changed\n")
    (wt.root / "new file.txt").write_text("untracked\n")
    git("add", "README", cwd=wt.root)
    git("commit", "-qm", "work", cwd=wt.root)
    (wt.root / "README").write_text("changed again\n")
    assert sorted(wt.changed_files()) == ["README", "new file.txt"]
    assert len(wt.unique_commits()) == 1

    ref = wt.save_work("s1")
    assert ref.startswith("refs/clauderon/s1/")
    # The saved commit holds the worktree as it was, and the branch's commit as parent.
    assert git("show", f"{ref}:README", cwd=repo) == "changed again"
    assert git("show", f"{ref}:new file.txt", cwd=repo) == "untracked"
    assert git("log", "--format=%s", f"{ref}~1", "-1", cwd=repo) == "work"
    # Once saved, the commits are no longer unique to the branch.
    assert wt.unique_commits() == []


def test_save_work_without_changes_points_at_head(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "f").write_text("1")
    git("add", "f", cwd=wt.root)
    git("commit", "-qm", "c", cwd=wt.root)
    ref = wt.save_work("s1")
    assert git("rev-parse", ref, cwd=repo) == git("rev-parse", "s1", cwd=repo)


def test_commits_merged_elsewhere_are_not_unique(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "f").write_text("1")
    git("add", "f", cwd=wt.root)
    git("commit", "-qm", "c", cwd=wt.root)
    assert len(wt.unique_commits()) == 1
    git("merge", "-q", "s1", cwd=repo)
    assert wt.unique_commits() == []


def test_detached_head_commits_count(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    git("checkout", "-q", "--detach", cwd=wt.root)
    (wt.root / "f").write_text("1")
    git("add", "f", cwd=wt.root)
    git("commit", "-qm", "detached", cwd=wt.root)
    assert len(wt.unique_commits()) == 1
    ref = wt.save_work("s1")
    # Both the detached commit and the branch tip are kept, as parents of the saved commit.
    assert git("log", "--format=%s", "-1", f"{ref}^1", cwd=repo) == "detached"
    assert git("rev-parse", f"{ref}^2", cwd=repo) == git("rev-parse", "s1", cwd=repo)


def test_a_hostile_worktree_cannot_make_the_host_run_code(repo, tmp_path):
    """The agent controls the worktree (and its git dir's files); host-side git must not
    run anything it plants there."""
    wt = make_worktree(repo, tmp_path)
    marker = tmp_path / "pwned"
    evil = wt.root / "evil-git"
    evil.mkdir()
    (evil / "config").write_text(
        f'[core]\n\tfsmonitor = "touch {marker}; false"\n\thooksPath = {evil}\n'
    )
    hook = evil / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    # Rewrite the worktree's .git file and the commondir pointer, as an agent could.
    (wt.root / ".git").write_text(f"gitdir: {evil}\n")
    (wt.git_dir / "commondir").write_text(f"{evil}\n")
    (wt.root / "work.txt").write_text("x")
    wt.changed_files()
    wt.unique_commits()
    wt.save_work("s1")
    assert not marker.exists()


def test_remove_worktree_and_branch(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    cgit.remove_worktree(repo, wt.root, wt.git_dir, wt.common_dir)
    cgit.delete_branch(repo, "s1")
    assert not wt.root.exists()
    assert not cgit.branch_exists(repo, "s1")
    assert (
        "s1"
        not in subprocess.run(
            ["git", "worktree", "list"], cwd=repo, capture_output=True, text=True
        ).stdout
    )
    assert not wt.git_dir.exists()


def test_remove_worktree_ignores_a_rewritten_gitdir(repo, tmp_path):
    """An agent can point its admin dir's `gitdir` anywhere: removal must not follow it."""
    wt = make_worktree(repo, tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    (wt.git_dir / "gitdir").write_text(f"{precious}/.git\n")
    cgit.remove_worktree(repo, wt.root, wt.git_dir, wt.common_dir)
    assert (precious / "keep.txt").read_text() == "keep"
    assert not wt.root.exists()


def test_an_undo_never_takes_a_branch_that_moved(repo, tmp_path):
    info = cgit.resolve_repo(str(repo))
    git("branch", "theirs", cwd=repo)
    (repo / "more").write_text("x")
    git("add", "more", cwd=repo)
    git("commit", "-qm", "more", cwd=repo)
    git("branch", "-f", "theirs", "HEAD", cwd=repo)
    cgit.delete_branch(repo, "theirs", only_at=info.head)  # moved since: kept
    assert cgit.branch_exists(repo, "theirs")
    cgit.delete_branch(repo, "theirs", only_at=git("rev-parse", "HEAD", cwd=repo))
    assert not cgit.branch_exists(repo, "theirs")


def test_remove_worktree_handles_read_only_directories(repo, tmp_path):
    """Go's module cache (under HOME=/workspace) is read-only by design."""
    wt = make_worktree(repo, tmp_path)
    cache = wt.root / ".cache" / "go" / "mod" / "pkg@v1"
    cache.mkdir(parents=True)
    (cache / "go.mod").write_text("module pkg\n")
    for path in (cache / "go.mod", cache, cache.parent):
        path.chmod(0o444 if path.is_file() else 0o555)
    cgit.remove_worktree(repo, wt.root, wt.git_dir, wt.common_dir)
    assert not wt.root.exists()
    assert not wt.git_dir.exists()


def test_remove_worktree_never_follows_a_planted_link(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    outside.chmod(0o555)
    wt = make_worktree(repo, tmp_path)
    (wt.root / "link").symlink_to(outside)
    locked = wt.root / "locked"
    locked.mkdir()
    (locked / "f").write_text("x")
    locked.chmod(0o555)
    cgit.remove_worktree(repo, wt.root, wt.git_dir, wt.common_dir)
    assert not wt.root.exists()
    assert (outside / "keep").exists()
    assert outside.stat().st_mode & 0o777 == 0o555


def test_parallel_removals_in_one_repository_all_succeed(repo, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    worktrees = [make_worktree(repo, tmp_path, f"p{i}") for i in range(10)]
    with ThreadPoolExecutor(10) as pool:
        list(
            pool.map(
                lambda wt: (
                    cgit.remove_worktree(repo, wt.root, wt.git_dir, wt.common_dir),
                    cgit.delete_branch(repo, wt.branch),
                ),
                worktrees,
            )
        )
    assert git("worktree", "list", "--porcelain", cwd=repo).count("worktree ") == 1
    assert not any(cgit.branch_exists(repo, wt.branch) for wt in worktrees)


def test_two_saves_in_one_second_keep_both(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "a.txt").write_text("first\n")
    first = wt.save_work("s1")
    (wt.root / "a.txt").write_text("second\n")
    second = wt.save_work("s1")
    assert first != second
    refs = git("for-each-ref", "--format=%(refname)", "refs/clauderon/s1/", cwd=repo).split()
    assert sorted(refs) == sorted([first, second])


def test_an_unknown_users_home_is_a_clear_error():
    with pytest.raises(InvalidInput, match="no such user's home"):
        cgit.resolve_repo("~no-such-user-0")
