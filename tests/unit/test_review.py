"""review.py on local repositories: diff, commit, merge in each mode, push, URLs."""

from pathlib import Path

import pytest

from clauderon import review
from clauderon.errors import InvalidInput

from .conftest import git
from .test_git import make_worktree

ME = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def common(repo: Path) -> Path:
    return (repo / ".git").resolve()


def agent_commit(wt, path: str, text: str, message: str) -> str:
    (wt.root / path).parent.mkdir(parents=True, exist_ok=True)
    (wt.root / path).write_text(text)
    git("add", path, cwd=wt.root)
    git(
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "commit",
        "-qm",
        message,
        cwd=wt.root,
    )
    return git("rev-parse", "HEAD", cwd=wt.root)


def full_diff(wt, repo: Path, **kw) -> str:
    with review.snapshot(wt) as snap:
        tree = snap.tree
    base = git("rev-parse", "main", cwd=repo)
    argv = review.diff_command(
        common(repo),
        base,
        tree,
        stat=kw.get("stat", False),
        name_only=kw.get("name_only", False),
        color=False,
    )
    return b"".join(
        review.stream_command(argv, repo, kw.get("limit", review.MAX_DIFF_BYTES))
    ).decode()


def test_diff_has_commits_uncommitted_untracked_and_names_binaries(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    agent_commit(wt, "committed.txt", "from a commit\n", "one")
    (wt.root / "README").write_text("hello\nchanged, not committed\n")
    (wt.root / "new.txt").write_text("untracked file\n")
    (wt.root / "blob.bin").write_bytes(b"\x00\x01\x02binary\xff" * 50)
    (wt.root / ".claude").mkdir()
    (wt.root / ".claude" / "history.jsonl").write_text("agent state\n")
    text = full_diff(wt, repo)
    assert "+from a commit" in text
    assert "+changed, not committed" in text
    assert "+untracked file" in text
    assert "Binary files /dev/null and b/blob.bin differ" in text
    assert "history.jsonl" not in text
    assert "\x1b[" not in text  # plain unless asked
    names = full_diff(wt, repo, name_only=True).split()
    assert sorted(names) == ["README", "blob.bin", "committed.txt", "new.txt"]
    assert "4 files changed" in full_diff(wt, repo, stat=True)
    # Nothing was committed or staged by looking.
    assert sorted(wt.changed_files()) == ["README", "blob.bin", "new.txt"]
    assert git("diff", "--cached", "--name-only", cwd=wt.root) == ""


def test_diff_is_cut_and_says_so(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "big.txt").write_text("line of text\n" * 20000)
    text = full_diff(wt, repo, limit=10_000)
    assert len(text.encode()) < 11_000
    assert "was cut here" in text


def test_diff_never_runs_an_external_diff_or_textconv(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    marker = tmp_path / "ran"
    git("config", "diff.evil.textconv", f"touch {marker}; cat", cwd=repo)
    git("config", "diff.external", f"sh -c 'touch {marker}'", cwd=repo)
    (wt.root / ".gitattributes").write_text("* diff=evil\n")
    (wt.root / "x.txt").write_text("x\n")
    assert "+x" in full_diff(wt, repo)
    assert not marker.exists()


def test_resolve_base_refuses_options_and_unknown(repo):
    with pytest.raises(InvalidInput):
        review.resolve_base(common(repo), "--output=/tmp/x")
    with pytest.raises(InvalidInput, match="not a commit"):
        review.resolve_base(common(repo), "nope")
    assert review.resolve_base(common(repo), "main") == git("rev-parse", "main", cwd=repo)


def test_commit_all_commits_everything_and_leaves_a_clean_index(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "README").write_text("edited\n")
    (wt.root / "added.txt").write_text("new\n")
    (wt.root / ".codex").mkdir()
    (wt.root / ".codex" / "state").write_text("agent\n")
    commit, files = review.commit_all(wt, common(repo), "Fix the README\nplease", None, ME)
    assert git("rev-parse", "refs/heads/s1", cwd=repo) == commit
    assert sorted(files) == ["README", "added.txt"]
    message = git("log", "-1", "--format=%B", commit, cwd=repo)
    assert message.startswith("Fix the README\n")
    assert "added.txt" in message
    assert git("log", "-1", "--format=%an", commit, cwd=repo) == "Dev"
    assert git("show", f"{commit}:added.txt", cwd=repo) == "new"
    # The host's index is the commit's: nothing left to commit but the agent's files.
    assert wt.changed_files() == []
    with pytest.raises(review.NothingToCommit):
        review.commit_all(wt, common(repo), "p", "again", ME)


def setup_session(repo: Path, tmp_path: Path):
    wt = make_worktree(repo, tmp_path)
    agent_commit(wt, "a.txt", "a\n", "add a")
    agent_commit(wt, "b.txt", "b\n", "add b")
    return wt


def user_commit(repo: Path, path: str, text: str) -> str:
    (repo / path).write_text(text)
    git("add", path, cwd=repo)
    git("commit", "-qm", f"user {path}", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def land(repo, mode, into="main", message=None):
    outcome = review.plan_merge(common(repo), "s1", "s1", into, mode, message, "Do it", ME)
    return review.apply_merge(common(repo), outcome, "test")


@pytest.mark.parametrize("mode", ["merge", "squash", "rebase"])
def test_merge_modes_on_a_diverged_base_update_the_clean_checkout(repo, tmp_path, mode):
    setup_session(repo, tmp_path)
    user_commit(repo, "user.txt", "u\n")
    before = git("rev-parse", "main", cwd=repo)
    outcome = land(repo, mode)
    tip = git("rev-parse", "main", cwd=repo)
    assert tip == outcome.commit != before
    assert outcome.checkout == str(repo.resolve())
    for name in ("a.txt", "b.txt", "user.txt"):  # the checkout follows, as git merge would
        assert (repo / name).exists()
    assert git("status", "--porcelain", cwd=repo) == ""
    parents = git("log", "-1", "--format=%P", tip, cwd=repo).split()
    if mode == "merge":
        assert parents == [before, git("rev-parse", "s1", cwd=repo)]
    elif mode == "squash":
        assert parents == [before]
        assert "* add b" in git("log", "-1", "--format=%B", tip, cwd=repo)
    else:
        log = git("log", "--format=%s|%an|%cn", f"{before}..{tip}", cwd=repo).splitlines()
        assert log == ["add b|Agent|Dev", "add a|Agent|Dev"]
    assert land(repo, mode).already or mode != "merge"


def test_merge_fast_forwards_when_the_base_did_not_move(repo, tmp_path):
    setup_session(repo, tmp_path)
    outcome = land(repo, "merge")
    assert outcome.fast_forward
    assert git("rev-parse", "main", cwd=repo) == git("rev-parse", "s1", cwd=repo)
    assert (repo / "b.txt").read_text() == "b\n"


def test_merge_into_a_branch_not_checked_out_leaves_the_checkout(repo, tmp_path):
    git("branch", "release", cwd=repo)
    setup_session(repo, tmp_path)
    outcome = land(repo, "squash", into="release")
    assert outcome.checkout is None
    assert git("rev-parse", "release", cwd=repo) == outcome.commit
    assert not (repo / "a.txt").exists()


def test_conflict_changes_nothing_and_names_the_files(repo, tmp_path):
    wt = setup_session(repo, tmp_path)
    agent_commit(wt, "README", "agent's readme\n", "readme")
    user_commit(repo, "README", "user's readme\n")
    main_before, s1_before = git("rev-parse", "main", cwd=repo), git("rev-parse", "s1", cwd=repo)
    for mode in review.MODES:
        with pytest.raises(review.MergeConflict) as info:
            land(repo, mode)
        assert info.value.files == ["README"]
        assert 'clauderon send s1 "' in info.value.message
        assert "\n" not in info.value.message
    assert git("rev-parse", "main", cwd=repo) == main_before
    assert git("rev-parse", "s1", cwd=repo) == s1_before
    assert (repo / "README").read_text() == "user's readme\n"
    assert git("status", "--porcelain", cwd=repo) == ""


def test_dirty_checkout_in_the_way_is_refused_and_nothing_changes(repo, tmp_path):
    wt = setup_session(repo, tmp_path)
    agent_commit(wt, "pkg/mod.py", "x = 2\n", "mod")
    (repo / "pkg" / "mod.py").write_text("x = 'local edit'\n")
    before = git("rev-parse", "main", cwd=repo)
    with pytest.raises(review.CheckoutInTheWay, match="nothing was changed"):
        land(repo, "merge")
    assert git("rev-parse", "main", cwd=repo) == before
    assert (repo / "pkg" / "mod.py").read_text() == "x = 'local edit'\n"
    assert not (repo / "a.txt").exists()


def test_dirty_checkout_out_of_the_way_is_kept(repo, tmp_path):
    setup_session(repo, tmp_path)
    (repo / "pkg" / "mod.py").write_text("x = 'local edit'\n")
    land(repo, "squash")
    assert (repo / "a.txt").exists()
    assert (repo / "pkg" / "mod.py").read_text() == "x = 'local edit'\n"


def test_untracked_file_in_the_way_is_refused(repo, tmp_path):
    setup_session(repo, tmp_path)
    (repo / "a.txt").write_text("mine, untracked\n")
    with pytest.raises(review.CheckoutInTheWay):
        land(repo, "merge")
    assert (repo / "a.txt").read_text() == "mine, untracked\n"


def test_rebase_refuses_merge_commits(repo, tmp_path):
    wt = setup_session(repo, tmp_path)
    git("branch", "side", "main", cwd=repo)
    git(
        "-c",
        "user.name=A",
        "-c",
        "user.email=a@x",
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "m",
        "side",
        cwd=wt.root,
    )
    user_commit(repo, "user.txt", "u\n")
    git(
        "-c",
        "user.name=A",
        "-c",
        "user.email=a@x",
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "m2",
        "main",
        cwd=wt.root,
    )
    with pytest.raises(InvalidInput, match="merge commit"):
        land(repo, "rebase")


def test_push_to_a_bare_remote(repo, tmp_path):
    setup_session(repo, tmp_path)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    review.push(repo, "origin", "s1", {})
    assert git("rev-parse", "s1", cwd=remote) == git("rev-parse", "s1", cwd=repo)
    with pytest.raises(InvalidInput, match="no remote 'nope'"):
        review.push(repo, "nope", "s1", {})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/acme/widgets.git", ("github.com", "acme", "widgets")),
        ("https://x-access-token@github.com/acme/widgets", ("github.com", "acme", "widgets")),
        ("git@github.com:acme/widgets.git", ("github.com", "acme", "widgets")),
        ("ssh://git@ghe.corp:2222/acme/widgets.git", ("ghe.corp", "acme", "widgets")),
    ],
)
def test_parse_github_url(url, expected):
    assert review.parse_github_url(url) == expected


@pytest.mark.parametrize("url", ["/srv/git/repo.git", "https://github.com/acme", "file:///x/y"])
def test_parse_github_url_refuses(url):
    with pytest.raises(InvalidInput):
        review.parse_github_url(url)


def test_read_ref_loose_and_packed(repo):
    c = common(repo)
    tip = git("rev-parse", "main", cwd=repo)
    assert review.read_ref(c, "refs/heads/main") == tip
    git("pack-refs", "--all", cwd=repo)
    assert review.read_ref(c, "refs/heads/main") == tip
    assert review.read_ref(c, "refs/heads/none") is None


def test_github_config_is_strict(tmp_path):
    from clauderon.config import ConfigError, load_config

    path = tmp_path / "config.toml"
    path.write_text('[github]\napi_url = "http://127.0.0.1:8080/"\n')
    assert load_config(path).github.api_url == "http://127.0.0.1:8080"
    for bad in ('api_url = "ftp://x"', 'api_url = "https://u:p@x"', "other = 1"):
        path.write_text(f"[github]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(path)


def test_commit_refused_while_git_holds_the_index_lock(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "README").write_text("edited\n")
    before = git("rev-parse", "s1", cwd=repo)
    (wt.git_dir / "index.lock").write_text("")
    with pytest.raises(review.Conflict, match=r"index\.lock"):
        review.commit_all(wt, common(repo), "p", "m", ME)
    assert git("rev-parse", "s1", cwd=repo) == before
    assert (wt.git_dir / "index.lock").exists()  # not ours to remove


def test_a_session_worktree_claiming_the_branch_is_never_checked_out_into(repo, tmp_path):
    # An agent of an older layout could write its admin dir's HEAD: the merge must not
    # run git in that worktree (it would read what the agent wrote).
    wt = setup_session(repo, tmp_path)
    git("branch", "target", "main", cwd=repo)
    (wt.git_dir / "HEAD").write_text("ref: refs/heads/target\n")
    outcome = review.plan_merge(common(repo), "s1", "s1", "target", "squash", None, "p", ME)
    review.apply_merge(common(repo), outcome, "test", not_under=tmp_path / "worktrees")
    assert outcome.checkout is None
    assert git("rev-parse", "target", cwd=repo) == outcome.commit


def test_numstat_as_data(repo, tmp_path):
    wt = make_worktree(repo, tmp_path)
    (wt.root / "README").write_text("hello\nmore\n")
    (wt.root / "we ird\tname.txt").write_text("a\nb\n")
    (wt.root / "blob.bin").write_bytes(b"\x00\x01" * 10)
    with review.snapshot(wt) as snap:
        tree = snap.tree
    base = git("rev-parse", "main", cwd=repo)
    argv = review.diff_command(
        common(repo), base, tree, stat=False, name_only=False, color=False, numstat=True
    )
    files = review.parse_numstat(b"".join(review.stream_command(argv, repo)))
    assert sorted(files, key=lambda f: f["path"]) == [
        {"path": "README", "added": 1, "deleted": 0, "binary": False},
        {"path": "blob.bin", "added": None, "deleted": None, "binary": True},
        {"path": "we ird\tname.txt", "added": 2, "deleted": 0, "binary": False},
    ]
