"""Review and land a session's work (issue 11) on the real engine, through the CLI.

One session is shared by the module (the tests run in order and build on each other): the
agent's user commits, edits and adds files inside; the host diffs, commits (and the agent
sees it), is refused on a conflict or a dirty checkout, pushes to a local bare remote,
opens a pull request on the fake GitHub, merges in each mode and deletes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakegithub import FakeGitHub

from .conftest import AGENTS_IMAGE, Clauderon, exec_in, git, wait_for

pytestmark = pytest.mark.docker

QUIET = ("--image", AGENTS_IMAGE, "--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
TOKEN = "ghp_fake-token-for-tests"


class Rig:
    def __init__(self, base: Path, clauderon: Clauderon, fake: FakeGitHub):
        self.fake = fake
        self.clauderon = clauderon
        self.repo = repo = base / "repo"
        repo.mkdir()
        git("init", "-q", "-b", "main", cwd=repo)
        git("config", "user.email", "dev@example.com", cwd=repo)
        git("config", "user.name", "Dev Eloper", cwd=repo)
        (repo / "README.md").write_text("hello\n")
        (repo / "keep.txt").write_text("keep\n")
        git("add", ".", cwd=repo)
        git("commit", "-qm", "init", cwd=repo)
        git("branch", "release", cwd=repo)
        self.remote = base / "remote.git"
        git("init", "-q", "--bare", str(self.remote), cwd=base)
        # Fetched from GitHub (for the pull request's owner/repo), pushed to the bare repo.
        git("remote", "add", "origin", "https://github.com/acme/widgets.git", cwd=repo)
        git("remote", "set-url", "--push", "origin", str(self.remote), cwd=repo)
        clauderon.configure(f'[github]\napi_url = "{fake.url}"\n', GITHUB_TOKEN=TOKEN)
        self.session = clauderon.create(
            repo, "--name", "land", *QUIET, prompt="Make the greeting friendlier"
        )
        self.container = clauderon.container(self.session)
        self.worktree = Path(self.session["worktree"])

    def inside(self, command: str) -> str:
        code, out = exec_in(self.container, command)
        assert code == 0, out
        return out

    def tip(self, branch: str) -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.repo)

    def view(self) -> dict:
        return next(s for s in self.clauderon.sessions() if s["name"] == "land")


@pytest.fixture(scope="module")
def rig(tmp_path_factory, docker_client):
    base = tmp_path_factory.mktemp("review-land")
    clauderon = Clauderon(base / "home", docker_client)
    with FakeGitHub(token=TOKEN) as fake:
        try:
            yield Rig(base, clauderon, fake)
        finally:
            clauderon.cleanup()


def test_diff_shows_commits_uncommitted_untracked_and_binary(rig):
    rig.inside(
        "set -e; echo 'hello, friend' > README.md; git commit -qam friendlier; "
        "echo 'not committed' >> keep.txt; echo new > new.txt; "
        "printf '\\000\\001\\002binary' > logo.bin"
    )
    text = rig.clauderon.run("diff", "land").stdout  # piped: plain, no pager
    assert "+hello, friend" in text
    assert "+not committed" in text
    assert "+new" in text
    assert "Binary files /dev/null and b/logo.bin differ" in text
    assert "\x1b[" not in text
    names = rig.clauderon.run("diff", "land", "--name-only").stdout.split()
    assert sorted(names) == ["README.md", "keep.txt", "logo.bin", "new.txt"]
    assert "4 files changed" in rig.clauderon.run("diff", "land", "--stat").stdout
    data = rig.clauderon.run("diff", "land", "--json").json
    assert {f["path"]: f["binary"] for f in data["files"]} == {
        "README.md": False,
        "keep.txt": False,
        "logo.bin": True,
        "new.txt": False,
    }
    # Against another base: the same files (main has not moved).
    assert "README.md" in rig.clauderon.run("diff", "land", "--base", "main", "--stat").stdout
    # Looking changed nothing: the agent's files are still uncommitted.
    assert "?? new.txt" in rig.inside("git status --porcelain")


def test_bad_input_is_one_line_and_changes_nothing(rig):
    before = rig.tip("main"), rig.tip("land")
    for args in (
        ("diff", "land", "--base", "--output=/tmp/x"),
        ("diff", "land", "--base", "no-such-rev"),
        ("merge", "land", "--into", "-x"),
        ("merge", "land", "--squash", "--rebase"),
        ("push", "land", "--remote", "nope"),
        ("diff", "no-such-session"),
    ):
        result = rig.clauderon.run(*args, check=False)
        assert result.code != 0, args
        assert result.stderr.count("\n") == 1, (args, result.stderr)
    assert (rig.tip("main"), rig.tip("land")) == before


def test_list_shows_the_work_without_git_per_call(rig):
    def numbers():
        view = rig.view()
        got = (view["ahead"], view["behind"], view["changed_files"], view["dirty"])
        return got if got == (1, 0, 4, True) else None

    wait_for(numbers, timeout=60)
    table = rig.clauderon.run("list").stdout
    assert "+1 -0 4f dirty" in table


def test_merge_refuses_uncommitted_work(rig):
    before = rig.tip("main")
    result = rig.clauderon.run("merge", "land", check=False)
    assert result.code != 0
    assert "clauderon commit land" in result.stderr
    assert rig.tip("main") == before


def test_commit_from_the_host_reaches_the_agent(rig):
    before = rig.tip("land")
    result = rig.clauderon.run("commit", "land", "--json").json
    assert sorted(result["files"]) == ["keep.txt", "logo.bin", "new.txt"]
    assert rig.tip("land") == result["commit"]
    assert git("rev-parse", f"{result['commit']}^", cwd=rig.repo) == before
    message = git("log", "-1", "--format=%B", result["commit"], cwd=rig.repo)
    assert message.startswith("Make the greeting friendlier")
    assert git("log", "-1", "--format=%an", result["commit"], cwd=rig.repo) == "Dev Eloper"
    # The agent sees it: its HEAD is the commit and its status is clean.
    wait_for(lambda: rig.inside("git rev-parse HEAD").strip() == result["commit"])
    assert rig.inside("git status --porcelain -- README.md keep.txt new.txt logo.bin") == ""
    again = rig.clauderon.run("commit", "land", check=False)
    assert again.code != 0 and "nothing to commit" in again.stderr


def test_conflict_changes_nothing_and_names_the_files(rig):
    (rig.repo / "README.md").write_text("hello, user\n")
    git("commit", "-qam", "user's readme", cwd=rig.repo)
    main_before, land_before = rig.tip("main"), rig.tip("land")
    try:
        for mode in ("--merge", "--squash", "--rebase"):
            result = rig.clauderon.run("merge", "land", mode, check=False)
            assert result.code != 0
            assert "conflicts in 1 file(s): README.md" in result.stderr
            assert 'clauderon send land "' in result.stderr
        assert (rig.tip("main"), rig.tip("land")) == (main_before, land_before)
        assert (rig.repo / "README.md").read_text() == "hello, user\n"
        assert git("status", "--porcelain", cwd=rig.repo) == ""
    finally:
        git("reset", "-q", "--hard", "HEAD~1", cwd=rig.repo)


def test_a_dirty_checkout_in_the_way_is_refused(rig):
    (rig.repo / "README.md").write_text("local edit\n")
    before = rig.tip("main")
    try:
        result = rig.clauderon.run("merge", "land", check=False)
        assert result.code != 0
        assert "nothing was changed" in result.stderr
        assert rig.tip("main") == before
        assert (rig.repo / "README.md").read_text() == "local edit\n"
        assert not (rig.repo / "new.txt").exists()
    finally:
        git("checkout", "-q", "--", "README.md", cwd=rig.repo)


def test_push_to_the_remote_from_the_host(rig):
    result = rig.clauderon.run("push", "land", "--json").json
    assert result["branch"] == "land"
    assert git("rev-parse", "refs/heads/land", cwd=rig.remote) == rig.tip("land")


def test_pull_request_then_again(rig):
    url = rig.clauderon.run("pr", "land", "--draft").stdout.strip()
    assert url == "https://github.example/acme/widgets/pull/1"
    assert rig.fake.problems == []
    posts = [r for r in rig.fake.requests if r.method == "POST"]
    assert len(posts) == 1
    assert posts[0].path == "/repos/acme/widgets/pulls"
    assert posts[0].headers["Authorization"] == f"Bearer {TOKEN}"
    body = posts[0].body
    assert (body["head"], body["base"], body["draft"]) == ("land", "main", True)
    assert body["title"] == "Make the greeting friendlier"
    assert "* friendlier" in body["body"]
    again = rig.clauderon.run("pr", "land")
    assert again.stdout.strip() == url
    assert "already has a pull request" in again.stderr
    assert len([r for r in rig.fake.requests if r.method == "POST"]) == 1
    assert rig.view()["pr_url"] == url


def test_merge_modes_into_other_branches(rig):
    git("branch", "release2", "release", cwd=rig.repo)
    other = rig.repo.parent / "release-checkout"  # release moves on in a worktree of the user's
    git("worktree", "add", "-q", str(other), "release", cwd=rig.repo)
    (other / "notes.txt").write_text("release notes\n")
    git("add", "notes.txt", cwd=other)
    git("commit", "-qm", "release notes", cwd=other)
    rebased = rig.clauderon.run("merge", "land", "--rebase", "--into", "release", "--json").json
    assert rebased["commit"] == rig.tip("release")
    assert rebased["checkout_updated"] == str(other)
    assert (other / "new.txt").read_text() == "new\n"  # that checkout followed too
    assert git("log", "--format=%s|%an", "release", cwd=rig.repo).splitlines()[:3] == [
        "Make the greeting friendlier|Dev Eloper",
        "friendlier|Dev Eloper",
        "release notes|Dev Eloper",
    ]
    merged = rig.clauderon.run("merge", "land", "--merge", "--into", "release2", "--json").json
    assert merged["fast_forward"] and rig.tip("release2") == rig.tip("land")
    assert merged["checkout_updated"] is None
    refused = rig.clauderon.run("merge", "land", "--into", "land", check=False)
    assert refused.code != 0 and "session 'land'" in refused.stderr


def test_squash_into_the_clean_checkout_then_delete(rig):
    result = rig.clauderon.run("merge", "land", "--squash", "--json").json
    assert result["into"] == "main"
    assert result["checkout_updated"] == str(rig.repo.resolve())
    assert rig.tip("main") == result["commit"]
    assert git("rev-list", "--count", "main", cwd=rig.repo) == "2"  # one squashed commit
    assert (rig.repo / "new.txt").read_text() == "new\n"  # the checkout followed
    assert (rig.repo / "README.md").read_text() == "hello, friend\n"
    assert git("status", "--porcelain", cwd=rig.repo) == ""
    wait_for(lambda: rig.view()["merged"])
    assert "merged" in rig.clauderon.run("list").stdout
    # Its commits are now on no other branch (squashed on main, copied by the rebase on
    # release), but they were landed: nothing to refuse.
    git("branch", "-D", "release2", cwd=rig.repo)
    git("update-ref", "-d", "refs/remotes/origin/land", cwd=rig.repo)
    deleted = rig.clauderon.run("delete", "land")
    assert "saved" not in deleted.stdout
