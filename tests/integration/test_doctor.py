"""`clauderon doctor` as users run it: root, a normal user, no iptables on the PATH, no
engine. It never shows a traceback, and every line is ok, or a problem with its fix."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LINE = re.compile(r"^\[(ok  |warn|FAIL)\] [a-z ()/.0-9_-]+: .+$")


def doctor(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clauderon", "doctor"],
        env={**os.environ, "CLAUDERON_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def checks(output: str) -> dict[str, tuple[str, str, str]]:
    """name → (mark, detail, fix) from doctor's output; every line must be a check."""
    found: dict[str, tuple[str, str, str]] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("       fix: "):
            continue
        assert LINE.match(line), line
        mark, rest = line[1:5], line[7:]
        name, _, detail = rest.partition(": ")
        fix = ""
        if i + 1 < len(lines) and lines[i + 1].startswith("       fix: "):
            fix = lines[i + 1].removeprefix("       fix: ")
        if mark != "ok  ":
            assert fix, f"{name} has a problem but no fix"
        found[name] = (mark.strip(), detail, fix)
    return found


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.docker
def test_doctor_as_a_normal_user(tmp_path: Path) -> None:
    if os.getuid() == 0:
        pytest.skip("runs as the normal user (scripts/test.sh runs the suite as one)")
    result = doctor(tmp_path / "home")
    no_traceback(result)
    found = checks(result.stdout)
    assert found["user"][0] == "ok" and f"uid {os.getuid()}" in found["user"][1]
    assert found["docker"][0] == "ok", found["docker"]
    assert found["isolation"][0] == "ok" and "no network but loopback" in found["isolation"][1]
    assert "root" not in found["isolation"][1].replace("no root needed", "")
    assert result.returncode == 0, result.stdout


@pytest.mark.root
@pytest.mark.docker
def test_doctor_as_root(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root (scripts/test.sh runs the `root` tests as root)")
    result = doctor(tmp_path / "home")
    no_traceback(result)
    found = checks(result.stdout)
    assert found["user"][0] == "ok" and "running as root" in found["user"][1]
    assert found["isolation"][0] == "ok"
    assert result.returncode == 0, result.stdout


@pytest.mark.docker
def test_doctor_without_iptables_on_the_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "cc", "npm", "docker"):  # what doctor may use; never iptables
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = doctor(tmp_path / "home", PATH=str(bin_dir))
    no_traceback(result)
    found = checks(result.stdout)
    assert found["isolation"][0] == "ok"
    assert "iptables -" not in result.stdout and "iptables:" not in result.stdout


def test_doctor_without_an_engine(tmp_path: Path) -> None:
    dead = tmp_path / "dead.sock"  # nothing listens here
    result = doctor(tmp_path / "home", DOCKER_HOST=f"unix://{dead}")
    no_traceback(result)
    found = checks(result.stdout)
    assert found["docker"][0] == "FAIL" and "not running or not reachable" in found["docker"][1]
    assert "docker" in found["docker"][2]
    assert found["isolation"][0] == "warn" and "cannot be checked" in found["isolation"][1]
    assert result.returncode == 1


def test_doctor_without_a_compiler_says_create_will_refuse(tmp_path: Path) -> None:
    result = doctor(
        tmp_path / "home", CC=str(tmp_path / "no-cc"), PATH=str(tmp_path), DOCKER_HOST="unix:///x"
    )
    no_traceback(result)
    found = checks(result.stdout)
    mark, detail, fix = found["forwarder"]
    assert mark == "FAIL" and "no C compiler" in detail
    assert fix == "sudo apt-get install gcc libc6-dev"


def test_doctor_checks_the_web_uis_assets(tmp_path: Path) -> None:
    from clauderon.doctor import web_assets_check
    from clauderon.web.assets import STAMP, VENDOR

    result = doctor(tmp_path / "home", DOCKER_HOST="unix:///x")
    no_traceback(result)
    mark, detail, _fix = checks(result.stdout)["web ui"]
    assert mark == "ok" and "xterm" in detail  # scripts/test.sh and install.sh fetch them
    # Missing, incomplete, or from other versions than the pinned ones: say how to fetch.
    vendor = tmp_path / "vendor"
    for problem in ("missing", "incomplete", "other versions"):
        shutil.rmtree(vendor, ignore_errors=True)
        if problem != "missing":
            shutil.copytree(VENDOR, vendor)
        if problem == "incomplete":
            (vendor / "xterm.mjs").unlink()
        if problem == "other versions":
            (vendor / STAMP).write_text("@xterm/xterm@5.0.0 sha512-an-older-one\n")
        check = web_assets_check(vendor)
        assert not check.ok and check.warning, problem
        assert problem in check.detail
        assert "clauderon web --fetch-assets" in check.fix
    assert web_assets_check(VENDOR).ok
