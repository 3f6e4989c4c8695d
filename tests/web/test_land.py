"""Landing a session's work from its page, in Chromium: Pull request opens one on the
fake GitHub and shows its address as a link; Merge moves the base branch in the user's
repository. Its own quiet session and repository (the shared one's must stay clean)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import git, init_repo

from .conftest import AGENTS_IMAGE, GITHUB_TOKEN, Web

pytestmark = [pytest.mark.docker, pytest.mark.agent]

# No model traffic: this agent's model calls fail at once (this test needs none).
QUIET = ("--image", AGENTS_IMAGE, "--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9")
PR_URL = "https://github.example/acme/widgets/pull/1"


def landing_repo(base: Path) -> tuple[Path, Path]:
    """A repository whose `origin` is on GitHub for fetching (the pull request's
    owner/repo) and a local bare repository for pushing."""
    repo, remote = init_repo(base / "land-repo"), base / "land-remote.git"
    git("init", "-q", "--bare", str(remote), cwd=base)
    git("remote", "add", "origin", "https://github.com/acme/widgets.git", cwd=repo)
    git("remote", "set-url", "--push", "origin", str(remote), cwd=repo)
    return repo, remote


def test_pull_request_and_merge_from_the_session_page(page, web: Web, tmp_path: Path):
    repo, remote = landing_repo(tmp_path)
    session = web.clauderon.create(repo, "--name", "land", *QUIET, prompt="Greet a friend")
    try:
        (Path(session["worktree"]) / "friend.txt").write_text("hello, friend\n")
        commit = web.clauderon.run("commit", "land", "--json").json["commit"]
        main_before = git("rev-parse", "refs/heads/main", cwd=repo)
        page.goto(f"{web.base}/#/s/land")
        page.click("#tab-details")

        page.click("button:has-text('Pull request…')")
        page.click("dialog[open] button:has-text('Open pull request')")
        link = page.wait_for_selector(f'.notice a[href="{PR_URL}"]', timeout=120_000)
        assert link.inner_text() == PR_URL
        assert web.github.problems == []
        (post,) = [r for r in web.github.requests if r.method == "POST"]
        assert post.path == "/repos/acme/widgets/pulls"
        assert post.headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
        assert (post.body["head"], post.body["base"]) == ("land", "main")
        assert git("rev-parse", "refs/heads/land", cwd=remote) == commit  # pushed first

        page.click("button:has-text('Merge…')")
        page.select_option("#merge-mode", "merge")
        page.click("dialog[open] button:has-text('Merge')")
        page.wait_for_selector(".notice:has-text('Merged into main')", timeout=120_000)
        main_after = git("rev-parse", "refs/heads/main", cwd=repo)
        assert main_after != main_before
        git("merge-base", "--is-ancestor", commit, "refs/heads/main", cwd=repo)
        assert (repo / "friend.txt").read_text() == "hello, friend\n"  # the checkout followed
    finally:
        web.clauderon.run("delete", "land", "--force", check=False)
