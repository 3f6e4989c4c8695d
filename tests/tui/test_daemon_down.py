"""A daemon that cannot start: one clear line, not a blank or broken screen."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_daemon_that_cannot_start_is_one_clear_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[proxy\nport = \n")  # the daemon refuses to start
    result = subprocess.run(
        [sys.executable, "-m", "clauderon", "tui"],
        env={**os.environ, "CLAUDERON_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("clauderon: error: the clauderon daemon failed to start")
    assert "clauderon doctor" in lines[0]
