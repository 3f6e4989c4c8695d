"""How long `clauderon list` takes with 50 sessions, as a user sees it (a whole CLI process),
against the floors `python -c pass` and `docker ps -a --filter label=...`.

    python bench/bench_list.py [--sessions 50] [--runs 20] [--out results.json]

The arms are interleaved (round robin, the order rotating every round) so drift on a
shared machine hits them alike. Extra arms split the CLI's time: importing
`clauderon.cli` (and typer's pydantic adapters), the client set-up and the daemon call.
Target: median <= 200 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    Stats,
    bench_home,
    clauderon_cmd,
    delete_created,
    interleaved,
    log,
    machine_facts,
    print_machine,
    run,
    settle_after_creating,
)

from clauderon.client import Client

TARGET = 0.200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--settle",
        type=float,
        default=90.0,
        help="at most this many seconds for the CPUs to calm down",
    )
    parser.add_argument("--out", type=Path, help="write the raw samples here (JSON)")
    args = parser.parse_args()

    facts = machine_facts()
    print_machine(facts)
    samples: dict[str, list[float]] = {}
    with bench_home() as home:
        log(f"home {home.home} (instance {home.instance}); creating {args.sessions} sessions")
        names = [home.name("s", i) for i in range(args.sessions)]
        created: list[str] = []
        try:
            start = time.perf_counter()
            for name in names:
                home.cli(*home.create_args(name))
                created.append(name)
            log(f"created {len(created)} sessions in {time.perf_counter() - start:.1f} s")
            busy = settle_after_creating(created, home.instance, args.settle)
            log(f"CPU busy {busy:.0%} when measuring starts")

            python = sys.executable
            cli = clauderon_cmd()

            def client_setup() -> float:
                start = time.perf_counter()
                Client(paths=home.paths, autostart=False)
                return time.perf_counter() - start

            def daemon_call() -> float:  # what `list` asks, on a client made beforehand
                client = Client(paths=home.paths, autostart=False)
                start = time.perf_counter()
                client.request("GET", "/api/sessions", params={"archived": False})
                return time.perf_counter() - start

            def subprocess_arm(cmd: list[str]) -> Callable[[], float]:
                return lambda: run(cmd, env=home.env)[0]

            arms: dict[str, Callable[[], float]] = {
                "clauderon list": subprocess_arm([*cli, "list"]),
                "clauderon list --json": subprocess_arm([*cli, "list", "--json"]),
                "python -c pass": subprocess_arm([python, "-c", "pass"]),
                "python -c 'import clauderon.cli'": subprocess_arm(
                    [python, "-c", "import clauderon.cli"]
                ),
                "in-process: Client() (set-up)": client_setup,
                "in-process: GET /api/sessions (connect + request)": daemon_call,
                "docker ps -a --filter label=clauderon.instance=…": subprocess_arm(
                    ["docker", "ps", "-a", "--filter", f"label=clauderon.instance={home.instance}"]
                ),
            }
            if importlib.util.find_spec("typer._adapters"):
                # typer >= 0.2x coerces every option through a pydantic TypeAdapter.
                arms["python -c 'import clauderon.cli, typer._adapters'"] = subprocess_arm(
                    [python, "-c", "import clauderon.cli, typer._adapters"]
                )
            # Check what is measured: every session listed, in both forms.
            listed = json.loads(run([*cli, "list", "--json"], env=home.env)[1].stdout)
            table = run([*cli, "list"], env=home.env)[1].stdout.splitlines()
            log(f"list --json shows {len(listed)} sessions, list prints {len(table) - 1} rows")
            with_work = sum(1 for s in listed if s.get("changed_files") is not None)
            log(f"{with_work} sessions show their work numbers (ahead/behind/files/dirty)")
            states = sorted({s["state"] for s in listed})
            log(f"states: {states}; load average {os.getloadavg()}")
            samples = interleaved(arms, args.runs)
            log(f"load average after: {os.getloadavg()}")
        finally:
            delete_created(home, created)

    stats = {k: Stats.of(v) for k, v in samples.items()}
    print()
    for key, s in stats.items():
        print(f"{key:58} {s.ms()}")
    plain, as_json = stats["clauderon list"], stats["clauderon list --json"]
    verdict = "met" if max(plain.median, as_json.median) <= TARGET else "MISSED"
    print(f"target: median <= {TARGET * 1e3:.0f} ms: {verdict}")
    print()
    print(f"| measurement ({args.sessions} sessions) | median | p90 | max | n |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, s in stats.items():
        label = key if key.startswith("in-process") else f"`{key}`"
        print(
            f"| {label} | {s.median * 1e3:.0f} ms | {s.p90 * 1e3:.0f} ms "
            f"| {s.max * 1e3:.0f} ms | {s.n} |"
        )
    print(f"| **target** `clauderon list` ≤ {TARGET * 1e3:.0f} ms | | | {verdict} | |")

    if args.out:
        args.out.write_text(json.dumps({"machine": facts, "samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
