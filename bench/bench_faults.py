"""Fault injection: the daemon killed mid-operation, containers killed or removed behind
its back, deletes racing each other. Counts runs, failures and work lost (target: 0 of
each) for docs/benchmarks.md's reliability section.

    python bench/bench_faults.py [--runs 3] [--sessions 6] [--out raw.json]

A failure is any run after which the store, the containers, the worktrees and the
branches disagree, or an operation that should succeed did not. Work lost counts sessions
whose commit or uncommitted file is not reachable afterwards (from their branch, or from
the refs `delete --force` saves under refs/clauderon/<name>/).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    BenchHome,
    bench_home,
    clauderon_cmd,
    docker_client,
    git,
    log,
    machine_facts,
    print_machine,
)

from clauderon.container import container_name


def kill_daemon(home: BenchHome) -> None:
    pid = int(home.paths.daemon_lock.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def create_many(home: BenchHome, names: list[str]) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            home.create_cmd(name),
            env=home.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]


def create_sessions(home: BenchHome, names: list[str]) -> None:
    for proc in create_many(home, names):
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"create failed: {err.strip()}")


def make_work(home: BenchHome, name: str) -> tuple[str, str]:
    """A commit and an uncommitted file made inside the session; returns (commit, file)."""
    container = docker_client().containers.get(container_name(name, home.instance))
    user = container.attrs["Config"]["User"]
    script = (
        f"echo {name} > committed-{name}.txt && git add committed-{name}.txt && "
        f"git commit -qm 'work of {name}' && git rev-parse HEAD && "
        f"echo {name} > uncommitted-{name}.txt"
    )
    code, out = container.exec_run(["sh", "-c", script], user=user, workdir="/workspace")
    if code != 0:
        raise RuntimeError(f"making work in {name} failed: {out.decode(errors='replace')}")
    return out.decode().split()[-1], f"uncommitted-{name}.txt"


def work_is_kept(home: BenchHome, name: str, commit: str, file: str) -> bool:
    """The commit and the file are reachable from the session's branch or a saved ref."""
    refs = git(home.repo, "for-each-ref", "--format=%(refname)", f"refs/clauderon/{name}/")
    candidates = refs.stdout.split()
    if (
        git(
            home.repo, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", check=False
        ).returncode
        == 0
    ):
        candidates.append(f"refs/heads/{name}")
    has_commit = any(
        git(home.repo, "merge-base", "--is-ancestor", commit, ref, check=False).returncode == 0
        for ref in candidates
    )
    has_file = (
        any(
            git(home.repo, "cat-file", "-e", f"{ref}:{file}", check=False).returncode == 0
            for ref in candidates
        )
        or (home.paths.worktree(name) / file).exists()
    )
    return has_commit and has_file


def consistent(home: BenchHome) -> list[str]:
    """Whole sessions or nothing: every session has its container, worktree and branch,
    and nothing exists without a session."""
    problems = []
    sessions = home.sessions()
    names = sorted(s["name"] for s in sessions)
    for s in sessions:
        if s["status"] not in ("running", "stopped"):
            problems.append(f"{s['name']} is {s['status']}: {s.get('error')}")
    containers = sorted(
        c.labels.get("clauderon.session", "?")
        for c in docker_client().containers.list(
            all=True, filters={"label": f"clauderon.instance={home.instance}"}
        )
        if c.labels.get("clauderon.role") is None
    )
    worktrees = sorted(p.name for p in home.paths.worktrees.iterdir())
    branches = sorted(
        b
        for b in git(home.repo, "branch", "--format=%(refname:short)").stdout.split()
        if b != "main"
    )
    registered = git(home.repo, "worktree", "list", "--porcelain").stdout.count("worktree ") - 1
    for what, found in (
        ("containers", containers),
        ("worktrees", worktrees),
        ("branches", branches),
    ):
        if found != names:
            problems.append(f"{what} {found} != sessions {names}")
    if registered != len(names):
        problems.append(f"{registered} worktrees registered for {len(names)} sessions")
    return problems


# --- scenarios: each returns (problems, work lost) ----------------------------------


def kill_during_creates(home: BenchHome, n: int, rng: random.Random) -> tuple[list[str], int]:
    home.cli("list")  # the daemon is up, so the kill hits creations, not its start
    names = [home.name("c", i) for i in range(n)]
    procs = create_many(home, names)
    time.sleep(rng.uniform(0.2, 2.5))
    kill_daemon(home)
    for proc in procs:
        proc.communicate(timeout=120)
    problems = consistent(home)
    for session in home.sessions():
        home.cli("delete", "--force", session["name"])
    return problems, 0


def kill_during_deletes(home: BenchHome, n: int, rng: random.Random) -> tuple[list[str], int]:
    names = [home.name("d", i) for i in range(n)]
    create_sessions(home, names)
    work = {name: make_work(home, name) for name in names}
    procs = [
        subprocess.Popen(
            [*clauderon_cmd(), "delete", "--force", name],
            env=home.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names
    ]
    time.sleep(rng.uniform(0.05, 1.5))
    kill_daemon(home)
    for proc in procs:
        proc.wait(timeout=120)
    problems = consistent(home)  # restarts the daemon: it finishes the deletes
    for session in home.sessions():
        home.cli("delete", "--force", session["name"])
    lost = sum(not work_is_kept(home, name, *work[name]) for name in names)
    return problems, lost


def containers_killed_and_removed(
    home: BenchHome, n: int, rng: random.Random
) -> tuple[list[str], int]:
    names = [home.name("k", i) for i in range(n)]
    create_sessions(home, names)
    for i, name in enumerate(names):
        container = docker_client().containers.get(container_name(name, home.instance))
        if i % 2:
            container.kill()
        else:
            container.remove(force=True)
    home.cli("reconcile")
    problems = consistent(home)
    for session in home.sessions():
        if session["state"] != "running":
            problems.append(f"{session['name']} is {session['state']} after reconcile")
        home.cli("delete", "--force", session["name"])
    return problems, 0


def parallel_deletes(home: BenchHome, n: int, rng: random.Random) -> tuple[list[str], int]:
    names = [home.name("p", i) for i in range(n)]
    create_sessions(home, names)
    work = {name: make_work(home, name) for name in names}
    problems = []

    def delete(name: str) -> None:
        _, proc = home.cli("delete", "--force", name, check=False)
        if proc.returncode != 0:
            problems.append(f"delete {name}: {proc.stderr.strip()}")

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(delete, names))
    problems += consistent(home)
    lost = sum(not work_is_kept(home, name, *work[name]) for name in names)
    return problems, lost


SCENARIOS: dict[str, Callable[[BenchHome, int, random.Random], tuple[list[str], int]]] = {
    "kill -9 during parallel creates": kill_during_creates,
    "kill -9 during parallel deletes --force": kill_during_deletes,
    "containers killed / removed behind the daemon": containers_killed_and_removed,
    "parallel deletes --force (10 at once)": parallel_deletes,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    facts = machine_facts()
    print_machine(facts)
    log(f"seed {seed}")
    results: dict[str, dict[str, Any]] = {}
    for title, scenario in SCENARIOS.items():
        outcome = results.setdefault(title, {"runs": 0, "failures": 0, "lost": 0, "notes": []})
        n = 10 if scenario is parallel_deletes else args.sessions
        for run in range(args.runs):
            with bench_home() as home:
                try:
                    problems, lost = scenario(home, n, rng)
                except Exception as exc:  # an operation that should work did not
                    problems, lost = [f"{type(exc).__name__}: {exc}"], 0
            outcome["runs"] += 1
            outcome["failures"] += bool(problems)
            outcome["lost"] += lost
            outcome["notes"] += problems
            log(f"{title} run {run + 1}: {problems or 'ok'}; work lost {lost}")
    print("\n| scenario | runs | failed runs | sessions with work lost |")
    print("| --- | --- | --- | --- |")
    for title, outcome in results.items():
        print(f"| {title} | {outcome['runs']} | {outcome['failures']} | {outcome['lost']} |")
    if args.out:
        args.out.write_text(
            json.dumps({"facts": facts, "seed": seed, "results": results}, indent=2)
        )
    return 1 if any(o["failures"] or o["lost"] for o in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
