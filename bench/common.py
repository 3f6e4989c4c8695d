"""Shared helpers of the benchmarks: a throw-away clauderon home, a small git repository,
the CLI runner, polling `docker top`, cleanup that never touches anything not ours, the
statistics (`Stats`) and a process's CPU time (`cpu_seconds`). Requests to the daemon go
through `clauderon.client`, the client every command uses.

Everything a benchmark makes is named with one random token (`bench-<token>-...`) and
lives in a temp home, so a run can be told from other users of the same Docker engine and
cleaned up without touching them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from clauderon.container import container_name
from clauderon.paths import Paths

IMAGE = "clauderon-agents:bookworm"
BENCH_LABEL = "clauderon.bench"
# Points the agent at a closed loopback port: it starts its TUI and reaches nothing.
AGENT_ENV = ["--env", "ANTHROPIC_BASE_URL=http://127.0.0.1:9"]
POLL_INTERVAL = 0.02

_docker: docker.DockerClient | None = None


def docker_client() -> docker.DockerClient:
    global _docker
    if _docker is None:
        _docker = docker.from_env(timeout=60)
    return _docker


def clauderon_cmd() -> list[str]:
    """The `clauderon` script of this interpreter's environment (what a user runs)."""
    script = Path(sys.executable).with_name("clauderon")
    return [str(script)] if script.exists() else [sys.executable, "-m", "clauderon"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- statistics -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    p90: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan)
        ordered = sorted(samples)
        rank = max(1, math.ceil(0.9 * len(ordered)))  # nearest-rank p90
        return cls(
            len(ordered), statistics.median(ordered), ordered[rank - 1], ordered[0], ordered[-1]
        )

    def ms(self) -> str:
        return (
            f"median {self.median * 1e3:7.1f} ms  p90 {self.p90 * 1e3:7.1f} ms  "
            f"min {self.min * 1e3:7.1f}  max {self.max * 1e3:7.1f}  (n={self.n})"
        )


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


# --- the machine ----------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu_model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_server": out("docker", "version", "--format", "{{.Server.Version}}"),
        "docker_client": out("docker", "version", "--format", "{{.Client.Version}}"),
        "git": out("git", "--version"),
    }


def print_machine(facts: dict[str, str]) -> None:
    log(
        f"machine: {facts['cpus']} CPUs ({facts['cpu_model']}), {facts['memory']} RAM, "
        f"kernel {facts['kernel']}, Python {facts['python']}, Docker "
        f"{facts['docker_server']} (CLI {facts['docker_client']}), {facts['git']}; "
        f"{facts['date']}"
    )


# --- processes ------------------------------------------------------------------------


def run(
    cmd: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = True,
    timeout: float = 300,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run a command to the end; return (wall seconds, result)."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    return elapsed, proc


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["git", "-C", str(repo), *args], check=check)[1]


def make_repo(parent: Path) -> Path:
    """A small repository: a few files in two directories, one commit on `main`."""
    repo = parent / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# bench\n\nA repository for clauderon's benchmarks.\n")
    (repo / "src" / "app.py").write_text("def main():\n    print('hello')\n")
    (repo / "src" / "util.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", ".")
    git(
        repo,
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "--quiet",
        "-m",
        "initial",
    )
    return repo


# --- docker ---------------------------------------------------------------------------


def top_commands(container: str) -> list[str] | None:
    """The command lines running in `container`, or None while it does not run."""
    try:
        top = docker_client().api.top(container)
    except docker.errors.APIError:  # not created yet (404) or not running yet (409)
        return None
    titles = top.get("Titles") or []
    column = titles.index("CMD") if "CMD" in titles else -1
    return [proc[column] for proc in top.get("Processes") or []]


def wait_for_process(
    container: str,
    matches: Callable[[str], bool],
    timeout: float = 60.0,
    still_trying: Callable[[], bool] = lambda: True,
) -> float:
    """Poll `docker top` every POLL_INTERVAL until a process matches; return the time
    (perf_counter) it was first seen. Raises TimeoutError."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        commands = top_commands(container)
        if commands and any(matches(c) for c in commands):
            return time.perf_counter()
        if not still_trying():
            raise RuntimeError(f"gave up waiting for a process in {container}")
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"no matching process in {container} within {timeout:.0f}s")


def is_agent(command: str) -> bool:
    """The agent's process: the entrypoint execs `claude --session-id ... -- PROMPT`."""
    return command.startswith("claude ") or command.split(" ", 1)[0].endswith("/claude")


def remove_containers(**filters: Any) -> list[str]:
    """Force-remove every container matching the label filters; return their names."""
    removed = []
    for container in docker_client().containers.list(all=True, filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def containers_with_label(label: str) -> list[str]:
    return [c.name for c in docker_client().containers.list(all=True, filters={"label": label})]


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction of all CPUs busy over `interval` seconds (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_quiet(threshold: float = 0.3, max_wait: float = 90.0) -> float:
    """Wait until the CPUs are less than `threshold` busy for 3 s in a row (at most
    `max_wait` s: the machine may be shared); return the last busy fraction."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    busy = 1.0
    while time.monotonic() < deadline and quiet < 3:
        busy = cpu_busy()
        quiet = quiet + 1 if busy < threshold else 0
    return busy


# --- a throw-away clauderon home ------------------------------------------------------


class BenchHome:
    """A temp dir holding a CLAUDERON_HOME and a repository; everything made under it is
    removed on close: sessions, the daemon, this instance's containers and network."""

    def __init__(self) -> None:
        # Short path: the daemon's Unix socket path must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="crbench-", dir="/tmp"))
        self.home = self.root / "home"
        self.paths = Paths(self.home.absolute())
        self.token = secrets.token_hex(3)
        self.env = {**os.environ, "CLAUDERON_HOME": str(self.home)}
        self.repo = make_repo(self.root)
        self.leftovers: list[str] = []

    @property
    def instance(self) -> str:
        return self.paths.instance

    def name(self, kind: str, i: int | str) -> str:
        return f"bench-{self.token}-{kind}{i}"

    def cli(self, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        return run([*clauderon_cmd(), *args], env=self.env, check=check)

    def create_cmd(self, name: str) -> list[str]:
        return [*clauderon_cmd(), *self.create_args(name)]

    def create_args(self, name: str) -> list[str]:
        return [
            "create",
            "--repo",
            str(self.repo),
            "--prompt",
            "say hello",
            "--image",
            IMAGE,
            "--name",
            name,
            *AGENT_ENV,
            "--json",
        ]

    def image_probes(self) -> list[tuple[str, str]]:
        """(image id, probed at) of the image facts in this home's store: the daemon probes
        an image once and keeps the answer here (read-only peek; [] if unreadable)."""
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.paths.db}?mode=ro", uri=True, timeout=5)
            ) as db:
                rows = db.execute("SELECT image_id, probed_at FROM image_facts").fetchall()
            return sorted((str(a)[:19], str(b)) for a, b in rows)
        except sqlite3.Error:
            return []

    def daemon_status(self) -> str:
        _, proc = self.cli("daemon", "status", check=False)
        return proc.stdout.strip() or proc.stderr.strip()

    def delete_session(self, name: str) -> float | None:
        """`clauderon delete --force`; on failure, remove its parts by hand and say so."""
        try:
            elapsed, _ = self.cli("delete", "--force", name)
            return elapsed
        except Exception as exc:
            if "no session named" not in str(exc):  # (a creation that failed: nothing to do)
                self.leftovers.append(f"delete {name} failed: {exc}")
            self.force_remove(name)
            return None

    def force_remove(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client().containers.get(container_name(name, self.instance)).remove(force=True)
        worktree = self.paths.worktree(name)
        if worktree.exists():
            git(self.repo, "worktree", "remove", "--force", "--force", str(worktree), check=False)
            shutil.rmtree(worktree, ignore_errors=True)
        git(self.repo, "worktree", "prune", check=False)
        git(self.repo, "branch", "-D", name, check=False)

    def sessions(self) -> list[dict[str, Any]]:
        _, proc = self.cli("list", "--archived", "--json")
        return json.loads(proc.stdout)

    def check_clean(self) -> list[str]:
        """What this run left behind (empty when clean)."""
        problems = []
        with contextlib.suppress(Exception):
            names = [s["name"] for s in self.sessions()]
            if names:
                problems.append(f"sessions still listed: {names}")
        containers = containers_with_label(f"clauderon.instance={self.instance}")
        if containers:
            problems.append(f"containers of this instance: {containers}")
        floors = [c for c in containers_with_label(f"{BENCH_LABEL}=1") if self.token in c]
        if floors:
            problems.append(f"floor containers: {floors}")
        worktrees = git(self.repo, "worktree", "list", "--porcelain").stdout.count("worktree ")
        if worktrees != 1:
            problems.append(f"{worktrees - 1} extra worktree(s) registered in the repo")
        branches = git(self.repo, "branch", "--format=%(refname:short)").stdout.split()
        if branches != ["main"]:
            problems.append(f"branches besides main: {[b for b in branches if b != 'main']}")
        if self.paths.worktrees.is_dir() and any(self.paths.worktrees.iterdir()):
            problems.append(f"directories in {self.paths.worktrees}")
        return problems

    def close(self) -> list[str]:
        """Delete what is left, stop the daemon, remove this instance's docker resources;
        return what had been left behind by clauderon (for the report)."""
        problems = []
        with contextlib.suppress(Exception):
            for session in self.sessions():
                problems.append(f"session {session['name']} was still there at the end")
                self.delete_session(session["name"])
        problems += self.check_clean()
        with contextlib.suppress(Exception):
            self.cli("daemon", "stop", check=False)
        self._kill_daemon()
        for name in remove_containers(label=f"clauderon.instance={self.instance}"):
            problems.append(f"removed leftover container {name}")
        for container in docker_client().containers.list(
            all=True, filters={"label": f"{BENCH_LABEL}=1"}
        ):
            if self.token in container.name:
                container.remove(force=True)
        # The daemon releases its network on stop when no session has a container; if it
        # did not: reported.
        for network in docker_client().networks.list(names=[f"clauderon-{self.instance}"]):
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
                log(f"note: network {network.name} outlived `daemon stop`; removed it")
        shutil.rmtree(self.root, ignore_errors=True)
        return self.leftovers + problems

    def _kill_daemon(self) -> None:
        """If `daemon stop` failed, end this home's daemon (by the pid in its lock file,
        checked to belong to this home) so deleting the home leaves no orphan behind."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.paths.daemon_lock.read_text().strip())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # it may still be exiting (it takes ~2 s)
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                if f"CLAUDERON_HOME={self.home}".encode() not in environ:
                    return
                time.sleep(0.1)
            os.kill(pid, signal.SIGTERM)
            log(f"cleanup: daemon pid {pid} still running 10 s after `daemon stop`; SIGTERM")


@contextlib.contextmanager
def bench_home() -> Iterator[BenchHome]:
    home = BenchHome()
    try:
        yield home
    finally:
        notes = home.close()
        for note in notes:
            log(f"cleanup: {note}")


def settle_after_creating(created: list[str], instance: str, max_wait: float) -> float:
    """Warn about sessions whose agent is not up yet, then let the machine calm down
    before measuring; return how busy the CPUs still were."""
    waiting = [
        n
        for n in created
        if not any(map(is_agent, top_commands(container_name(n, instance)) or []))
    ]
    if waiting:
        log(f"warning: no agent process seen yet in {waiting}")
    return wait_for_quiet(max_wait=max_wait)


def interleaved(arms: dict[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """One unmeasured round (page cache, pyc files), then `runs` rounds of every arm, the
    order rotated each round so the machine's drift hits every arm alike."""
    for measure in arms.values():
        measure()
    keys = list(arms)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(runs):
        shift = i % len(keys)
        for key in keys[shift:] + keys[:shift]:
            samples[key].append(arms[key]())
    return samples


def delete_created(home: BenchHome, created: list[str]) -> None:
    """Delete a benchmark's sessions and say whether anything was left behind."""
    start = time.perf_counter()
    for name in created:
        home.delete_session(name)
    log(f"deleted {len(created)} sessions in {time.perf_counter() - start:.1f} s")
    left = home.check_clean()
    log("nothing left behind" if not left else f"LEFT BEHIND: {left}")
