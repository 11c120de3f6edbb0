"""HTTP submit counted in instructions: http_submit's two servers under callgrind, a fixed load.

Timings on two shared cores move by tens of percent from run to run; instruction counts do not.
Each server (jobwarden ``serve --store memory:// --log-format json`` with its access log, the bare
aiohttp reference, and jobwarden with ``--log-level warning``) runs under ``valgrind
--tool=callgrind`` with instrumentation off. After a warm-up, instrumentation is switched on
(``callgrind_control -i on``), N ``POST /v1/jobs?wait=5`` of ``builtin.echo`` are sent over C
keep-alive connections (aiohttp's client, in this process) and every answer is checked (200, a
succeeded job; for the reference, 200), then it is switched off. The figure is the server's
instructions per request (user space only: system calls and the kernel's work are not counted).
Not a target: the repeatable figure behind http_submit's.

    .venv/bin/python -m benchmarks.http_submit_callgrind [--requests 2000] [--connections 32]
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from benchmarks import harness
from benchmarks.http_submit import BODY, PATH, TOOL
from benchmarks.server_process import ServerProcess, raise_nofile

DESCRIPTION = "http_submit's servers under callgrind: instructions per POST /v1/jobs?wait=5."
WARMUP = 300
SERVE = ["serve", "--host", "127.0.0.1", "--store", "memory://", "--log-format", "json"]


def callgrind_argv(out: Path, argv: list[str], port: int) -> list[str]:
    """``python argv --port port`` under callgrind, instrumentation off until switched on."""
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        *argv,
        "--port",
        str(port),
    ]


async def drive(url: str, requests: int, connections: int, *, jobwarden: bool) -> None:
    """POST ``requests`` times over ``connections`` connections; RuntimeError on a wrong answer."""
    left = requests

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            headers = {"Content-Type": "application/json"}
            async with http.post(url, data=BODY, headers=headers) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}: {body}")
                job = body["job"]
                if jobwarden and (job["tool"], job["state"]) != (TOOL, "succeeded"):
                    raise RuntimeError(f"{url} answered a job that did not succeed: {job}")

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as http, asyncio.TaskGroup() as tg:
        for _ in range(connections):
            tg.create_task(worker(http))


def total_instructions(out: Path) -> int:
    """The ``totals:`` line callgrind writes at the end of its output file."""
    for line in reversed(out.read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def measure(
    name: str, argv: Callable[[int], list[str]], out: Path, requests: int, connections: int
) -> float:
    """Instructions per request of one server under callgrind."""
    # Python starts about fifty times slower under callgrind: wait up to two minutes for it.
    with ServerProcess(
        name, argv, ready_attempts=240, ready_interval_s=0.5, stop_timeout_s=120
    ) as server:
        url = server.base + PATH
        jobwarden = name.startswith("jobwarden")
        asyncio.run(drive(url, WARMUP, connections, jobwarden=jobwarden))
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(server.pid)], check=True, capture_output=True)
        asyncio.run(drive(url, requests, connections, jobwarden=jobwarden))
        subprocess.run([*control, "off", str(server.pid)], check=True, capture_output=True)
    return total_instructions(out) / requests


def main(argv: Sequence[str] | None = None) -> None:
    """Measure each server once (the counts repeat to within a fraction of a percent)."""
    p = harness.parser(DESCRIPTION, rounds=1, uvloop=False)
    p.add_argument("--requests", type=int, default=2000, help="measured requests (2000)")
    p.add_argument("--connections", type=int, default=32, help="client connections (32)")
    p.add_argument("--no-quiet", action="store_true", help="skip jobwarden with logging at WARNING")
    args = harness.parse(p, argv)
    if args.backend != "asyncio":
        p.error("the servers run on asyncio: --backend trio does not apply")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("http_submit_callgrind: valgrind is not installed; skipping this benchmark")
        return
    raise_nofile(4 * args.connections + 256)
    requests: int = args.requests
    conns: int = args.connections
    servers: dict[str, list[str]] = {
        "jobwarden": ["-m", "jobwarden", *SERVE],
        "reference": ["-m", "benchmarks.reference_servers", "http"],
    }
    if not args.no_quiet:
        servers["jobwarden/log=warning"] = ["-m", "jobwarden", *SERVE, "--log-level", "warning"]
    report = harness.Report(
        "http_submit_callgrind",
        {"rounds": args.rounds, "requests": requests, "connections": conns, "loop": "asyncio"},
    )
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jobwarden-callgrind-") as tmp:
        for name, server_argv in servers.items():
            samples = []
            for n in range(args.rounds):
                out = Path(tmp) / f"{name.replace('/', '_')}.{n}.out"
                command = functools.partial(callgrind_argv, out, server_argv)
                samples.append(measure(name, command, out, requests, conns))
                if not args.json:
                    print(f"  {name}: {harness.fmt(samples[-1])} instructions/request", flush=True)
            per_request[name] = report.add(name, "instructions", "per request", samples)
    report.note(
        f"POST {PATH} body {BODY}; {requests} requests over {conns} keep-alive connections after"
        f" {WARMUP} unmeasured ones; user-space instructions of the server process only"
    )
    ours, theirs = per_request["jobwarden"], per_request["reference"]
    report.note(
        f"reference / jobwarden instructions = {theirs / ours:.2f} (http_submit's target is"
        " 0.5x the reference's requests/s; this ratio is its CPU-bound estimate)"
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
