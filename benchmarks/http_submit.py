"""HTTP submit: ``POST /v1/jobs?wait=5`` of ``builtin.echo`` under wrk, beside bare aiohttp.

jobwarden runs as ``python -m jobwarden serve --port P --log-format json`` (store memory://, open
mode on loopback, stdout and stderr to /dev/null: its access log is part of the cost). The
reference (``benchmarks/reference_servers.py http``) is one aiohttp POST route that decodes the
same body with msgspec and answers a JSON body shaped like jobwarden's job response, with no
middleware and no logging. Also measured, not targets: jobwarden with its log level raised to
WARNING (no access log lines), with ``serve --log-level warning``; and jobwarden on the server's
default store, SQLite (a new file per round, ``synchronous=full``), where each request's job is
committed three times (accepted, running, finished) before ``?wait=5`` answers.

Each round starts every server fresh on a free loopback port, warms it up with a short wrk run,
then runs ``wrk --latency -t2 -c32 -d10s`` with a Lua script for the POST. After jobwarden's runs
its ``GET /v1/metrics`` must show no errors for ``builtin.echo`` and as many successes as wrk
counted (plus at most the requests in flight when wrk stopped); wrk must see no non-2xx response
and no socket error.

    .venv/bin/python -m benchmarks.http_submit [--duration 10] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from benchmarks import harness
from benchmarks.server_process import ServerProcess, python_module, raise_nofile, wait_until

DESCRIPTION = "POST /v1/jobs?wait=5 of builtin.echo under wrk, beside a bare aiohttp JSON handler."
TOOL = "builtin.echo"
BODY = '{"tool": "builtin.echo", "input": {"text": "hi"}}'
PATH = "/v1/jobs?wait=5"
TARGET = 0.5
LUA = f"""\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


class WrkResult(msgspec.Struct, frozen=True):
    """What one wrk run printed, parsed."""

    requests_per_s: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def parse_wrk(text: str) -> WrkResult:
    """Requests/sec, the 99% latency, the request count and the error counts of wrk's output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if rate is None or p99 is None or total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def run_wrk(
    url: str, script: Path, *, duration_s: float, connections: int, threads: int
) -> WrkResult:
    """One wrk run, bounded in time."""
    argv = [
        "wrk",
        "--latency",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


class Checks:
    """Correctness over all rounds: a non-2xx response or a wrong echo outcome stops the run.

    Socket errors (wrk's connect/read/write/timeout counts) are reported, not fatal: on a busy
    machine a 10 s wrk timeout is a latency, not a wrong answer.
    """

    def __init__(self) -> None:
        self.non_2xx: dict[str, int] = {}
        self.socket_errors: dict[str, int] = {}
        self.metrics_checked = 0

    def wrk(self, name: str, result: WrkResult) -> None:
        self.non_2xx[name] = self.non_2xx.get(name, 0) + result.non_2xx
        self.socket_errors[name] = self.socket_errors.get(name, 0) + result.socket_errors
        if result.non_2xx:
            raise RuntimeError(f"{name}: wrk saw {result.non_2xx} non-2xx responses")

    def jobwarden_metrics(
        self, name: str, server: ServerProcess, sent: int, connections: int
    ) -> None:
        """Errors must be zero and successes match wrk's count (give or take the in-flight)."""

        def echo() -> dict[str, object]:
            tools: list[dict[str, object]] = server.get("/v1/metrics")["tools"]
            return next(t for t in tools if t["tool"] == TOOL)

        wait_until(lambda: echo()["in_flight"] == 0, attempts=50, interval_s=0.1, what="idle")
        m = echo()
        failures = m["errors"], m["timeouts"], m["cancellations"], m["failures_by_type"]
        if failures != (0, 0, 0, {}):
            raise RuntimeError(f"{name}: echo errors, timeouts, cancellations: {failures}")
        successes = m["successes"]
        assert isinstance(successes, int)
        # wrk counts the responses it read; up to one request per connection per wrk run
        # (warm-up and measured) was still in flight when it stopped and completed afterwards.
        if not sent <= successes <= sent + 2 * connections:
            raise RuntimeError(f"{name}: {successes} echo successes, wrk counted {sent}")
        self.metrics_checked += 1


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION, rounds=3, uvloop=False)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="wrk warm-up seconds per server (2)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--no-quiet", action="store_true", help="skip jobwarden with logging at WARNING")
    p.add_argument("--no-sqlite", action="store_true", help="skip jobwarden on the SQLite store")
    args = harness.parse(p, argv)
    if args.backend != "asyncio":
        p.error("the servers run on asyncio (the client is wrk): --backend trio does not apply")
    if shutil.which("wrk") is None:
        print(
            "http_submit: wrk is not installed (apt-get install -y wrk; scripts/bench does it);"
            " skipping this benchmark"
        )
        return
    raise_nofile(4 * args.connections + 256)
    duration: float = args.duration
    conns: int = args.connections
    checks = Checks()

    serve = ["serve", "--host", "127.0.0.1", "--store", "memory://", "--log-format", "json"]
    servers: dict[str, Callable[[int], list[str]]] = {
        "jobwarden": lambda port: python_module("jobwarden", *serve, "--port", str(port)),
        "reference": lambda port: python_module(
            "benchmarks.reference_servers", "http", "--port", str(port)
        ),
    }
    if not args.no_quiet:
        servers["jobwarden/log=warning"] = lambda port: python_module(
            "jobwarden", *serve, "--log-level", "warning", "--port", str(port)
        )

    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as tmp:
        if not args.no_sqlite:
            files = itertools.count()

            def on_sqlite(port: int) -> list[str]:
                store = f"sqlite:///{tmp}/jobs-{next(files)}.db"
                durable = [store if arg == "memory://" else arg for arg in serve]
                return python_module("jobwarden", *durable, "--port", str(port))

            servers["jobwarden/sqlite"] = on_sqlite
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)

        def candidate(name: str) -> Callable[[], harness.Figures]:
            def one_round() -> harness.Figures:
                with ServerProcess(name, servers[name]) as server:
                    url = server.base + PATH
                    warm = run_wrk(
                        url, script, duration_s=args.warmup, connections=conns, threads=args.threads
                    )
                    cpu0 = server.cpu_seconds()
                    result = run_wrk(
                        url, script, duration_s=duration, connections=conns, threads=args.threads
                    )
                    cpu = server.cpu_seconds() - cpu0
                    checks.wrk(name, warm)
                    checks.wrk(name, result)
                    if name.startswith("jobwarden"):
                        sent = warm.requests + result.requests
                        checks.jobwarden_metrics(name, server, sent, conns)
                    time.sleep(0.2)
                return {
                    "requests/s": result.requests_per_s,
                    "p99": result.p99_ms,
                    "server CPU/request": cpu / result.requests * 1e6,
                }

            return one_round

        candidates = {name: candidate(name) for name in servers}
        samples = harness.interleave(candidates, args.rounds, quiet=args.json)

    report = harness.Report(
        "http_submit",
        {
            "rounds": args.rounds,
            "duration_s": duration,
            "connections": conns,
            "threads": args.threads,
            "loop": "asyncio",
        },
    )
    medians: dict[str, float] = {}
    for name, figures in samples.items():
        medians[name] = report.add(name, "throughput", "req/s", figures["requests/s"])
        report.add(name, "latency p99", "ms", figures["p99"])
        report.add(name, "server CPU", "us/req", figures["server CPU/request"])
    report.note(
        f"POST {PATH} body {BODY}; wrk --latency -t{args.threads} -c{conns}"
        f" -d{max(1, round(duration))}s after a {harness.fmt(args.warmup)} s warm-up, each server"
        " fresh per round; jobwarden --log-format json with stdout/stderr to /dev/null"
    )
    report.note(
        "server CPU: user+system seconds of the server process during the measured wrk run, per"
        " request (the two cores are shared with wrk, so it is the less noisy figure)"
    )
    report.note(
        "non-2xx responses (all rounds, warm-ups included): "
        + ", ".join(f"{k} {v}" for k, v in checks.non_2xx.items())
        + "; socket errors: "
        + ", ".join(f"{k} {v}" for k, v in checks.socket_errors.items())
    )
    report.note(
        f"jobwarden /v1/metrics checked after {checks.metrics_checked} runs: echo errors,"
        " timeouts and cancellations 0, successes = wrk's count (+ at most the in-flight)"
    )
    variants = {
        "jobwarden/log=warning": "log=warning (serve --log-level warning, no access log)",
        "jobwarden/sqlite": "sqlite (the server's default store, --store sqlite:///<new file>)",
    }
    for name, what in variants.items():
        if name in medians:
            theirs, ours = medians[name], medians["jobwarden"]
            report.note(
                f"{what}, not a target: {harness.fmt(theirs)} req/s = {theirs / ours:.2f}x"
                f" jobwarden on memory:// with its access log ({harness.fmt(ours)} req/s)"
            )
    ours, theirs = medians["jobwarden"], medians["reference"]
    ratio = ours / theirs
    line = (
        f"jobwarden {harness.fmt(ours)} req/s = {ratio:.2f}x bare aiohttp"
        f" ({harness.fmt(theirs)} req/s)"
    )
    report.check("http submit vs bare aiohttp", line, ratio, ">=", TARGET, "x")
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
