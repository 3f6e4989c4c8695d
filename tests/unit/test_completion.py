"""Shell completion of commands, flags and session names (bash, zsh, fish), through the
real `clauderon` entry point. Without a daemon, names complete to nothing and no daemon
is started (completion must never be what starts one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def complete(home: Path, shell: str, words: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "CLAUDERON_HOME": str(home),
        "_CLAUDERON_COMPLETE": f"complete_{shell}",
        **env,
    }
    if shell == "bash":
        parts = words.split(" ")
        environment.update(COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1))
    else:
        environment["_TYPER_COMPLETE_ARGS"] = words
        if shell == "fish":
            environment["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    return subprocess.run(
        [sys.executable, "-m", "clauderon"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_commands_and_flags(tmp_path, shell):
    commands = complete(tmp_path / "home", shell, "clauderon a")
    assert commands.returncode == 0, commands.stderr
    assert "attach" in commands.stdout and "audit" in commands.stdout
    assert "create" not in commands.stdout
    flags = complete(tmp_path / "home", shell, "clauderon create --rep")
    assert "--repo" in flags.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_names_without_a_daemon_start_nothing(tmp_path, shell):
    home = tmp_path / "home"
    result = complete(home, shell, "clauderon attach ")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert not home.exists()  # no daemon, no socket, not even the home


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_and_install(tmp_path, shell):
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "CLAUDERON_HOME": str(tmp_path / "home"),
        "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
    }
    run = [sys.executable, "-m", "clauderon"]
    shown = subprocess.run(
        [*run, "--show-completion", shell], env=env, capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0 and "_CLAUDERON_COMPLETE" in shown.stdout
    installed = subprocess.run(
        [*run, "--install-completion", shell], env=env, capture_output=True, text=True, timeout=30
    )
    assert installed.returncode == 0, installed.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "home" not in p.parts]
    assert any("_CLAUDERON_COMPLETE" in p.read_text() for p in written), written
