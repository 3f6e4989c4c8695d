"""The container entrypoint, run with POSIX sh and a stand-in `claude` that records argv."""

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clauderon.agents import entrypoint_script

SESSION_ID = "3011c4b0-8bb9-431d-bed6-a9e97eadcc29"
RECORDER = """#!/bin/sh
for arg in "$@"; do printf '%s\\0' "$arg"; done > "$ARGV_OUT"
"""


def run_entrypoint(
    tmp: Path, prompt: str, shell: str = "sh", **env: str
) -> tuple[int, list[str], str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "claude"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    out = tmp / "argv"
    out.unlink(missing_ok=True)
    full_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp / "home"),
        "ARGV_OUT": str(out),
        "CLAUDERON_AGENT": "claude",
        "CLAUDERON_SESSION_ID": SESSION_ID,
        "CLAUDERON_PROMPT": prompt,
        "CLAUDERON_SKIP_PERMISSIONS": "1",
        **env,
    }
    proc = subprocess.run(
        [shell, "-c", entrypoint_script(), "clauderon-entrypoint"],
        env=full_env,
        capture_output=True,
    )
    argv = out.read_bytes().decode().split("\0")[:-1] if out.exists() else []
    return proc.returncode, argv, proc.stderr.decode()


def test_fresh_start_passes_the_prompt_after_the_options(tmp_path):
    code, argv, _ = run_entrypoint(tmp_path, "Fix the bug")
    assert code == 0
    assert argv == ["--session-id", SESSION_ID, "--", "Fix the bug"]


def test_model_is_passed(tmp_path):
    _, argv, _ = run_entrypoint(tmp_path, "p", CLAUDERON_MODEL="claude-sonnet-4-5")
    assert argv[:2] == ["--model", "claude-sonnet-4-5"]


def test_print_mode(tmp_path):
    _, argv, _ = run_entrypoint(tmp_path, "p", CLAUDERON_PRINT="1")
    assert argv == ["--print", "--session-id", SESSION_ID, "--", "p"]


def test_restart_resumes_the_conversation_instead_of_resending(tmp_path):
    transcript = tmp_path / "home" / ".claude" / "projects" / "-workspace-pkg"
    transcript.mkdir(parents=True)
    (transcript / f"{SESSION_ID}.jsonl").write_text("{}\n")
    _, argv, stderr = run_entrypoint(tmp_path, "Fix the bug")
    assert argv == ["--resume", SESSION_ID]
    assert "resuming" in stderr


def test_an_image_without_the_agent_gets_a_clear_error(tmp_path):
    proc = subprocess.run(
        ["sh", "-c", entrypoint_script(), "clauderon-entrypoint"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "CLAUDERON_AGENT": "claude",
            "CLAUDERON_PROMPT": "x",
            "CLAUDERON_SESSION_ID": SESSION_ID,
        },
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 127
    assert "has no 'claude' command" in proc.stderr


prompts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prompt=prompts)
def test_the_prompt_reaches_the_agent_byte_for_byte(tmp_path, prompt):
    _, argv, _ = run_entrypoint(tmp_path, prompt)
    assert argv[-1] == prompt


@pytest.mark.parametrize(
    "prompt",
    ['it\'s "quoted" $HOME `id` $(id) \\n', "-rf /", "--help", "line1\nline2\n", "ünï €", "'"],
)
def test_awkward_prompts(tmp_path, prompt):
    _, argv, _ = run_entrypoint(tmp_path, prompt)
    assert argv[-1] == prompt
    assert argv[-2] == "--"


@pytest.mark.parametrize("shell", ["dash", "busybox sh", "bash --posix"])
def test_the_script_runs_under_other_posix_shells(tmp_path, shell):
    """Images only promise a POSIX shell (Alpine's is busybox): run it, not just parse it."""
    program, *flags = shell.split()
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed here")
    if flags:  # a wrapper, since run_entrypoint takes one executable
        wrapper = tmp_path / "shell"
        wrapper.write_text(f'#!/bin/sh\nexec {path} {" ".join(flags)} "$@"\n')
        wrapper.chmod(0o755)
        path = str(wrapper)
    code, argv, stderr = run_entrypoint(tmp_path, 'it\'s "quoted" $HOME', shell=path)
    assert code == 0, stderr
    assert argv == ["--session-id", SESSION_ID, "--", 'it\'s "quoted" $HOME']
    (tmp_path / "home" / ".claude" / "projects" / "-w").mkdir(parents=True)
    (tmp_path / "home" / ".claude" / "projects" / "-w" / f"{SESSION_ID}.jsonl").write_text("")
    assert run_entrypoint(tmp_path, "p", shell=path)[1] == ["--resume", SESSION_ID]
