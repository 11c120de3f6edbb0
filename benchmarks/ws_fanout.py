"""Websocket fan-out: S subscribers on ``/v1/events`` while J ``builtin.echo`` jobs run.

jobwarden runs as ``python -m jobwarden serve`` (memory store, open mode on loopback, JSON logs to
/dev/null). Each of S websocket clients connects to ``/v1/events`` and sends ``{"op":
"subscribe"}``; once the server counts S subscribers (``GET /v1/metrics``), the benchmark submits
J echo jobs over HTTP, one POST after the other, and every client must receive exactly the 3J
events (queued, running, succeeded per job) with strictly increasing, contiguous ids, the same
ones for everybody.

The reference (``benchmarks/reference_servers.py ws``) is a bare aiohttp broadcast: each socket
has its own bounded ``asyncio.Queue`` and writer task, and each of J ``POST /publish?n=3`` builds
three events of the same shape and size as jobwarden's CloudEvents, encodes each once and puts it
into every socket's queue.

Figures: deliveries/s = S x 3J / (first submit -> last delivery at any client); event latency =
receive time at the client minus the event's ``time`` (both processes read the same clock); the
server's CPU time per delivery. The S clients run in this process on aiohttp's client (one core
of two), each server in its own process; every server is started fresh each round.

    .venv/bin/python -m benchmarks.ws_fanout [--subscribers 1000] [--jobs 100] [--rounds 3]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import aiohttp
import anyio
import msgspec

from benchmarks import harness
from benchmarks.server_process import ServerProcess, python_module, raise_nofile

DESCRIPTION = "Websocket fan-out of job events to many subscribers, beside a bare broadcast."
TARGET = 0.7
EVENTS_PER_JOB = 3
SUBMIT_BODY = b'{"tool": "builtin.echo", "input": {"text": "hi"}}'
JSON = {"Content-Type": "application/json"}
SUBSCRIBED = '{"type":"subscribed"'
MS = 1000.0


class _Event(msgspec.Struct):
    """The part of a CloudEvent a client checks."""

    id: str
    time: datetime


_decoder = msgspec.json.Decoder(_Event)


class _Tally:
    """What one subscriber saw."""

    __slots__ = ("count", "disorder", "first", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = -1
        self.last = -1
        self.disorder = 0


class _Run:
    """One round's shared client state."""

    def __init__(self, subscribers: int, events: int) -> None:
        self.subscribers = subscribers
        self.expected = subscribers * events
        self.delivered = 0
        self.connected = 0
        self.finished = 0.0
        self.all_connected = anyio.Event()
        self.done = anyio.Event()
        self.latencies: list[float] = []
        self.tallies = [_Tally() for _ in range(subscribers)]
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.bad_frames: list[str] = []


class Target(msgspec.Struct, frozen=True):
    """How to drive one server: where to subscribe, what to POST, how it counts subscribers."""

    events_path: str
    subscribe_frame: str | None
    submit_path: str
    submit_body: bytes | None
    subscribers_path: str
    warm_path: str


JOBWARDEN = Target(
    events_path="/v1/events",
    subscribe_frame='{"op": "subscribe"}',
    submit_path="/v1/jobs",
    submit_body=SUBMIT_BODY,
    subscribers_path="/v1/metrics",
    warm_path="/v1/jobs?wait=5",
)
REFERENCE = Target(
    events_path="/v1/events",
    subscribe_frame=None,
    submit_path=f"/publish?n={EVENTS_PER_JOB}",
    submit_body=None,
    subscribers_path="/v1/health",
    warm_path=f"/publish?n={EVENTS_PER_JOB}",
)


def _subscriber_count(body: Any) -> int:
    """jobwarden says it in /v1/metrics (supervisor.subscribers); the reference in /v1/health."""
    if "supervisor" in body:
        count: int = body["supervisor"]["subscribers"]
        return count
    reference: int = body["subscribers"]
    return reference


async def _subscribe(
    session: aiohttp.ClientSession,
    url: str,
    target: Target,
    run: _Run,
    tally: _Tally,
    gate: anyio.Semaphore,
) -> None:
    async with gate:
        ws = await session.ws_connect(url, max_msg_size=1 << 20)
        if target.subscribe_frame is not None:
            await ws.send_str(target.subscribe_frame)
    run.sockets.append(ws)
    run.connected += 1
    if run.connected == run.subscribers:
        run.all_connected.set()
    latencies = run.latencies
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT or message.data.startswith(SUBSCRIBED):
            continue  # jobwarden's notice of where the stream starts is no event
        received = time.time()
        try:
            event = _decoder.decode(message.data)
        except msgspec.DecodeError as exc:  # also ValidationError: not a job event
            run.bad_frames.append(f"{exc}: {message.data[:300]!r}")
            continue
        latencies.append(received - event.time.timestamp())
        offset = int(event.id)
        if offset <= tally.last:
            tally.disorder += 1
        if tally.count == 0:
            tally.first = offset
        tally.last = offset
        tally.count += 1
        run.delivered += 1
        if run.delivered == run.expected:
            run.finished = time.perf_counter()
            run.done.set()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes | None) -> None:
    async with session.post(url, data=body, headers=JSON) as response:
        await response.read()
        if response.status not in (200, 202):
            raise RuntimeError(f"POST {url} answered {response.status}")


async def _wait_subscribers(
    session: aiohttp.ClientSession, url: str, wanted: int, *, attempts: int = 400
) -> None:
    seen = -1
    for _ in range(attempts):
        async with session.get(url) as response:
            seen = _subscriber_count(await response.json())
        if seen == wanted:
            return
        await anyio.sleep(0.05)
    raise RuntimeError(f"the server counts {seen} subscribers, expected {wanted}")


def _verify(run: _Run, events: int) -> None:
    """Every subscriber saw exactly ``events`` events, in order, the same contiguous ids."""
    if run.bad_frames:
        raise RuntimeError(
            f"{len(run.bad_frames)} frames were not job events; the first: {run.bad_frames[0]}"
        )
    counts = {t.count for t in run.tallies}
    if counts != {events}:
        wrong = sum(1 for t in run.tallies if t.count != events)
        raise RuntimeError(f"{wrong} subscribers saw a wrong number of events: {sorted(counts)}")
    spans = {(t.first, t.last) for t in run.tallies}
    disorder = sum(t.disorder for t in run.tallies)
    if disorder or len(spans) != 1:
        raise RuntimeError(f"events out of order ({disorder}) or not the same ones ({spans})")
    first, last = spans.pop()
    if last - first + 1 != events:
        raise RuntimeError(f"ids {first}..{last} are not {events} contiguous events")


async def measure(
    server: ServerProcess,
    target: Target,
    subscribers: int,
    jobs: int,
    connect_batch: int,
    timeout_s: float,
) -> harness.Figures:
    """One round against a running server: connect, subscribe, submit, count, verify."""
    events = jobs * EVENTS_PER_JOB
    run = _Run(subscribers, events)
    base = server.base
    connector = aiohttp.TCPConnector(limit=0)  # the default 100 would hold back the sockets
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(5):  # warm the server's submit path (no subscriber sees these)
            await _post(session, base + target.warm_path, target.submit_body)
        gate = anyio.Semaphore(connect_batch)
        async with anyio.create_task_group() as tg:
            url = base + target.events_path
            for tally in run.tallies:
                tg.start_soon(_subscribe, session, url, target, run, tally, gate)
            with anyio.fail_after(timeout_s):
                await run.all_connected.wait()
            await _wait_subscribers(session, base + target.subscribers_path, subscribers)
            cpu0 = server.cpu_seconds()
            client0 = time.process_time()
            began = time.perf_counter()
            with anyio.fail_after(timeout_s):
                for _ in range(jobs):
                    await _post(session, base + target.submit_path, target.submit_body)
                await run.done.wait()
            elapsed = run.finished - began
            server_cpu = server.cpu_seconds() - cpu0
            client_cpu = time.process_time() - client0
            await anyio.sleep(0.2)  # anything beyond the expected events would show up here
            tg.cancel_scope.cancel()
        with anyio.move_on_after(15):
            async with anyio.create_task_group() as closing:
                for ws in run.sockets:
                    closing.start_soon(ws.close)
    _verify(run, events)
    deliveries = run.expected
    return {
        "deliveries/s": deliveries / elapsed,
        "latency p50": harness.percentile(run.latencies, 0.50) * MS,
        "latency p99": harness.percentile(run.latencies, 0.99) * MS,
        "server CPU/delivery": server_cpu / deliveries * 1e6,
        "client busy": client_cpu / elapsed * 100,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION, rounds=3)
    p.add_argument("--subscribers", type=int, default=1_000, help="websocket clients (1000)")
    p.add_argument("--jobs", type=int, default=100, help="echo jobs, 3 events each (100)")
    p.add_argument("--connect-batch", type=int, default=64, help="clients connecting at once (64)")
    p.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, s (120)")
    args = harness.parse(p, argv)
    if args.backend != "asyncio":
        p.error("aiohttp is asyncio-only: --backend trio does not apply")
    subscribers: int = args.subscribers
    jobs: int = args.jobs
    limit = raise_nofile(2 * subscribers + 1_024)  # inherited by the servers started below
    if limit < subscribers + 256:
        p.error(f"the open-files limit is {limit}: too low for {subscribers} subscribers")

    serve = ["serve", "--host", "127.0.0.1", "--store", "memory://", "--log-format", "json"]
    servers: dict[str, tuple[Callable[[int], list[str]], Target]] = {
        "jobwarden": (
            lambda port: python_module("jobwarden", *serve, "--port", str(port)),
            JOBWARDEN,
        ),
        "reference": (
            lambda port: python_module("benchmarks.reference_servers", "ws", "--port", str(port)),
            REFERENCE,
        ),
    }

    def candidate(name: str, subs: int, n_jobs: int) -> Callable[[], harness.Figures]:
        argv_for, target = servers[name]

        def one_round() -> harness.Figures:
            with ServerProcess(name, argv_for) as server:
                return harness.run(
                    measure,
                    server,
                    target,
                    subs,
                    n_jobs,
                    args.connect_batch,
                    args.timeout,
                    uvloop=args.uvloop,
                )

        return one_round

    candidates = {name: candidate(name, subscribers, jobs) for name in servers}
    warmup = {name: candidate(name, min(subscribers, 50), min(jobs, 10)) for name in servers}
    samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)

    report = harness.Report(
        "ws_fanout",
        {
            "subscribers": subscribers,
            "jobs": jobs,
            "events": jobs * EVENTS_PER_JOB,
            "rounds": args.rounds,
            "client loop": "uvloop" if args.uvloop else "asyncio",
        },
    )
    medians: dict[str, float] = {}
    p99s: dict[str, float] = {}
    for name, s in samples.items():
        medians[name] = report.add(name, "deliveries", "/s", s["deliveries/s"])
        report.add(name, "event latency p50", "ms", s["latency p50"])
        p99s[name] = report.add(name, "event latency p99", "ms", s["latency p99"])
        report.add(name, "server CPU", "us/delivery", s["server CPU/delivery"])
        report.add(name, "client busy", "%", s["client busy"])
    report.note(
        f"every one of {subscribers} subscribers received exactly {jobs * EVENTS_PER_JOB} events,"
        " in order, the same contiguous ids (checked every round)"
    )
    report.note(
        "deliveries/s = subscribers x events / (first submit -> last delivery); latency = client"
        " receive time - the event's `time`; servers on the default asyncio loop, fresh each round"
    )
    report.note(
        "client busy: this process's CPU time over the timed span; near 100% means the clients,"
        " not the server, set the pace (server CPU per delivery is the cleaner comparison)"
    )
    ours, theirs = medians["jobwarden"], medians["reference"]
    ratio = ours / theirs
    line = (
        f"jobwarden {harness.fmt(ours)} deliveries/s = {ratio:.2f}x bare aiohttp broadcast"
        f" ({harness.fmt(theirs)}/s); event latency p99 {harness.fmt(p99s['jobwarden'])} ms vs"
        f" {harness.fmt(p99s['reference'])} ms"
    )
    report.check("ws fan-out vs bare aiohttp", line, ratio, ">=", TARGET, "x")
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
