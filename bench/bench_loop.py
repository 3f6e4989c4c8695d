"""The proxy's latency while other clients use the daemon: the credential proxy runs on
the daemon's event loop, so anything that blocks that loop (audit reads and writes, the
store on every hook report, ...) delays every model call in flight.

    python bench/bench_loop.py [--rounds 10] [--requests 30] [--out raw.json]

One real daemon (a fresh home) with one real session (`clauderon create`, the agents'
image, the agent idling); the proxy's upstream for `api.anthropic.com` is the fake model
API of `tests/fakeapi` on 127.0.0.1 (`[proxy.upstreams]`), which checks the injected key.
The benchmark's process is the "agent": httpx → clauderon's forwarder on 127.0.0.1 →
the session's proxy socket → the daemon's proxy → the fake API, as from the container.

The audit log is filled first with `--prefill` lines (a few MB: what a busy week leaves;
it rotates at 10 MB), so reading it costs what it costs on a real machine.

Arms, interleaved round by round (the order alternating), each `--requests` sequential
`POST https://api.anthropic.com/v1/messages` on a warm keep-alive connection, 10 ms apart:

- `floor`    nobody else uses the daemon;
- `clients`  while, started for the round and stopped after it: `--followers` CLI
             processes `clauderon logs -f NAME`, as many `clauderon audit -f`, two reader
             processes each reading `GET /api/audit` (limit 200, all sessions then this
             session's, as `clauderon audit [NAME]` and the dashboard do) every 50 ms, and
             one reporter process posting the agent's hook reports (UserPromptSubmit / Stop,
             each a status change: the store is written) through the session's proxy every
             50 ms.

Reported: medians, p90 and the ratio clients/floor; how many reads, reports and followed
entries the clients got through (so an arm that starved its clients shows). Everything
is removed at the end (common.bench_home). Traffic: loopback and the session's socket.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

KEY = "sk-bench-loop"
PLACEHOLDER = "clauderon-proxy-placeholder"
MODEL_URL = "https://api.anthropic.com/v1/messages"
HOOK_URL = "http://clauderon.internal/v1/agent-events/claude/{event}"
REQUEST_BODY = json.dumps(
    {"model": "claude-bench", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
).encode()
PACE = 0.010
CLIENT_INTERVAL = 0.050
CLIENT_MAX_LIFE = 600.0  # a reader/reporter ends on its own after this long
ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    common.log(message)


# --- child roles ----------------------------------------------------------------------


def reader_role(args: argparse.Namespace) -> None:
    """Read the audit as `clauderon audit [NAME]` does, every CLIENT_INTERVAL, until
    stdin closes (or CLIENT_MAX_LIFE); print how many reads were made."""
    import threading

    from clauderon.client import Client

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    client = Client(autostart=False)
    reads, deadline = 0, time.monotonic() + CLIENT_MAX_LIFE
    while not stop.is_set() and time.monotonic() < deadline:
        params: dict[str, Any] = {"limit": 200}
        if reads % 2:
            params["session"] = args.session
        client.request("GET", "/api/audit", params=params)
        reads += 1
        if reads == 1:
            print("up", flush=True)
        stop.wait(CLIENT_INTERVAL)
    print(reads, flush=True)


def reporter_role(args: argparse.Namespace) -> None:
    """Post the agent's hook reports through the session's proxy, as report.sh does."""
    import threading

    import httpx

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    reports, deadline = 0, time.monotonic() + CLIENT_MAX_LIFE
    with httpx.Client(proxy=args.proxy, trust_env=False, timeout=10) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            event = "UserPromptSubmit" if reports % 2 == 0 else "Stop"
            response = client.post(
                HOOK_URL.format(event=event),
                content=b"{}",
                headers={
                    "authorization": f"Bearer {args.hook_token}",
                    "content-type": "application/json",
                },
            )
            if response.status_code != 200:
                raise SystemExit(f"hook report answered {response.status_code}")
            reports += 1
            if reports == 1:
                print("up", flush=True)
            stop.wait(CLIENT_INTERVAL)
    print(reports, flush=True)


# --- the set-up -----------------------------------------------------------------------


def start_fake_api(workdir: Path) -> tuple[subprocess.Popen[str], int]:
    """tests/fakeapi's FakeModelAPI in its own process (its threads would otherwise share
    the timing client's GIL); it answers only requests carrying KEY."""
    code = (
        "import http.server, sys\n"
        "from tests.fakeapi.server import FakeModelAPI\n"
        # Its answers go out in several writes: without this, Nagle's algorithm and the
        # proxy's delayed ACK add 40 ms to each.
        "http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True\n"
        f"api = FakeModelAPI(required_key={KEY!r}).start()\n"
        "print(api.port, flush=True)\n"
        "sys.stdin.read()\n"
        "api.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(workdir / "fakeapi.err", "w"),  # noqa: SIM115 - closed with the process
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"the fake API did not start: {(workdir / 'fakeapi.err').read_text()}")
    return proc, int(line)


def prefill_audit(path: Path, lines: int, session: str) -> int:
    """An audit log as a busy home has it: mostly other sessions' requests."""
    with open(path, "w") as out:
        for i in range(lines):
            entry = {
                "ts": "2026-11-30T12:00:00.000000+00:00",
                "session": session if i % 10 == 0 else f"other-{i % 7}",
                "method": "POST",
                "host": "api.anthropic.com",
                "port": 443,
                "path": "/v1/messages",
                "status": 200,
                "decision": "allowed",
                "credential": "anthropic_api_key",
                "ms": 812,
                "bytes_in": 2345,
                "bytes_out": 10234,
            }
            out.write(json.dumps(entry, separators=(",", ":")) + "\n")
    os.chmod(path, 0o600)
    return path.stat().st_size


def session_tokens(db: Path, name: str) -> tuple[str, str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        (data,) = con.execute("SELECT data FROM sessions WHERE name = ?", (name,)).fetchone()
    record = json.loads(data)
    return record["proxy_token"], record["hook_token"]


class Clients:
    """The other clients of one `clients` round (started, then stopped after the round)."""

    def __init__(self, home: common.BenchHome, name: str, proxy: str, hook_token: str, n: int):
        self.procs: list[tuple[str, subprocess.Popen[str], Path]] = []
        out = home.root / "clients"
        out.mkdir(exist_ok=True)
        cli = common.clauderon_cmd()
        me = [sys.executable, __file__]
        plans = (
            [(f"logs-f{i}", [*cli, "logs", "-f", name]) for i in range(n)]
            + [(f"audit-f{i}", [*cli, "audit", "-f", "--json"]) for i in range(n)]
            + [(f"reader{i}", [*me, "--role", "reader", "--session", name]) for i in range(2)]
            + [
                (
                    "reporter",
                    [*me, "--role", "reporter", "--proxy", proxy, "--hook-token", hook_token],
                )
            ]
        )
        for label, cmd in plans:
            path = out / f"{label}.out"
            proc = subprocess.Popen(
                cmd,
                env=home.env,
                stdin=subprocess.PIPE,
                stdout=open(path, "w"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
                text=True,
            )
            self.procs.append((label, proc, path))

    def wait_up(self, timeout: float = 30.0) -> None:
        """Until every reader and the reporter made its first request (the CLIs start
        alongside; on 2 busy CPUs a Python start takes a while)."""
        deadline = time.monotonic() + timeout
        for label, proc, path in self.procs:
            if not label.startswith(("reader", "reporter")):
                continue
            while "up" not in path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{label} did not start: {path.read_text()[-500:]}")
                time.sleep(0.05)

    def stop(self) -> dict[str, int]:
        """Stop every client; return what each got through (lines or its own count)."""
        counts: dict[str, int] = {}
        for label, proc, _ in self.procs:
            if label.startswith(("reader", "reporter")):
                with contextlib.suppress(Exception):
                    assert proc.stdin is not None
                    proc.stdin.close()  # they print their count and exit
            else:
                proc.terminate()
        for label, proc, path in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            text = path.read_text(errors="replace")
            if label.startswith(("reader", "reporter")):
                last = text.strip().splitlines()[-1:] or ["0"]
                if not last[0].isdigit():
                    raise RuntimeError(f"{label} failed: {text[-500:]}")
                counts[label] = int(last[0])
            else:
                counts[label] = len(text.splitlines())
        return counts


def timed_post(client: Any) -> float:
    start = time.perf_counter()
    response = client.post(
        MODEL_URL,
        content=REQUEST_BODY,
        headers={"x-api-key": PLACEHOLDER, "content-type": "application/json"},
    )
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"model call answered {response.status_code}: {response.text[:200]}")
    return elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from clauderon.forwarder import ensure_forwarder

    results: dict[str, Any] = {"machine": common.machine_facts(), "args": vars(args)}
    common.print_machine(results["machine"])
    with common.bench_home() as home:
        fake, port = start_fake_api(home.root)
        forwarder: subprocess.Popen[bytes] | None = None
        try:
            home.home.mkdir(parents=True, exist_ok=True)
            (home.home / "config.toml").write_text(
                f'[proxy.upstreams]\n"api.anthropic.com" = "http://127.0.0.1:{port}"\n'
            )
            home.env["ANTHROPIC_API_KEY"] = KEY  # the daemon (started by `create`) has it
            if args.loop_slow:
                home.env["CLAUDERON_LOOP_SLOW"] = str(args.loop_slow)
            name = home.name("loop", 0)
            size = prefill_audit(home.paths.audit_log, args.prefill, name)
            results["audit_prefill_bytes"] = size
            log(f"audit log prefilled: {args.prefill} lines, {size / 1e6:.1f} MB")
            elapsed, _ = home.cli(*home.create_args(name))
            log(f"created {name} in {elapsed:.1f} s")
            proxy_token, hook_token = session_tokens(home.paths.db, name)
            sock = home.paths.session_dir(name) / "proxy" / "p.sock"
            fwd_port = common.free_port()
            fwd = ensure_forwarder(home.root / "bin")
            forwarder = subprocess.Popen([str(fwd), "-f", str(fwd_port), str(sock)])
            proxy = f"http://clauderon:{proxy_token}@127.0.0.1:{fwd_port}"
            verify = ssl.create_default_context(cafile=str(home.home / "proxy-ca.pem"))
            with httpx.Client(proxy=proxy, verify=verify, trust_env=False, timeout=30) as client:
                for _ in range(200):  # the forwarder listens
                    with contextlib.suppress(httpx.TransportError):
                        timed_post(client)
                        break
                    time.sleep(0.02)
                for _ in range(20):
                    timed_post(client)
                samples: dict[str, list[float]] = {"floor": [], "clients": []}
                counts: list[dict[str, int]] = []
                windows: list[float] = []  # seconds the clients ran, per round
                for r in range(args.rounds):
                    for arm in ("floor", "clients") if r % 2 == 0 else ("clients", "floor"):
                        clients, started = None, time.perf_counter()
                        if arm == "clients":
                            clients = Clients(home, name, proxy, hook_token, args.followers)
                            clients.wait_up()
                            time.sleep(0.5)  # the followers connect too
                        try:
                            for _ in range(args.requests):
                                time.sleep(PACE)
                                samples[arm].append(timed_post(client))
                        finally:
                            if clients is not None:
                                counts.append(clients.stop())
                                windows.append(time.perf_counter() - started)
                    floor, busy = (common.Stats.of(samples[k]) for k in ("floor", "clients"))
                    log(
                        f"round {r + 1}/{args.rounds}: floor {floor.median * 1e3:.2f} ms, "
                        f"clients {busy.median * 1e3:.2f} ms (medians so far); {counts[-1]}"
                    )
            results["samples"] = samples
            results["client_counts"] = counts
            results["client_seconds"] = windows
            if args.loop_slow:
                results["slow_steps"] = slow_steps(home.paths.logs / "daemon.log")
        finally:
            if forwarder is not None:
                forwarder.terminate()
                forwarder.wait(5)
            with contextlib.suppress(Exception):
                assert fake.stdin is not None
                fake.stdin.close()
                fake.wait(10)
            if fake.poll() is None:
                fake.kill()
            with contextlib.suppress(Exception):
                home.delete_session(home.name("loop", 0))
    return results


SLOW_STEP = re.compile(r"Executing (.*) took (\d+\.\d+) seconds")


def slow_steps(daemon_log: Path) -> dict[str, Any]:
    """The loop's slow steps asyncio's debug mode logged: how many, how long, and by
    what (the callback's or task's code location, without its arguments)."""
    by_where: dict[str, list[float]] = {}
    for line in daemon_log.read_text(errors="replace").splitlines():
        found = SLOW_STEP.search(line)
        if found is None:
            continue
        what = found.group(1)
        where = re.findall(r"(?:created at|at) (/[^ >]+:\d+)", what)
        coro = re.search(r"coro=<([\w.]+)", what)
        key = coro.group(1) if coro else (where[-1] if where else what[:80])
        by_where.setdefault(key, []).append(float(found.group(2)))
    top = sorted(by_where.items(), key=lambda kv: -sum(kv[1]))[:8]
    return {
        "count": sum(len(v) for v in by_where.values()),
        "seconds": sum(sum(v) for v in by_where.values()),
        "max": max((max(v) for v in by_where.values()), default=0.0),
        "top": [{"where": k, "n": len(v), "seconds": sum(v), "max": max(v)} for k, v in top],
    }


def report(results: dict[str, Any]) -> str:
    floor = common.Stats.of(results["samples"]["floor"])
    busy = common.Stats.of(results["samples"]["clients"])
    counts = results["client_counts"]

    def total(prefix: str) -> int:
        return sum(v for c in counts for k, v in c.items() if k.startswith(prefix))

    seconds = sum(results["client_seconds"])
    lines = [
        "| arm | median ms | p90 ms | max ms | n | ratio to floor (median / p90) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| floor (no other client) | {floor.median * 1e3:.2f} | {floor.p90 * 1e3:.2f} | "
        f"{floor.max * 1e3:.1f} | {floor.n} | 1 |",
        f"| with clients | {busy.median * 1e3:.2f} | {busy.p90 * 1e3:.2f} | "
        f"{busy.max * 1e3:.1f} | {busy.n} | {busy.median / floor.median:.2f} / "
        f"{busy.p90 / floor.p90:.2f} |",
        "",
        f"Clients got through, over {len(counts)} rounds (~{seconds:.0f} s): "
        f"{total('reader')} audit reads, {total('reporter')} hook reports, "
        f"{total('audit-f')} followed audit lines, {total('logs-f')} followed log lines; "
        f"audit log {results['audit_prefill_bytes'] / 1e6:.1f} MB at the start.",
    ]
    slow = results.get("slow_steps")
    if slow is not None:
        lines += [
            "",
            f"Loop steps slower than {results['args']['loop_slow'] * 1e3:.0f} ms (asyncio debug "
            f"mode, whole run): {slow['count']}, {slow['seconds']:.2f} s in all, the longest "
            f"{slow['max'] * 1e3:.0f} ms.",
            "",
            "| step | n | total s | max ms |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| `{t['where']}` | {t['n']} | {t['seconds']:.2f} | {t['max'] * 1e3:.0f} |"
            for t in slow["top"]
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--followers", type=int, default=2)
    parser.add_argument("--prefill", type=int, default=30000)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--loop-slow",
        type=float,
        default=0.0,
        help="diagnosis: run the daemon's loop in debug mode and report its steps slower "
        "than this many seconds (slows everything: not for the latency figures)",
    )
    parser.add_argument("--role", choices=["reader", "reporter"], help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--proxy", help=argparse.SUPPRESS)
    parser.add_argument("--hook-token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "reader":
        reader_role(args)
        return 0
    if args.role == "reporter":
        reporter_role(args)
        return 0
    results = run(args)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
