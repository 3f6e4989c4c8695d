"""The daemon with 50 idle sessions: its resident memory, how fast an event reaches a
WebSocket listener, and how long a full reconcile pass takes.

    python bench/bench_daemon.py [--sessions 50] [--events 100] [--reconciles 10] [--out raw.json]

In a fresh CLAUDERON_HOME and a fresh repository (bench/common.py):

- memory: the daemon's VmRSS (from /proc/<pid>/status; the pid is in daemon.lock) once it
  is idle with 0 sessions, then idle with `--sessions` sessions (created one by one with
  `clauderon create ... --json`; the agents sit idle in their TUI, pointed at a closed
  loopback port). Its child processes, if any, are counted apart. The agents' containers
  are not the daemon's memory: their sum (`docker stats`) is shown for context only.
- event latency: a listener on `/ws/events` over the Unix socket; the trigger is
  `POST /api/sessions/<name>/access-mode` (alternately read-only / read-write) on a
  keep-alive HTTP connection over the same socket, from this process (no CLI start-up);
  the daemon publishes `session_updated` (reason `access_mode_changed`). Latency = the
  event's arrival (stamped by a receiver thread) - the request's send. With 1 session and
  with all of them.
- reconcile: `POST /api/reconcile` (JSON answer), wall time; with 1 session and with all.
  `GET /api/sessions` for context, and `GET /api/health` as the floor of any request.

Targets: daemon RSS <= 150 MB with 50 sessions; reconcile <= 2 s.
Everything is deleted at the end (try/finally); the daemon is stopped, its network removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    BenchHome,
    Stats,
    bench_home,
    cpu_seconds,
    delete_created,
    docker_client,
    log,
    machine_facts,
    print_machine,
    run,
    settle_after_creating,
)

from clauderon.client import Client, UnixHTTPConnection
from clauderon.container import container_name
from clauderon.paths import Paths

TARGET_RSS_MB = 150.0
TARGET_RECONCILE = 2.0
EVENT_TIMEOUT = 10.0
MB = 1e6  # the target says MB; /proc says kB (KiB): both are shown


# --- talking to the daemon directly ---------------------------------------------------


class UnixConnection(UnixHTTPConnection):
    """clauderon.client's connection over the daemon's Unix socket, kept alive between
    requests (what is measured is the daemon's answer, not a connection's set-up)."""

    def __init__(self, path: Path, timeout: float = 60.0):
        super().__init__(str(path), timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload is not None else {}
        self.request(method, path, body=payload, headers=headers)
        response = self.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data.strip() else None)


class EventListener:
    """A /ws/events subscriber; a thread stamps each message (perf_counter) on arrival."""

    def __init__(self, paths: Paths):
        # (entered as a context manager: websockets >= 17.1 warns otherwise; left in close)
        self.ws = Client(paths, autostart=False).websocket("/ws/events").__enter__()
        first = json.loads(self.ws.recv(timeout=10))
        if first.get("type") != "connected":
            raise RuntimeError(f"first message on /ws/events: {first}")
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # ends when the socket closes
            while True:
                message = self.ws.recv()
                at = time.perf_counter()
                self.events.put((at, json.loads(message)))

    def wait_for(self, matches: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError("the event never arrived")
            at, event = self.events.get(timeout=left)
            if matches(event):
                return at

    def drain(self) -> int:
        n = 0
        with contextlib.suppress(queue.Empty):
            while True:
                self.events.get_nowait()
                n += 1
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.thread.join(5)


# --- measurements ---------------------------------------------------------------------


def daemon_pid(home: BenchHome) -> int:
    pid = int(home.paths.daemon_lock.read_text().strip())
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    if f"CLAUDERON_HOME={home.home}".encode() not in environ:
        raise RuntimeError(f"pid {pid} in daemon.lock is not this home's daemon")
    return pid


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, VmHWM, RssAnon, RssFile, ...), and
    Threads."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if key == "Threads" or (len(parts) == 2 and parts[1] == "kB"):
            fields[key] = int(parts[0])
    return fields


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


def memory(pid: int) -> dict[str, Any]:
    status = proc_status(pid)
    children = {}
    for child in descendants(pid):
        with contextlib.suppress(OSError, ValueError):
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            children[child] = {"cmd": cmd.strip()[:80], "rss_kb": proc_status(child)["VmRSS"]}
    return {"status": status, "children": children, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def rss_samples(pid: int, n: int = 5, every: float = 1.0) -> tuple[float, dict[str, Any]]:
    """Median VmRSS (kB) over n samples, and the last full reading."""
    values, last = [], {}
    for i in range(n):
        last = memory(pid)
        values.append(last["status"]["VmRSS"])
        if i < n - 1:
            time.sleep(every)
    return Stats.of(values).median, last


def daemon_cpu(pid: int, seconds: float = 10.0) -> float:
    """Fraction of one CPU the daemon used over `seconds` (idle: its periodic work)."""
    before, start = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.perf_counter() - start)


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def container_memory(names: list[str]) -> float | None:
    """Sum of the containers' memory (bytes) per `docker stats --no-stream`."""
    if not names:
        return 0.0
    try:
        _, proc = run(
            ["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
            timeout=120,
        )
    except Exception as exc:
        log(f"docker stats failed: {exc}")
        return None
    total = 0.0
    for line in proc.stdout.splitlines():
        match = re.match(r"\S+ ([\d.]+)\s*([A-Za-z]+) /", line)
        if match:
            total += float(match.group(1)) * _UNITS.get(match.group(2), 1)
    return total


def event_latency(
    conn: UnixConnection, listener: EventListener, names: list[str], n: int
) -> dict[str, list[float]]:
    """n access-mode changes, round robin over `names`: until the HTTP answer and until
    the event arrives on the WebSocket, both from the moment the request is sent."""
    listener.drain()
    out: dict[str, list[float]] = {"event": [], "http": []}
    for i in range(n):
        name = names[i % len(names)]
        mode = "read-only" if (i // len(names)) % 2 == 0 else "read-write"

        def ours(event: dict[str, Any], name: str = name, mode: str = mode) -> bool:
            return (
                event.get("type") == "session_updated"
                and event.get("session") == name
                and event.get("reason") == "access_mode_changed"
                and event.get("access_mode") == mode
            )

        start = time.perf_counter()
        status, body = conn.call("POST", f"/api/sessions/{name}/access-mode", {"access_mode": mode})
        answered = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"access-mode {name} {mode}: {status} {body}")
        arrived = listener.wait_for(ours, EVENT_TIMEOUT)
        out["event"].append(arrived - start)
        out["http"].append(answered - start)
    return out


def timed_calls(conn: UnixConnection, method: str, path: str, n: int) -> tuple[list[float], Any]:
    samples, body = [], None
    for _ in range(n):
        start = time.perf_counter()
        status, body = conn.call(method, path)
        samples.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {body}")
    return samples, body


def phase(
    label: str, home: BenchHome, names: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Events, reconcile and list, with the sessions in `names` present."""
    conn = UnixConnection(home.paths.socket)
    listener = EventListener(home.paths)
    try:
        conn.call("GET", "/api/health")
        event_latency(conn, listener, names, 10)  # unmeasured warm-up
        events = event_latency(conn, listener, names, args.events)
        # Put every session back to read-write (an even number of rounds may not have).
        for name in names:
            conn.call("POST", f"/api/sessions/{name}/access-mode", {"access_mode": "read-write"})
        timed_calls(conn, "POST", "/api/reconcile", 1)  # warm-up
        reconciles, report = timed_calls(conn, "POST", "/api/reconcile", args.reconciles)
        lists, listed = timed_calls(conn, "GET", "/api/sessions", args.lists)
        # The floor of any request: the daemon's cheapest route on the same connection.
        health, _ = timed_calls(conn, "GET", "/api/health", args.events)
    finally:
        listener.close()
        conn.close()
    changed = {k: v for k, v in (report or {}).items() if v}
    log(
        f"[{label}] event {Stats.of(events['event']).ms()}\n"
        f"[{label}] reconcile {Stats.of(reconciles).ms()}; last report (non-empty): {changed}\n"
        f"[{label}] GET /api/sessions ({len(listed)} sessions) {Stats.of(lists).ms()}\n"
        f"[{label}] GET /api/health {Stats.of(health).ms()}"
    )
    return {
        "sessions": len(names),
        "event": events["event"],
        "http": events["http"],
        "reconcile": reconciles,
        "reconcile_report": report,
        "list": lists,
        "listed": len(listed),
        "health": health,
    }


# --- the run --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--reconciles", type=int, default=10)
    parser.add_argument("--lists", type=int, default=20)
    parser.add_argument(
        "--settle", type=float, default=120.0, help="at most this long for the CPUs to calm"
    )
    parser.add_argument("--out", type=Path, help="write the raw samples here (JSON)")
    args = parser.parse_args()

    facts = machine_facts()
    print_machine(facts)
    result: dict[str, Any] = {"machine": facts}
    with bench_home() as home:
        names = [home.name("b", i) for i in range(args.sessions)]
        created: list[str] = []
        try:
            # The first command starts the daemon.
            home.cli("list", "--json")
            pid = daemon_pid(home)
            log(f"home {home.home} (instance {home.instance}), daemon pid {pid}")
            time.sleep(3)
            rss0, mem0 = rss_samples(pid)
            cpu0 = daemon_cpu(pid)
            result["idle0"] = {"rss_kb": rss0, "memory": mem0, "cpu": cpu0}
            log(f"idle, 0 sessions: VmRSS {rss0 / 1024:.1f} MiB; CPU {cpu0:.1%}; {mem0}")

            # One session: the scale-free baseline of events and reconcile.
            home.cli(*home.create_args(names[0]))
            created.append(names[0])
            result["one"] = phase("1 session", home, names[:1], args)
            rss1, mem1 = rss_samples(pid, n=3)
            result["one"]["rss_kb"], result["one"]["memory"] = rss1, mem1
            log(f"1 session: VmRSS {rss1 / 1024:.1f} MiB")

            start = time.perf_counter()
            for name in names[1:]:
                home.cli(*home.create_args(name))
                created.append(name)
                if len(created) % 10 == 0:
                    log(
                        f"  {len(created)} sessions, daemon VmRSS "
                        f"{proc_status(pid)['VmRSS'] / 1024:.1f} MiB"
                    )
            result["create_seconds"] = time.perf_counter() - start
            log(f"created {len(created)} sessions ({result['create_seconds']:.0f} s)")
            busy = settle_after_creating(created, home.instance, args.settle)
            log(f"CPU busy {busy:.0%} when measuring starts; load {os.getloadavg()}")
            if daemon_pid(home) != pid:
                raise RuntimeError("the daemon changed during the run")

            rss50, mem50 = rss_samples(pid)
            cpu50 = daemon_cpu(pid)
            containers = container_memory([container_name(n, home.instance) for n in created])
            result["idle50"] = {
                "rss_kb": rss50,
                "memory": mem50,
                "cpu": cpu50,
                "containers_bytes": containers,
                "busy": busy,
            }
            log(
                f"idle, {len(created)} sessions: VmRSS {rss50 / 1024:.1f} MiB; CPU {cpu50:.1%}; "
                f"containers {containers and containers / 2**30:.2f} GiB; {mem50}"
            )
            result["all"] = phase(f"{len(created)} sessions", home, created, args)
            rss_after, mem_after = rss_samples(pid, n=3)
            result["after"] = {"rss_kb": rss_after, "memory": mem_after}
            log(f"after the measurements: VmRSS {rss_after / 1024:.1f} MiB; {mem_after}")
        finally:
            delete_created(home, created)
    # bench_home's close has stopped the daemon and removed the instance's containers and
    # network; say so from the engine's side.
    leftovers = [
        c.name
        for c in docker_client().containers.list(
            all=True, filters={"label": f"clauderon.instance={home.instance}"}
        )
    ] + [
        n.name
        for n in docker_client().networks.list(names=[f"clauderon-{home.instance}"])
        if n.name == f"clauderon-{home.instance}"
    ]
    log("engine: nothing of the instance left" if not leftovers else f"LEFT: {leftovers}")

    report(result, args)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    return 0


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    n = result["all"]["sessions"]
    idle0, idle50, after = result["idle0"], result["idle50"], result["after"]
    rss50_mb = idle50["rss_kb"] * 1024 / MB
    rss_met = rss50_mb <= TARGET_RSS_MB
    rec = Stats.of(result["all"]["reconcile"])
    rec_met = rec.median <= TARGET_RECONCILE

    def mem_row(label: str, m: dict[str, Any], rss_kb: float) -> str:
        s = m["memory"]["status"]
        kids = sum(c["rss_kb"] for c in m["memory"]["children"].values())
        return (
            f"| {label} | {rss_kb * 1024 / MB:.0f} MB ({rss_kb / 1024:.0f} MiB) "
            f"| {s.get('RssAnon', 0) / 1024:.0f} / {s.get('RssFile', 0) / 1024:.0f} MiB "
            f"| {s.get('VmHWM', 0) / 1024:.0f} MiB | {s.get('Threads')} | {m['memory']['fds']} "
            f"| {kids / 1024:.0f} MiB |"
        )

    print()
    print(
        "| daemon memory | VmRSS (median of 5 s) | anon / file | peak (VmHWM) | threads | fds "
        "| children's RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(mem_row("idle, 0 sessions", idle0, idle0["rss_kb"]))
    print(mem_row("1 session, after its measurements", result["one"], result["one"]["rss_kb"]))
    print(mem_row(f"idle, {n} sessions", idle50, idle50["rss_kb"]))
    print(mem_row(f"{n} sessions, after the measurements", after, after["rss_kb"]))
    per = (idle50["rss_kb"] - idle0["rss_kb"]) / max(n, 1)
    print()
    print(
        f"Growth: {per:.0f} KiB per session. Daemon CPU while idle: "
        f"{idle0['cpu']:.1%} (0 sessions), {idle50['cpu']:.1%} ({n} sessions)."
    )
    if idle50.get("containers_bytes"):
        print(
            f"For context, the {n} agents' containers: "
            f"{idle50['containers_bytes'] / 2**30:.2f} GiB (`docker stats`), not the daemon's."
        )
    print()
    print("| measurement | sessions | median | p90 | max | n |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for key, label in (
        ("event", "access-mode request sent → `session_updated` on `/ws/events`"),
        ("http", "access-mode request sent → HTTP answer"),
        ("reconcile", "`POST /api/reconcile` (full pass)"),
        ("list", "`GET /api/sessions`"),
        ("health", "floor: `GET /api/health` (same keep-alive connection)"),
    ):
        for part in ("one", "all"):
            s = Stats.of(result[part][key])
            print(
                f"| {label} | {result[part]['sessions']} | {s.median * 1e3:.1f} ms "
                f"| {s.p90 * 1e3:.1f} ms | {s.max * 1e3:.1f} ms | {s.n} |"
            )
    print()
    print("| target | result | met? |")
    print("| --- | --- | --- |")
    print(
        f"| daemon ≤ {TARGET_RSS_MB:.0f} MB with {n} sessions | {rss50_mb:.0f} MB "
        f"| {'met' if rss_met else 'MISSED'} |"
    )
    print(
        f"| reconcile ≤ {TARGET_RECONCILE:.0f} s with {n} sessions | "
        f"{rec.median * 1e3:.0f} ms | {'met' if rec_met else 'MISSED'} |"
    )


if __name__ == "__main__":
    sys.exit(main())
