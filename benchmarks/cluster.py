"""Several ``jobwarden serve`` nodes on one Redis prefix (issue #7): does a second node add
throughput, and how soon does a node see a job submitted on another?

(a) Throughput. One node, then two, each ``serve --store redis://...?prefix=<fresh>
--concurrency 200 --log-level warning`` on the same Redis. A load generator in this process
(aiohttp's client, one connection per submitter) keeps ``--in-flight`` submits of
``builtin.sleep`` 50 ms outstanding, ``POST /v1/jobs?wait=30`` spread round-robin over the nodes,
until ``--jobs`` have come back 200 ``succeeded`` (after an untimed warm-up). jobs/s = jobs /
(first submit -> last answer). The reference is one node measured in the same run; the target is
two nodes >= 1.8x it. Also per job: the nodes' CPU, Redis's CPU (``INFO cpu``) and this load
generator's; the share of the machine's two cores busy during the timed run (``/proc/stat``); and
how the jobs were split between the nodes (``/v1/metrics``).

(b) Latency across nodes. Two nodes; a websocket subscriber on each (``/v1/events``,
``{"op": "subscribe"}``); ``--latency-jobs`` ``builtin.echo`` submits on node A, one after the
other: for each, the time from sending the POST until that job's ``jobwarden.job.queued`` event
arrives on B (the figure; target p99 <= 20 ms), and on A itself (the reference: the same event
without crossing nodes).

Every answer and every event is checked: a submit not answered 200 succeeded, an event that does
not arrive within ``--event-timeout``, a run not done within ``--timeout``, a node that exits,
each stops the benchmark with a message saying what the nodes failed to do (a crash, not a MISS).
Each round uses a fresh key prefix and deletes its keys afterwards. Needs a Redis on ``--redis``
(default ``redis://127.0.0.1:6379/0``); without one it says so and skips.

    .venv/bin/python -m benchmarks.cluster [--jobs 2000] [--in-flight 400] [--concurrency 200]
        [--sleep 0.05] [--latency-jobs 300] [--rounds 3] [--timeout 60] [--event-timeout 5]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import aiohttp
import anyio
import msgspec
import redis

from benchmarks import harness
from benchmarks.server_process import ServerProcess, python_module, raise_nofile

DESCRIPTION = "Two jobwarden nodes on one Redis beside one node, and event latency across nodes."
THROUGHPUT_TARGET = 1.8
LATENCY_TARGET_MS = 20.0
TOOL = "builtin.sleep"
MS = 1000.0
WARMUP_JOBS = 200


class NodesDidNotCooperate(RuntimeError):
    """The nodes did not behave as one service: the message says what went wrong."""


class _Event(msgspec.Struct):
    """The part of a CloudEvent the latency run reads (``subject`` is empty on the frame saying
    where a subscription starts, which is no event)."""

    type: str
    subject: str = ""


_decode_event = msgspec.json.Decoder(_Event).decode


@contextmanager
def cluster(count: int, redis_url: str, concurrency: int) -> Iterator[list[ServerProcess]]:
    """``count`` nodes on a fresh prefix of ``redis_url``; stopped and the prefix's keys deleted
    afterwards."""
    prefix = f"jwbench:{uuid.uuid4().hex}"
    serve = [
        "serve",
        "--host",
        "127.0.0.1",
        "--store",
        f"{redis_url}?prefix={prefix}",
        "--concurrency",
        str(concurrency),
        "--log-format",
        "json",
        "--log-level",
        "warning",
    ]

    def argv(port: int) -> list[str]:
        return python_module("jobwarden", *serve, "--port", str(port))

    try:
        with ExitStack() as stack:
            yield [stack.enter_context(ServerProcess(f"node {i}", argv)) for i in range(count)]
    finally:
        delete_prefix(redis_url, prefix)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """UNLINK every key under ``prefix``."""
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])


def redis_cpu_s(redis_url: str) -> float:
    """User + system CPU seconds Redis has used so far."""
    with redis.Redis.from_url(redis_url) as client:
        info: dict[str, Any] = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_answers(redis_url: str) -> bool:
    """True when something answers PING at ``redis_url``."""
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def drive(
    bases: Sequence[str], jobs: int, in_flight: int, body: dict[str, Any], timeout_s: float
) -> float:
    """Submit ``jobs`` jobs with ``?wait=``, ``in_flight`` at a time, round-robin over ``bases``;
    the seconds from the first submit to the last answer. Every answer must be 200 succeeded."""
    issued = 0

    async def submitter(http: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < jobs:
            base = bases[issued % len(bases)]
            issued += 1
            try:
                async with http.post(base + "/v1/jobs?wait=30", json=body) as resp:
                    answer = await resp.read()
            except aiohttp.ClientError as exc:
                raise NodesDidNotCooperate(f"{base} did not answer: {exc!r}") from exc
            if resp.status != 200 or b'"state":"succeeded"' not in answer:
                raise NodesDidNotCooperate(
                    f"{base} answered {resp.status}: {answer[:400].decode(errors='replace')}"
                )

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        try:
            with anyio.fail_after(timeout_s):
                async with anyio.create_task_group() as tg:
                    for _ in range(min(in_flight, jobs)):
                        tg.start_soon(submitter, http)
        except TimeoutError:
            raise NodesDidNotCooperate(
                f"{jobs} jobs on {len(bases)} node(s) did not all finish within {timeout_s} s"
            ) from None
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return time.perf_counter() - began


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, every core (Linux /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is counted in user already
    return total - idle, total


def jobs_run(node: ServerProcess) -> int:
    """How many ``builtin.sleep`` jobs this node's metrics say it ran to success."""
    tools: list[dict[str, Any]] = node.get("/v1/metrics")["tools"]
    return int(next(t for t in tools if t["tool"] == TOOL)["successes"])


def throughput_round(count: int, args: Any, split: dict[int, list[list[int]]]) -> harness.Figures:
    """One round of (a) on ``count`` fresh nodes."""
    body = {"tool": TOOL, "input": {"seconds": args.sleep}}
    with cluster(count, args.redis, args.concurrency) as nodes:
        bases = [n.base for n in nodes]
        harness.run(drive, bases, WARMUP_JOBS, args.in_flight, body, args.timeout)
        cpu0 = sum(n.cpu_seconds() for n in nodes)
        redis0 = redis_cpu_s(args.redis)
        client0 = time.process_time()
        busy0, total0 = machine_jiffies()
        seconds = harness.run(drive, bases, args.jobs, args.in_flight, body, args.timeout)
        busy1, total1 = machine_jiffies()
        client = time.process_time() - client0
        cpu = sum(n.cpu_seconds() for n in nodes) - cpu0
        redis_cpu = redis_cpu_s(args.redis) - redis0
        split[count].append([jobs_run(n) for n in nodes])
    return {
        "jobs/s": args.jobs / seconds,
        "nodes CPU/job": cpu / args.jobs * 1e6,
        "redis CPU/job": redis_cpu / args.jobs * 1e6,
        "client CPU/job": client / args.jobs * 1e6,
        "machine busy": (busy1 - busy0) / max(1, total1 - total0) * 100,
    }


class _Arrivals:
    """When each job's queued event reached one subscriber."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = anyio.Event()

    async def pump(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            event = _decode_event(message.data)
            if event.type == "jobwarden.job.queued":
                self.at[event.subject] = now
                self.changed.set()
                self.changed = anyio.Event()
        raise NodesDidNotCooperate("a subscriber's websocket closed during the run")

    async def wait(self, job_id: str, where: str, timeout_s: float) -> float:
        try:
            with anyio.fail_after(timeout_s):
                while job_id not in self.at:
                    await self.changed.wait()
        except TimeoutError:
            raise NodesDidNotCooperate(
                f"the queued event of job {job_id} never reached the subscriber on {where}"
                f" within {timeout_s} s"
            ) from None
        return self.at[job_id]


async def _subscribed(http: aiohttp.ClientSession, base: str, timeout_s: float) -> None:
    """Return once ``base`` counts a subscriber (the websocket's subscription is attached)."""
    with anyio.fail_after(timeout_s):
        while True:
            async with http.get(base + "/v1/metrics") as resp:
                if (await resp.json())["supervisor"]["subscribers"] >= 1:
                    return
            await anyio.sleep(0.02)  # the server announces nothing: poll its count


async def latencies(a: str, b: str, jobs: int, timeout_s: float) -> tuple[list[float], list[float]]:
    """Submit ``jobs`` echo jobs on ``a`` one after the other; for each, the ms from sending the
    POST until its queued event reached the subscriber on ``b``, and the one on ``a``."""
    across: list[float] = []
    local: list[float] = []
    body = {"tool": "builtin.echo", "input": {"text": "hi"}}
    async with aiohttp.ClientSession() as http:
        on_a, on_b = _Arrivals(), _Arrivals()
        async with (
            http.ws_connect(a + "/v1/events") as ws_a,
            http.ws_connect(b + "/v1/events") as ws_b,
            anyio.create_task_group() as tg,
        ):
            for ws, arrivals in ((ws_a, on_a), (ws_b, on_b)):
                await ws.send_json({"op": "subscribe"})
                tg.start_soon(arrivals.pump, ws)
            await _subscribed(http, a, timeout_s)
            await _subscribed(http, b, timeout_s)
            for _ in range(jobs):
                sent = time.perf_counter()
                try:
                    async with http.post(a + "/v1/jobs", json=body) as resp:
                        answer: dict[str, Any] = await resp.json()
                except aiohttp.ClientError as exc:
                    raise NodesDidNotCooperate(f"{a} did not answer: {exc!r}") from exc
                if resp.status != 202:
                    raise NodesDidNotCooperate(f"{a} answered {resp.status}: {answer}")
                job_id = answer["job"]["id"]
                across.append((await on_b.wait(job_id, b, timeout_s) - sent) * MS)
                local.append((await on_a.wait(job_id, a, timeout_s) - sent) * MS)
            tg.cancel_scope.cancel()
    return across, local


def latency_round(args: Any, jobs: int) -> harness.Figures:
    """One round of (b) on two fresh nodes."""
    with cluster(2, args.redis, args.concurrency) as (a, b):
        try:
            across, local = harness.run(latencies, a.base, b.base, jobs, args.event_timeout)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
    return {
        "across p50": harness.percentile(across, 0.5),
        "across p99": harness.percentile(across, 0.99),
        "same p50": harness.percentile(local, 0.5),
        "same p99": harness.percentile(local, 0.99),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION, rounds=3, uvloop=False)
    p.add_argument("--jobs", type=int, default=2000, help="timed jobs per throughput run (2000)")
    p.add_argument("--in-flight", type=int, default=400, help="outstanding submits (400)")
    p.add_argument("--concurrency", type=int, default=200, help="serve --concurrency (200)")
    p.add_argument("--sleep", type=float, default=0.05, help="builtin.sleep seconds (0.05)")
    p.add_argument("--latency-jobs", type=int, default=300, help="submits per latency run (300)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis both use")
    p.add_argument("--timeout", type=float, default=60.0, help="give up on a run after (60 s)")
    p.add_argument(
        "--event-timeout", type=float, default=5.0, help="give up on one event after (5 s)"
    )
    args = harness.parse(p, argv)
    if args.backend != "asyncio":
        p.error("aiohttp and the servers run on asyncio: --backend trio does not apply")
    if not redis_answers(args.redis):
        print(f"cluster: no Redis answers at {args.redis} (start redis-server); skipping")
        return
    raise_nofile(4 * args.in_flight + 256)

    split: dict[int, list[list[int]]] = {1: [], 2: []}
    candidates: dict[str, Callable[[], harness.Figures]] = {
        "1 node": lambda: throughput_round(1, args, split),
        "2 nodes": lambda: throughput_round(2, args, split),
        "latency": lambda: latency_round(args, args.latency_jobs),
    }
    warmup = {"latency": lambda: latency_round(args, 20)}
    try:
        samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)
    except NodesDidNotCooperate as exc:
        raise SystemExit(f"cluster: the nodes did not work as one service: {exc}") from None

    report = harness.Report(
        "cluster",
        {
            "rounds": args.rounds,
            "jobs": args.jobs,
            "in_flight": args.in_flight,
            "concurrency": args.concurrency,
            "sleep_s": args.sleep,
            "latency_jobs": args.latency_jobs,
        },
    )
    medians: dict[str, float] = {}
    for name in ("1 node", "2 nodes"):
        figures = samples[name]
        medians[name] = report.add(name, "throughput", "jobs/s", figures["jobs/s"])
        report.add(name, "nodes CPU", "us/job", figures["nodes CPU/job"])
        report.add(name, "redis CPU", "us/job", figures["redis CPU/job"])
        report.add(name, "load generator CPU", "us/job", figures["client CPU/job"])
        report.add(name, "machine CPU busy", "%", figures["machine busy"])
    lat = samples["latency"]
    across_p99 = report.add("across nodes", "queued event p99", "ms", lat["across p99"])
    report.add("across nodes", "queued event p50", "ms", lat["across p50"])
    same_p99 = report.add("same node", "queued event p99", "ms", lat["same p99"])
    report.add("same node", "queued event p50", "ms", lat["same p50"])
    report.note(
        f"(a) POST /v1/jobs?wait=30 of {TOOL} {harness.fmt(args.sleep)} s, {args.in_flight} in"
        f" flight round-robin over the nodes, {args.jobs} timed after {WARMUP_JOBS} untimed; each"
        f" node serve --concurrency {args.concurrency} --log-level warning, fresh per round;"
        " every answer checked 200 succeeded"
    )
    report.note(
        "jobs run per node (sum of warm-up and timed, from /v1/metrics), by round: "
        + "; ".join(f"{count} node(s) {runs}" for count, runs in split.items())
    )
    report.note(
        "(b) builtin.echo submitted on A one after the other; ms from sending the POST to the"
        " job's queued event on a websocket subscriber on B (across) and on A (same node)"
    )
    report.note(
        "two shared cores carry the nodes, Redis and this load generator together (and whatever"
        " else runs on the machine: 'machine CPU busy' is every process's share of both cores"
        " during the timed run; near 100% a second node has no core to add)"
    )
    two, one = medians["2 nodes"], medians["1 node"]
    ratio = two / one
    report.check(
        "two nodes vs one",
        f"{harness.fmt(two)} jobs/s = {ratio:.2f}x one node ({harness.fmt(one)} jobs/s)",
        ratio,
        ">=",
        THROUGHPUT_TARGET,
        "x",
    )
    report.check(
        "queued event across nodes p99",
        f"{harness.fmt(across_p99)} ms (same node: {harness.fmt(same_p99)} ms)",
        across_p99,
        "<=",
        LATENCY_TARGET_MS,
        " ms",
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
