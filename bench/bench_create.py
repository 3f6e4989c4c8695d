"""How long `clauderon create` takes until the agent runs, against the floor of doing the
same two things by hand: `git worktree add -b` and `docker run -d ... sleep infinity`.

    python bench/bench_create.py [--runs 10] [--no-diagnostics] [--out results.json]

One unmeasured warm-up (create + delete, and one floor) first, so the daemon is up and the
image probe and Docker's caches are warm; then `--runs` rounds of one sample per arm, the
order rotating each round. Three floors: the plain one (default bridge); the same with
`--network none`, as sessions run now (loopback only; the proxy is reached through a
mounted socket); and the same on a user-defined `--internal` bridge with inter-container
traffic off, as sessions ran before (made by this script, labelled `clauderon.bench=1`,
removed at the end). Diagnostic arm (skip with --no-diagnostics): the same create sent to
the API from this process (no CLI start-up; its progress events split the daemon's time
into steps).
Target: median(create) / median(floor) <= 1.5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
from common import (
    BENCH_LABEL,
    IMAGE,
    BenchHome,
    Stats,
    bench_home,
    docker_client,
    git,
    is_agent,
    log,
    machine_facts,
    print_machine,
    run,
    wait_for_process,
)

from clauderon.client import Client
from clauderon.container import container_name

TARGET_RATIO = 1.5
TIMEOUT = 120.0
# What `clauderon create --image IMAGE --env ANTHROPIC_BASE_URL=...` sends (see cli.create).
API_BODY = {
    "prompt": "say hello",
    "backend": "docker",
    "agent": "claude",
    "image": IMAGE,
    "pull_policy": "if-not-present",
    "env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
    "print_mode": False,
    "ask_permissions": False,
}


def until_agent(container: str, operation: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `operation` (which creates the session of `container`) in a thread; time until
    `claude` runs in that container and until the operation returns. The operation's
    result is merged in; its "steps" (perf_counter times of the progress events) become
    offsets from the start."""
    finished: list[float] = []
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(operation())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            finished.append(time.perf_counter())

    start = time.perf_counter()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        agent_at = wait_for_process(
            container,
            is_agent,
            timeout=TIMEOUT,
            # Give up once the creation failed, or 15 s after it succeeded.
            still_trying=lambda: (
                not finished
                or (
                    not isinstance(outcome[0], BaseException)
                    and time.perf_counter() - finished[0] < 15
                )
            ),
        )
    except RuntimeError:
        thread.join(TIMEOUT)
        if isinstance(outcome[0], BaseException):
            raise outcome[0] from None
        raise RuntimeError(f"{container} was created but `claude` never ran in it") from None
    thread.join(TIMEOUT)
    if not finished:
        raise TimeoutError(f"creating {container} did not return within {TIMEOUT:.0f}s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result = {"agent": agent_at - start, "cli": finished[0] - start, **outcome[0]}
    if "steps" in result:
        result["steps"] = {step: at - start for step, at in result["steps"].items()}
    return result


def measure_create(
    home: BenchHome, name: str, deletes: list[float] | None = None, via_api: bool = False
) -> dict[str, Any]:
    """`clauderon create` (a whole CLI process), or with `via_api` the same request from this
    process (no CLI start-up). The session is deleted afterwards, whatever happened."""

    def cli() -> dict[str, Any]:
        run(home.create_cmd(name), env=home.env, timeout=TIMEOUT)
        return {}

    def api() -> dict[str, Any]:
        body = {**API_BODY, "repo": str(home.repo), "name": name, "request_id": str(uuid.uuid4())}
        steps: dict[str, float] = {}
        for event in Client(paths=home.paths).stream("POST", "/api/sessions", json=body):
            # "Creating worktree on branch x" -> "Creating worktree"
            step = " ".join(event.get("message", event["type"]).split()[:2])
            steps.setdefault(step, time.perf_counter())
        return {"steps": steps}

    try:
        return until_agent(container_name(name, home.instance), api if via_api else cli)
    finally:
        deleted = home.delete_session(name)
        if deleted is not None and deletes is not None:
            deletes.append(deleted)


def measure_floor(home: BenchHome, name: str, network: str | None = None) -> dict[str, float]:
    """`git worktree add -b` + `docker run -d ... sleep infinity`, until it runs; with
    `network`, the container joins that network (as a session's does)."""
    worktree = home.root / "floor" / name
    container = f"{name}-floor"
    try:
        start = time.perf_counter()
        git(home.repo, "worktree", "add", "--quiet", "-b", name, str(worktree), "HEAD")
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                container,
                "--label",
                f"{BENCH_LABEL}=1",
                *(["--network", network] if network else []),
                IMAGE,
                "sleep",
                "infinity",
            ]
        )
        returned = time.perf_counter()
        seen = wait_for_process(container, lambda c: c.startswith("sleep"), timeout=TIMEOUT)
        return {"run": returned - start, "agent": seen - start}
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client().containers.get(container).remove(force=True)
        git(home.repo, "worktree", "remove", "--force", "--force", str(worktree), check=False)
        git(home.repo, "worktree", "prune", check=False)
        git(home.repo, "branch", "-D", name, check=False)


def make_bench_network(home: BenchHome) -> str:
    """A network like the one clauderon makes for its sessions: user-defined bridge,
    internal, no inter-container traffic; labelled as the benchmark's."""
    name = f"bench-{home.token}-net"
    run(
        [
            "docker",
            "network",
            "create",
            "--driver",
            "bridge",
            "--internal",
            "--opt",
            "com.docker.network.bridge.enable_icc=false",
            "--label",
            f"{BENCH_LABEL}=1",
            name,
        ]
    )
    return name


def remove_bench_network(name: str) -> None:
    for network in docker_client().networks.list(names=[name]):
        if network.name == name and (network.attrs.get("Labels") or {}).get(BENCH_LABEL) == "1":
            try:
                network.remove()
            except docker.errors.APIError as exc:
                log(f"cleanup: could not remove network {name}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--no-diagnostics",
        action="store_true",
        help="skip the diagnostic arm (create through the API in-process)",
    )
    parser.add_argument("--out", type=Path, help="write the raw samples here (JSON)")
    args = parser.parse_args()

    facts = machine_facts()
    print_machine(facts)
    arms = ["create", "floor", "nonefloor", "iccfloor"] + ([] if args.no_diagnostics else ["api"])
    samples: dict[str, list[dict]] = {arm: [] for arm in arms}
    delete_times: list[float] = []
    with bench_home() as home, contextlib.ExitStack() as cleanup:
        log(f"home {home.home} (instance {home.instance}), image {IMAGE}")
        bench_network = make_bench_network(home)
        cleanup.callback(remove_bench_network, bench_network)
        probes_cold = home.image_probes()  # a new home: none
        cold = measure_create(home, home.name("warm", 0))
        measure_floor(home, home.name("warmfloor", 0))
        measure_floor(home, home.name("warmicc", 0), network=bench_network)
        measure_floor(home, home.name("warmnone", 0), network="none")
        daemon_before = home.daemon_status()
        probes_before = home.image_probes()
        log(
            f"warm-up: cold create agent after {cold['agent'] * 1e3:.0f} ms; {daemon_before}; "
            f"image facts cached: {probes_before} (before the warm-up: {probes_cold})"
        )
        for i in range(args.runs):
            shift = i % len(arms)  # A-B-C, B-C-A, C-A-B, ...: drift hits every arm alike
            for arm in arms[shift:] + arms[:shift]:
                if arm == "create":
                    sample = measure_create(home, home.name("c", i), delete_times)
                elif arm == "api":
                    sample = measure_create(home, home.name("a", i), via_api=True)
                elif arm == "nonefloor":
                    sample = measure_floor(home, home.name("n", i), network="none")
                elif arm == "iccfloor":
                    sample = measure_floor(home, home.name("i", i), network=bench_network)
                else:
                    sample = measure_floor(home, home.name("f", i))
                samples[arm].append(sample)
                shown = ", ".join(
                    f"{k} {v * 1e3:.0f} ms" for k, v in sample.items() if isinstance(v, float)
                )
                log(f"run {i + 1}/{args.runs} {arm:6}: {shown}")
        daemon_after = home.daemon_status()
        probes_after = home.image_probes()

    def stats(arm: str, key: str) -> Stats:
        return Stats.of([s[key] for s in samples.get(arm, [])])

    c_agent, f_agent, f_run, i_agent, n_agent = (
        stats("create", "agent"),
        stats("floor", "agent"),
        stats("floor", "run"),
        stats("iccfloor", "agent"),
        stats("nonefloor", "agent"),
    )
    ratio_none = c_agent.median / n_agent.median
    verdict_none = "met" if ratio_none <= TARGET_RATIO else "MISSED"
    ratio = c_agent.median / f_agent.median
    ratio_icc = c_agent.median / i_agent.median
    verdict_icc = "met" if ratio_icc <= TARGET_RATIO else "MISSED"
    reprobed = probes_after != probes_before or not probes_before
    same_daemon = daemon_before == daemon_after
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    rows = [
        ("`clauderon create` until `claude` runs", c_agent),
        ("`clauderon create` until the CLI returns", stats("create", "cli")),
        ("floor: `git worktree add -b` + `docker run -d`, until `sleep` runs", f_agent),
        ("floor: `git worktree add -b` + `docker run -d`, until it returns", f_run),
        ("floor with `--network none`, as sessions run, until `sleep` runs", n_agent),
        (
            "floor on an `--internal`, ICC-off bridge, as sessions ran before 0.2 (`docker "
            "run -d --network bench-net`), until `sleep` runs",
            i_agent,
        ),
    ]
    if "api" in samples:
        rows += [
            (
                "same create via the API in-process (no CLI start), until `claude` runs",
                stats("api", "agent"),
            ),
            ("same create via the API in-process, until the answer", stats("api", "cli")),
        ]
    rows.append(("`clauderon delete --force` (CLI)", Stats.of(delete_times)))

    print()
    for label, s in rows:
        print(f"{label:72} {s.ms()}")
    if samples.get("api"):
        print("API create, median time of each progress event since the request was sent:")
        for step in samples["api"][0]["steps"]:
            at = Stats.of([s["steps"][step] for s in samples["api"] if step in s["steps"]])
            print(f"  {step:24} {at.median * 1e3:6.0f} ms")
    print(
        f"cold first create (daemon start + image probe): agent after {cold['agent'] * 1e3:.0f} ms"
    )
    print(
        f"daemon: {daemon_before} (same daemon for every measured run: {same_daemon}); "
        f"image facts cached before the first measured run: {bool(probes_before)}, "
        f"image probed again during the measured runs: {reprobed}"
    )
    print(f"ratio median(create)/median(floor) = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
    print(
        f"ratio median(create)/median(floor with --network none) = {ratio_none:.2f} "
        f"(target <= {TARGET_RATIO}: {verdict_none})"
    )
    print(
        f"ratio median(create)/median(floor on an internal ICC-off network) = {ratio_icc:.2f} "
        f"(target <= {TARGET_RATIO}: {verdict_icc})"
    )
    print()
    print("| measurement | median | p90 | max | n |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, s in rows:
        print(
            f"| {label} | {s.median * 1e3:.0f} ms | {s.p90 * 1e3:.0f} ms "
            f"| {s.max * 1e3:.0f} ms | {s.n} |"
        )
    print(f"| **ratio** create / floor (until running) | **{ratio:.2f}** | | | |")
    print(
        f"| **ratio** create / floor with `--network none` (until running) "
        f"| **{ratio_none:.2f}** | | | |"
    )
    print(
        f"| floor `--network none` / floor on the internal bridge "
        f"| {n_agent.median / i_agent.median:.2f} | | | |"
    )
    print(
        f"| **ratio** create / floor on an internal ICC-off bridge (until running) "
        f"| **{ratio_icc:.2f}** | | | |"
    )
    ratio_run = c_agent.median / f_run.median
    print(f"| ratio create / floor (until `docker run` returns) | {ratio_run:.2f} | | | |")
    if "api" in samples:
        ratio_api = stats("api", "agent").median / f_agent.median
        print(f"| ratio API create / floor (until running) | {ratio_api:.2f} | | | |")
    print(f"| target: ratio ≤ {TARGET_RATIO}, plain floor | {verdict} | | | |")
    print(
        f"| target: ratio ≤ {TARGET_RATIO}, floor with the same network (none) "
        f"| {verdict_none} | | | |"
    )
    print(
        f"| cold first create (daemon start + image probe) | {cold['agent'] * 1e3:.0f} ms | | | 1 |"
    )

    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "machine": facts,
                    **samples,
                    "delete": delete_times,
                    "cold": cold,
                    "daemon": [daemon_before, daemon_after],
                    "image_probes": [probes_cold, probes_before, probes_after],
                    "ratio": ratio,
                    "ratio_icc": ratio_icc,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
