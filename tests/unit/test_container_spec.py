import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clauderon.agents import get_agent
from clauderon.container import (
    CACHE_VOLUMES,
    GitMounts,
    ProvidedAgent,
    ProxyInputs,
    SpecInputs,
    build_container_spec,
    prepare_mountpoints,
)
from clauderon.errors import ClauderonError
from clauderon.models import Session, SessionStatus
from clauderon.paths import Paths


def make_session(**overrides) -> Session:
    fields = dict(
        id="3011c4b0-8bb9-431d-bed6-a9e97eadcc29",
        name="fix-bug-a1b2",
        status=SessionStatus.CREATING,
        prompt="Fix the bug",
        repo="/src/project",
        subdirectory="pkg/api",
        worktree="/home/u/.clauderon/worktrees/fix-bug-a1b2",
        branch="fix-bug-a1b2",
        git_common_dir="/src/project/.git",
        cpu_limit=1.5,
        memory_limit=512 * 1024**2,
        env={"FOO": "bar"},
    )
    fields.update(overrides)
    return Session(**fields)


def build(
    session: Session,
    agent: str = "claude",
    provided: ProvidedAgent | None = None,
    proxy: ProxyInputs | None = None,
):
    paths = Paths(Path("/home/u/.clauderon"))
    inputs = SpecInputs(
        uid=1000,
        gid=1001,
        git=GitMounts(
            git_dir=Path("/home/u/.clauderon/sessions/fix-bug-a1b2/git"),
            admin_dir=Path("/src/project/.git/worktrees/fix-bug-a1b2"),
            container_admin=Path(
                "/home/u/.clauderon/sessions/fix-bug-a1b2/git/worktrees/fix-bug-a1b2"
            ),
            objects=Path("/src/project/.git/objects"),
            dotgit=Path("/home/u/.clauderon/sessions/fix-bug-a1b2/dotgit"),
        ),
        git_identity={"GIT_AUTHOR_NAME": "Dev"},
        provided_agent=provided,
        proxy=proxy,
    )
    return build_container_spec(session, get_agent(agent), paths, inputs, [])


def test_identity_limits_and_labels():
    spec = build(make_session())
    assert spec.name == f"clauderon-fix-bug-a1b2-{Paths(Path('/home/u/.clauderon')).instance[:6]}"
    assert spec.user == "1000:1001"
    assert spec.cpu_limit == 1.5
    assert spec.memory_limit == 512 * 1024**2
    assert spec.workdir == "/workspace/pkg/api"
    assert spec.labels["clauderon.managed"] == "true"
    assert spec.labels["clauderon.session"] == "fix-bug-a1b2"
    assert spec.labels["clauderon.session-id"] == "3011c4b0-8bb9-431d-bed6-a9e97eadcc29"
    assert spec.tty is True


def test_the_proxy_is_reached_through_loopback_and_the_session_socket():
    session = make_session()
    proxy = ProxyInputs(
        18100,
        Path("/home/u/.clauderon/proxy-ca.pem"),
        {},
        socket_dir=Path("/home/u/.clauderon/sessions/fix-bug-a1b2/proxy"),
        forwarder=Path("/home/u/.clauderon/bin/clauderon-forward-abc"),
    )
    spec = build(session, proxy=proxy)
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/run/clauderon"].read_only
    assert mounts["/run/clauderon"].source.endswith("/sessions/fix-bug-a1b2/proxy")
    assert mounts["/opt/clauderon/forward"].read_only
    url = f"http://clauderon:{session.proxy_token}@127.0.0.1:18100"
    assert spec.env["HTTPS_PROXY"] == spec.env["http_proxy"] == url
    assert spec.env["CLAUDERON_PROXY_PORT"] == "18100"


def test_mounts_of_the_contract():
    session = make_session()
    mounts = {m.target: m for m in build(session).mounts}
    assert mounts["/workspace"].source == session.worktree
    assert not mounts["/workspace"].read_only
    uploads = f"/workspace/.clauderon/uploads/{session.id}"
    assert mounts[uploads].source == f"/home/u/.clauderon/uploads/{session.id}"
    assert mounts["/workspace/.clauderon/hooks"].source == "/home/u/.clauderon/hooks"
    for volume, target in CACHE_VOLUMES.items():  # uid 1000: the user's own volumes
        volume = f"{volume}-1000"
        assert mounts[target].volume and mounts[target].source == volume


def test_only_the_session_git_dir_is_writable_and_nothing_of_the_main_one():
    mounts = {m.target: m for m in build(make_session()).mounts}
    session_git = "/home/u/.clauderon/sessions/fix-bug-a1b2/git"
    assert mounts[session_git].source == session_git and not mounts[session_git].read_only
    admin = mounts["/src/project/.git/worktrees/fix-bug-a1b2"]
    assert admin.source == f"{session_git}/worktrees/fix-bug-a1b2" and not admin.read_only
    assert mounts["/src/project/.git/objects"].read_only
    dotgit = mounts["/workspace/.git"]
    assert dotgit.read_only and dotgit.source.endswith("/sessions/fix-bug-a1b2/dotgit")
    main = [m for m in mounts.values() if m.source.startswith("/src/project/.git")]
    assert [m.target for m in main] == ["/src/project/.git/objects"]


def test_environment():
    env = build(make_session()).env
    assert env["HOME"] == "/workspace"
    assert env["CARGO_HOME"] == "/workspace/.cargo"
    assert env["SCCACHE_DIR"] == "/workspace/.cache/sccache"
    assert env["IS_SANDBOX"] == "1"
    assert env["FOO"] == "bar"
    assert env["GIT_AUTHOR_NAME"] == "Dev"
    assert env["CLAUDERON_SKIP_PERMISSIONS"] == "1"


def test_ask_permissions_and_print_mode():
    spec = build(make_session(ask_permissions=True, print_mode=True))
    assert spec.env["CLAUDERON_SKIP_PERMISSIONS"] == "0"
    assert spec.env["CLAUDERON_PRINT"] == "1"
    assert spec.tty is False


def test_provided_agent_is_mounted_read_only():
    provided = ProvidedAgent(Path("/home/u/.clauderon/agents/claude/2.1.332"), "/usr/bin:/bin")
    spec = build(make_session(), provided=provided)
    mount = next(m for m in spec.mounts if m.target == "/opt/clauderon/agent")
    assert mount.read_only
    assert spec.env["PATH"] == "/usr/bin:/bin:/opt/clauderon/agent/bin"
    assert "PATH" not in build(make_session()).env  # the image's own PATH is left alone


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")))
def test_the_prompt_travels_unchanged(prompt):
    assert build(make_session(prompt=prompt)).env["CLAUDERON_PROMPT"] == prompt


def test_user_env_cannot_replace_clauderon_parameters():
    spec = build(make_session(env={"CLAUDERON_PROMPT": "evil"}))
    assert spec.env["CLAUDERON_PROMPT"] == "Fix the bug"


def test_mountpoints_are_made_by_the_user(tmp_path):
    session = make_session(worktree=str(tmp_path))
    spec = build(session)
    prepare_mountpoints(spec, tmp_path)
    assert (tmp_path / ".cargo" / "registry").is_dir()
    assert (tmp_path / ".cache" / "sccache").is_dir()
    assert (tmp_path / ".config" / "git" / "ignore").exists()


def test_mountpoints_never_follow_a_planted_link(tmp_path):
    # What an agent did (issue 9): `.config` and `.cache` linked to a host directory;
    # `refresh` then created `git/ignore` and `sccache` there.
    worktree, outside = tmp_path / "worktree", tmp_path / "host-dir"
    worktree.mkdir()
    outside.mkdir()
    (worktree / ".config").symlink_to(outside)
    (worktree / ".cache").symlink_to(outside)
    (worktree / ".cargo").mkdir()
    (worktree / ".cargo" / "registry").symlink_to(outside / "registry")
    os.mkfifo(outside / "fifo")
    (worktree / ".clauderon").symlink_to(outside / "fifo")
    spec = build(make_session(worktree=str(worktree)))
    prepare_mountpoints(spec, worktree)
    assert [p.name for p in outside.iterdir()] == ["fifo"]  # nothing created there
    assert not (worktree / ".config").is_symlink() and (worktree / ".config/git/ignore").is_file()
    assert (worktree / ".cache" / "sccache").is_dir() and not (worktree / ".cache").is_symlink()
    assert (worktree / ".cargo" / "registry").is_dir()


def test_a_file_where_a_mount_directory_belongs_is_a_clear_error(tmp_path):
    (tmp_path / ".cargo").write_text("mine")
    with pytest.raises(ClauderonError) as info:
        prepare_mountpoints(build(make_session(worktree=str(tmp_path))), tmp_path)
    assert ".cargo" in info.value.message and "not a directory" in info.value.message
    assert (tmp_path / ".cargo").read_text() == "mine"
