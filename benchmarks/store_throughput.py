"""Store throughput: N ``builtin.echo`` jobs with the SQLite store beside the memory store.

Every job must succeed and one subscriber must count all 3N events, as in ``throughput``. With a
durable store ``submit`` returns only once the job is committed, so the jobs are submitted two
ways: (a) by C concurrent submitter tasks (like C HTTP clients; their writes share commits), the
figure the target is judged on, and (b) by one serial loop, which measures a commit's latency
rather than the store's throughput. One more row (a) runs the same echo declared
``retry_on_interrupt=True`` (``restartable.echo``, not the target's figure): the SQLite store then
writes its running state behind and calls the tool at once, instead of calling it once that state
is committed. Each SQLite
run gets a new file in a fresh temporary directory, deleted afterwards; the file is read back
after the run to check every job succeeded.

    .venv/bin/python -m benchmarks.store_throughput [--jobs 50000] [--submitters 64]
        [--serial-jobs 5000] [--rounds 5] [--backend trio] [--uvloop]
"""

from __future__ import annotations

import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from benchmarks import harness
from jobwarden import JobStore, MemoryStore, Plugin, Supervisor, ToolContext, builtin
from jobwarden.plugins.builtin import EchoIn, EchoOut
from jobwarden.store.sqlite import SqliteStore, Synchronous

TOOL = "builtin.echo"
RESTARTABLE_TOOL = "restartable.echo"
DESCRIPTION = "Throughput of N builtin.echo jobs on the SQLite store beside the memory store."
SYNCHRONOUS: dict[str, Synchronous] = {"sqlite full": "full", "sqlite normal": "normal"}
STORES = ("memory", *SYNCHRONOUS)
TARGET_STORE = "sqlite full"
RESTARTABLE = "sqlite full, restartable.echo"
SUBMITTERS = 64  # like 64 HTTP clients: concurrent submits share commits

restartable = Plugin("restartable", version="1.0.0")


@restartable.tool(timeout=10.0, retry_on_interrupt=True)
async def echo(inp: EchoIn, ctx: ToolContext) -> EchoOut:
    """builtin.echo, declared safe to run again after a crash."""
    return EchoOut(text=inp.text)


async def _count_events(
    sup: Supervisor, expected: int, seen: list[int], *, task_status: TaskStatus[None]
) -> None:
    async with sup.subscribe() as events:
        task_status.started()
        async for _ in events:
            seen[0] += 1
            if seen[0] == expected:
                return


async def _submit(sup: Supervisor, tool: str, jobs: int) -> None:
    for _ in range(jobs):
        await sup.submit(tool, {"text": "hi"})


async def run_jobs(
    store: JobStore, jobs: int, submitters: int, tool: str = TOOL
) -> harness.Figures:
    """Jobs/s from creating the Supervisor to its shutdown, all jobs done and all events seen.

    Also CPU per job: of the event loop's thread alone, of the whole process (the loop plus the
    store's reader threads), both steadier than wall time on shared cores, and of the child
    processes reaped meanwhile (the SQLite store's writer process, reaped as the store closes).
    """
    seen = [0]
    share, extra = divmod(jobs, submitters)
    loop_cpu, cpu, child_cpu = time.thread_time(), time.process_time(), _children_cpu()
    began = time.perf_counter()
    # max_queued=N and a 3N subscriber buffer: with the memory store nothing yields while
    # submitting, so every job and queued event is buffered before anything runs.
    async with Supervisor(
        plugins=[builtin, restartable], store=store, max_queued=jobs, subscriber_buffer=3 * jobs
    ) as sup:
        async with anyio.create_task_group() as tg:
            await tg.start(_count_events, sup, 3 * jobs, seen)
            for index in range(submitters):
                tg.start_soon(_submit, sup, tool, share + (index < extra))
        stats = sup.statistics()
        emitted = (await sup.store.event_bounds()).last
    elapsed = time.perf_counter() - began
    loop_cpu, cpu = time.thread_time() - loop_cpu, time.process_time() - cpu
    child_cpu = _children_cpu() - child_cpu
    metrics = sup.registry.metrics(tool)
    if seen[0] != 3 * jobs or emitted != 3 * jobs:
        raise RuntimeError(f"{emitted} events emitted, {seen[0]} seen; expected {3 * jobs}")
    if (metrics.calls, metrics.successes, stats.queued, stats.running) != (jobs, jobs, 0, 0):
        raise RuntimeError(f"not every job succeeded: {metrics}, {stats}")
    return {
        "jobs/s": jobs / elapsed,
        "loop cpu us/job": loop_cpu / jobs * 1e6,
        "cpu us/job": cpu / jobs * 1e6,
        "writer process cpu us/job": child_cpu / jobs * 1e6,
        "loop idle %": 100 * max(0.0, 1 - loop_cpu / elapsed),
    }


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _check_file(path: Path, jobs: int) -> None:
    """The closed file holds every job, succeeded, and all 3N events: nothing was lost."""
    db = sqlite3.connect(path)
    try:
        states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        events = db.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        db.close()
    if states != {"succeeded": jobs} or events != 3 * jobs:
        raise RuntimeError(f"{path}: jobs by state {states}, {events} events; expected {jobs}")


def measure(
    kind: str, jobs: int, submitters: int, *, backend: str, uvloop: bool
) -> harness.Figures:
    """One run of ``jobs`` jobs on a new store of ``kind`` (see ``STORES``, and ``RESTARTABLE``)."""
    tool = TOOL
    if kind == RESTARTABLE:
        kind, tool = TARGET_STORE, RESTARTABLE_TOOL
    if kind == "memory":
        return harness.run(
            run_jobs, MemoryStore(), jobs, submitters, backend=backend, uvloop=uvloop
        )
    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as folder:
        path = Path(folder) / "jobs.db"
        store = SqliteStore(path, synchronous=SYNCHRONOUS[kind])
        figures = harness.run(
            run_jobs, store, jobs, submitters, tool, backend=backend, uvloop=uvloop
        )
        _check_file(path, jobs)
    counts = store.statistics()
    return figures | {
        "commits/job": counts.commits / jobs,
        "writes/commit": counts.writes / counts.commits,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--jobs", type=int, default=50_000, help="jobs per concurrent run (50000)")
    p.add_argument(
        "--submitters",
        type=int,
        default=SUBMITTERS,
        help=f"concurrent submitter tasks, every store ({SUBMITTERS})",
    )
    p.add_argument("--serial-jobs", type=int, default=5_000, help="jobs per serial-loop run (5000)")
    args = harness.parse(p, argv)
    if args.submitters < 1 or args.jobs < args.submitters or args.serial_jobs < 1:
        p.error("need --submitters >= 1, --jobs >= --submitters and --serial-jobs >= 1")
    jobs: int = args.jobs
    submitters: int = args.submitters
    serial: int = args.serial_jobs
    backend: str = args.backend
    uvloop: bool = args.uvloop

    def candidate(kind: str, n: int, tasks: int) -> Callable[[], harness.Figures]:
        return lambda: measure(kind, n, tasks, backend=backend, uvloop=uvloop)

    concurrent = f"{submitters} submitters"
    candidates = {f"{kind}, {concurrent}": candidate(kind, jobs, submitters) for kind in STORES}
    candidates[f"{RESTARTABLE}, {concurrent}"] = candidate(RESTARTABLE, jobs, submitters)
    candidates |= {f"{kind}, serial": candidate(kind, serial, 1) for kind in STORES}
    small = min(jobs, 2_000)
    warmup = {kind: candidate(kind, small, min(submitters, small)) for kind in STORES}
    samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)

    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "store_throughput",
        {
            "jobs": jobs,
            "submitters": submitters,
            "serial_jobs": serial,
            "rounds": args.rounds,
            "backend": backend,
            "loop": loop,
        },
    )
    rate: dict[str, float] = {}
    for name, figures in samples.items():
        rate[name] = report.add(name, "throughput", "jobs/s", figures["jobs/s"])
        report.add(name, "event loop CPU", "us/job", figures["loop cpu us/job"])
        report.add(name, "process CPU", "us/job", figures["cpu us/job"])
        if name.startswith("sqlite"):
            report.add(name, "writer process CPU", "us/job", figures["writer process cpu us/job"])
        report.add(name, "event loop idle", "%", figures["loop idle %"])
        if "commits/job" in figures:
            report.add(name, "commits per job", "", figures["commits/job"])
            report.add(name, "writes per commit", "", figures["writes/commit"])

    def versus_memory(kind: str, how: str) -> str:
        ours, memory = rate[f"{kind}, {how}"], rate[f"memory, {how}"]
        return (
            f"{kind} {harness.fmt(ours)} jobs/s = {ours / memory:.2f}x memory"
            f" ({harness.fmt(memory)} jobs/s)"
        )

    report.note(
        f"the target is judged on (a) {concurrent}: a durable submit returns only after its"
        " commit, so concurrency is what lets writes share a commit (group commit), as concurrent"
        " HTTP clients do; the memory store gets the same submitters"
    )
    report.note(
        "(b) serial: one submit at a time, each waiting for its own commit (the runners'"
        " transitions join it), so it measures commit latency, not throughput:"
        f" {versus_memory('sqlite full', 'serial')};"
        f" {versus_memory('sqlite normal', 'serial')}"
    )
    report.note(
        f"synchronous=normal (not a target), (a): {versus_memory('sqlite normal', concurrent)}"
    )
    report.note(
        f"{RESTARTABLE_TOOL} (not the target's figure): builtin.echo declared"
        " retry_on_interrupt=True, so its running state is written behind rather than committed"
        " before the tool is called (a crash runs such a job again either way), (a):"
        f" {versus_memory(RESTARTABLE, concurrent)}"
    )
    report.note(
        "CPU: event loop = the loop's thread alone; process = all its threads (SQLite's readers"
        " included); writer process = the SQLite store's child that commits; loop idle = share"
        " of the wall time the loop's thread used no CPU"
        " (waiting on a commit in flight, or descheduled by other load)"
    )
    report.note(
        "each job is 3 writes (put, running, succeeded); the put is awaited by its submitter;"
        " builtin.echo's running state is committed before the tool is called (the job started"
        " ahead: no runner waits for it); the outcome is written behind; commits include the"
        " retention sweep's one purge at start; timed: Supervisor start (schema creation"
        " included) to shutdown"
    )
    report.note(
        f"SQLite files live in a fresh directory under {tempfile.gettempdir()} per run, deleted"
        " after it; two shared cores, load from other work varied during the run: read the"
        " ratios and the min/max spread"
    )
    paired = zip(
        samples[f"{TARGET_STORE}, {concurrent}"]["jobs/s"],
        samples[f"memory, {concurrent}"]["jobs/s"],
        strict=True,
    )
    report.note(
        "(a) round by round (each SQLite round beside the memory store's round, run next to it):"
        f" {', '.join(f'{sqlite / memory:.2f}x' for sqlite, memory in paired)}"
    )
    ours = rate[f"{TARGET_STORE}, {concurrent}"]
    ratio = ours / rate[f"memory, {concurrent}"]
    report.check(
        "sqlite store throughput vs memory store",
        f"(a) {concurrent}: {versus_memory(TARGET_STORE, concurrent)}",
        ratio,
        ">=",
        0.5,
        "x",
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
