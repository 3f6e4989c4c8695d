"""How long a commit made inside a session takes to reach `refs/heads/<name>` on the host.

    python bench/bench_sync.py [--runs 20] [--out results.json]

One session (the agent idles: its model is a closed port). Each round commits inside the
container with `docker exec` (as the session's user) and notes, from the container's own
clock (the host's), when `git commit` returned; the host then polls the branch's ref
file every 5 ms until it names that commit. Every other round is an amend (the replaced
tip is kept under refs/clauderon/...), so both paths of the sync are measured. Floor:
`git fetch` of the same commit from a plain local clone, done by hand — what one sync
costs beyond noticing the change. The daemon looks every second, so the expected
latency is about half a second plus one sync; the issue's target is 2 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchHome, Stats, docker_client, git, log, machine_facts, print_machine

from clauderon.container import container_name

TARGET = 2.0


def ref_of(repo: Path, branch: str) -> str:
    try:
        return (repo / ".git" / "refs" / "heads" / branch).read_text().strip()
    except OSError:
        return git(repo, "rev-parse", f"refs/heads/{branch}", check=False).stdout.strip()


def commit_inside(container, i: int, amend: bool) -> tuple[str, float]:
    command = (
        f"echo {i} > bench.txt && git add bench.txt && "
        + ("git commit -q --amend -m amended" if amend else f"git commit -qm 'round {i}'")
        + " && date +%s.%N && git rev-parse HEAD"
    )
    code, out = container.exec_run(
        ["sh", "-c", command], user=container.attrs["Config"]["User"], workdir="/workspace"
    )
    if code != 0:
        raise RuntimeError(f"commit inside failed: {out.decode(errors='replace')}")
    stamp, sha = out.decode().split()[-2:]
    return sha, float(stamp)


def fetch_floor(repo: Path) -> float:
    """A plain `git fetch` of one new commit from a local clone (no hooks, fsck on)."""
    with tempfile.TemporaryDirectory(prefix="crbench-fetch-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", "--shared", str(repo), str(clone)], check=True)
        (clone / "f.txt").write_text(str(time.time()))
        git(clone, "add", "f.txt")
        git(clone, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "floor")
        start = time.perf_counter()
        git(
            repo,
            "-c",
            "transfer.fsckObjects=true",
            "fetch",
            "-q",
            "--no-tags",
            "--no-write-fetch-head",
            str(clone),
            "HEAD",
        )
        git(repo, "update-ref", "refs/bench-floor", git(clone, "rev-parse", "HEAD").stdout.strip())
        elapsed = time.perf_counter() - start
        git(repo, "update-ref", "-d", "refs/bench-floor")
        return elapsed


def prepare_cost(repo: Path, rounds: int) -> tuple[list[float], list[float]]:
    """What creating a session's git dir adds to a create (in-process, no daemon), next to
    the `git worktree add -b` every create does anyway."""
    from types import SimpleNamespace

    from clauderon import git as cgit
    from clauderon.gitsync import GitSync
    from clauderon.store import Store

    adds, prepares = [], []
    with tempfile.TemporaryDirectory(prefix="crbench-prepare-") as tmp:
        store = Store(Path(tmp) / "db.sqlite")
        sync = GitSync(Path(tmp) / "sessions", store)
        info = cgit.resolve_repo(str(repo))
        for i in range(rounds):
            name = f"bench-prepare-{i}"
            worktree = Path(tmp) / "wt" / name
            start = time.perf_counter()
            admin = cgit.add_worktree(info.root, worktree, name, info.head)
            adds.append(time.perf_counter() - start)
            session = SimpleNamespace(
                id=name,
                name=name,
                branch=name,
                git_common_dir=str(info.common_dir),
                git_dir=str(admin),
                worktree=str(worktree),
            )
            start = time.perf_counter()
            sync.prepare(session, info.head)
            prepares.append(time.perf_counter() - start)
            cgit.remove_worktree(info.root, worktree, admin, info.common_dir)
            cgit.delete_branch(info.root, name)
        store.close()
    return adds, prepares


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    facts = machine_facts()
    print_machine(facts)
    latencies: dict[str, list[float]] = {"commit": [], "amend": []}
    floors: list[float] = []
    home = BenchHome()
    adds, prepares = prepare_cost(home.repo, args.runs)
    try:
        name = home.name("sync", 0)
        home.cli(*home.create_args(name))
        container = docker_client().containers.get(container_name(name, home.instance))
        for i in range(args.runs):
            amend = i % 2 == 1
            sha, committed_at = commit_inside(container, i, amend)
            deadline = time.monotonic() + 30
            while ref_of(home.repo, name) != sha:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round {i}: {sha} never reached the host")
                time.sleep(0.005)
            seen = time.time()
            latencies["amend" if amend else "commit"].append(seen - committed_at)
            floors.append(fetch_floor(home.repo))
            log(
                f"round {i + 1}/{args.runs}: {'amend ' if amend else 'commit'} "
                f"{(seen - committed_at) * 1e3:.0f} ms; fetch floor {floors[-1] * 1e3:.0f} ms"
            )
        kept = git(home.repo, "for-each-ref", f"refs/clauderon/{name}/replaced").stdout
        log(f"replaced tips kept: {len(kept.splitlines())}")
        home.delete_session(name)
    finally:
        for problem in home.close():
            log(f"cleanup: {problem}")

    both = Stats.of(latencies["commit"] + latencies["amend"])
    rows = [
        ("commit inside → `refs/heads/<name>` on the host", Stats.of(latencies["commit"])),
        ("amend inside → on the host (old tip kept)", Stats.of(latencies["amend"])),
        ("all rounds", both),
        (
            "floor: `git fetch` (fsck) of one commit from a local clone + update-ref",
            Stats.of(floors),
        ),
        ("create: making the session's git dir and mirror (in-process)", Stats.of(prepares)),
        ("create: `git worktree add -b` (in-process, for scale)", Stats.of(adds)),
    ]
    print()
    print("| measurement | median | p90 | max | n |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, s in rows:
        print(
            f"| {label} | {s.median * 1e3:.0f} ms | {s.p90 * 1e3:.0f} ms "
            f"| {s.max * 1e3:.0f} ms | {s.n} |"
        )
    verdict = "met" if both.max <= TARGET else "MISSED"
    print(f"| target: every round ≤ {TARGET:.0f} s | {verdict} | | | |")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"machine": facts, **latencies, "floor": floors, "prepare": prepares, "add": adds},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
