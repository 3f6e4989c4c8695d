"""The dashboard's first paint with 50 sessions, and shell completion, as a user meets
them (whole processes), against floors measured in the same run.

    python bench/bench_tui.py [--sessions 50] [--runs 10] [--out results.json]

- `clauderon tui` runs in a pseudo-terminal (120x40) whose output is read through pyte;
  the time is from spawning it until the screen shows the list with every session
  ("Sessions 50" in the list's title, drawn with the rows). Then `q`; the exit is timed
  apart. Floors: `clauderon list` and `python -c pass`; breakdown: importing the app.
- Completion: what bash runs on a Tab (`_CLAUDERON_COMPLETE=complete_bash`) for a command
  (`clauderon a<Tab>`, no daemon call) and for a session name (`clauderon attach <Tab>`:
  asks the running daemon), against `clauderon --version` (the CLI's start-up).
- In-process: building the click command with and without the completion options (what
  `add_completion` adds to every command's start-up).

Arms are interleaved round robin, the order rotating each round. Target: first paint
median <= 500 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pyte
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

TARGET = 0.500
COLS, ROWS = 120, 40


def first_paint(cmd: list[str], env: dict[str, str], expect: str) -> tuple[float, float, str]:
    """Spawn `cmd` on a new pty; return (seconds until `expect` is on screen, seconds
    from `q` to its exit, the screen's text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    painted = None
    try:
        deadline = start + 30
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                stream.feed(os.read(master, 65536))
            except OSError:
                break
            if expect in "\n".join(screen.display):
                painted = time.perf_counter() - start
                break
        text = "\n".join(screen.display)
        if painted is None:
            raise RuntimeError(f"never painted {expect!r}; screen:\n{text}")
        os.write(master, b"q")
        quit_start = time.perf_counter()
        while proc.poll() is None and time.perf_counter() - quit_start < 15:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    os.read(master, 65536)
        quit_time = time.perf_counter() - quit_start
        if proc.poll() is None:
            raise RuntimeError("the dashboard did not quit on q")
        if proc.returncode != 0:
            raise RuntimeError(f"the dashboard exited {proc.returncode}")
        return painted, quit_time, text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        os.close(master)


def command_build_cost(reps: int) -> dict[str, list[float]]:
    """Seconds to build the click command from the Typer app, with and without the
    completion options (fresh each time, as every CLI process does once)."""
    import typer.main

    from clauderon.cli import app

    samples: dict[str, list[float]] = {"with completion": [], "without": []}
    for i in range(reps):
        for key in ["with completion", "without"] if i % 2 else ["without", "with completion"]:
            app._add_completion = key == "with completion"
            start = time.perf_counter()
            typer.main.get_command(app)
            samples[key].append(time.perf_counter() - start)
    app._add_completion = True
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--settle", type=float, default=90.0)
    parser.add_argument(
        "--stop",
        action="store_true",
        help="stop the sessions before measuring (50 idle agents keep 2 CPUs busy here)",
    )
    parser.add_argument("--out", type=Path, help="write the raw samples here (JSON)")
    args = parser.parse_args()

    facts = machine_facts()
    print_machine(facts)
    samples: dict[str, list[float]] = {}
    quits: list[float] = []
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
            if args.stop:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda n: home.cli("stop", n), created))
                log(f"stopped {len(created)} sessions")
            busy = settle_after_creating(created, home.instance, args.settle)
            log(f"CPU busy {busy:.0%} when measuring starts")

            cli = clauderon_cmd()
            python = sys.executable
            expect = f"Sessions {len(created)}"

            def tui() -> float:
                painted, quit_time, _ = first_paint([*cli, "tui"], home.env, expect)
                quits.append(quit_time)
                return painted

            def proc(cmd: list[str], **extra: str) -> Callable[[], float]:
                return lambda: run(cmd, env={**home.env, **extra})[0]

            def completion(words: str) -> dict[str, str]:
                return {
                    "_CLAUDERON_COMPLETE": "complete_bash",
                    "COMP_WORDS": words,
                    "COMP_CWORD": str(len(words.split(" ")) - 1),
                }

            arms: dict[str, Callable[[], float]] = {
                f"clauderon tui: first paint ({len(created)} sessions)": tui,
                "clauderon list": proc([*cli, "list"]),
                "python -c pass": proc([python, "-c", "pass"]),
                "python -c 'import clauderon.tui.app'": proc(
                    [python, "-c", "import clauderon.tui.app"]
                ),
                "python -c 'import textual.app'": proc([python, "-c", "import textual.app"]),
                "clauderon --version": proc([*cli, "--version"]),
                "completion: clauderon a<Tab>": proc(cli, **completion("clauderon a")),
                "completion: clauderon attach <Tab>": proc(cli, **completion("clauderon attach ")),
            }
            # Check what is measured: the whole list painted, names completed.
            _, _, text = first_paint([*cli, "tui"], home.env, expect)
            log(f"first screen shows: {[n for n in created if n in text][:3]}… ({expect})")
            got = run(cli, env={**home.env, **completion("clauderon attach ")})[1].stdout.split()
            log(f"`attach <Tab>` completes {len(got)} names")
            if sorted(got) != sorted(created):
                raise RuntimeError(f"completion gave {got}")
            samples = interleaved(arms, args.runs)
            del quits[0]  # the unmeasured round's
            log(f"load average after: {os.getloadavg()}")
        finally:
            delete_created(home, created)

    build = command_build_cost(200)
    stats = {k: Stats.of(v) for k, v in samples.items()}
    stats["after q: until the process has exited"] = Stats.of(quits)
    for key, values in build.items():
        stats[f"in-process: build the CLI's click command, {key}"] = Stats.of(values)
    print()
    for key, s in stats.items():
        print(f"{key:66} {s.ms()}")
    paint = stats[next(iter(samples))]
    verdict = "met" if paint.median <= TARGET else "MISSED"
    print(f"target: first paint median <= {TARGET * 1e3:.0f} ms: {verdict}")
    print()
    print("| measurement | median | p90 | max | n |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, s in stats.items():
        digits = 2 if key.startswith("in-process") else 0
        print(
            f"| {key} | {s.median * 1e3:.{digits}f} ms | {s.p90 * 1e3:.{digits}f} ms "
            f"| {s.max * 1e3:.{digits}f} ms | {s.n} |"
        )
    print(f"| **target** first paint ≤ {TARGET * 1e3:.0f} ms | | | {verdict} | |")
    if args.out:
        args.out.write_text(
            json.dumps({"machine": facts, "samples": samples, "build": build}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
