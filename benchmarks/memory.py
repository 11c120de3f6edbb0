"""Memory: traced bytes per queued job, per retained finished job, and per naive idle actor.

tracemalloc is started just before the objects are created (after the Supervisor is up), and each
job's input dict is created inside the measured loop, as a real caller's would be.

    .venv/bin/python -m benchmarks.memory [--jobs 100000] [--naive-jobs 20000] [--rounds 3]
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectSendStream

from benchmarks import harness, references
from jobwarden import JobEvent, JobState, MemoryStore, Plugin, Supervisor, ToolContext, builtin
from jobwarden.store.memory import DEFAULT_RETAIN_EVENTS

DESCRIPTION = "Traced bytes per queued job, per finished job, and per naive idle actor."
KB = 1024
NO_HISTORY = "(retain_events=1)"

held = Plugin("benchheld", version="1.0.0", description="Benchmark-local: a tool that waits.")


class HeldIn(msgspec.Struct):
    """Same shape as builtin.echo's input."""

    text: str


class HeldOut(msgspec.Struct):
    """The text back."""

    text: str


class _Gate:
    """Opened when the benchmark is done; the one running ``benchheld.wait`` job waits on it."""

    event: anyio.Event | None = None


@held.tool(max_concurrency=1)
async def wait(inp: HeldIn, ctx: ToolContext) -> HeldOut:
    """Wait for the gate: the first job holds the tool's only slot, so every later one queues."""
    assert _Gate.event is not None
    await _Gate.event.wait()
    return HeldOut(text=inp.text)


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def queued_bytes(jobs: int, retain_events: int) -> float:
    """Bytes per job for ``jobs`` queued ``benchheld.wait`` jobs behind one running one."""
    _Gate.event = anyio.Event()
    store = MemoryStore(retain_events=retain_events)
    async with Supervisor(plugins=[held], store=store, max_queued=jobs) as sup:
        first = await sup.submit("benchheld.wait", {"text": "hi"})
        async with sup.subscribe(job_id=first.id) as events:
            async for event in events:
                if isinstance(event, JobEvent) and event.data.state is JobState.RUNNING:
                    break
        tracemalloc.start()
        try:
            before = _traced()
            for _ in range(jobs):
                await sup.submit("benchheld.wait", {"text": "hi"})
            grown = _traced() - before
        finally:
            tracemalloc.stop()
        stats = sup.statistics()
        _Gate.event.set()
    if (stats.queued, stats.running) != (jobs, 1):
        raise RuntimeError(f"expected {jobs} queued jobs behind one running: {stats}")
    return grown / jobs


async def finished_bytes(jobs: int, retain_events: int) -> float:
    """Bytes per job retained after ``jobs`` echo jobs succeeded (no subscriber)."""
    store = MemoryStore(retain_events=retain_events)
    async with Supervisor(plugins=[builtin], store=store, max_queued=jobs) as sup:
        tracemalloc.start()
        try:
            before = _traced()
            for _ in range(jobs):
                last = await sup.submit("builtin.echo", {"text": "hi"})
            await sup.wait(last.id)
            while pending := await store.unfinished():
                await sup.wait(pending[-1].id)
            grown = _traced() - before
        finally:
            tracemalloc.stop()
        stats = sup.statistics()
    metrics = sup.registry.metrics("builtin.echo")
    if (metrics.successes, stats.queued, stats.running) != (jobs, 0, 0):
        raise RuntimeError(f"not every job succeeded: {metrics}, {stats}")
    return grown / jobs


async def naive_idle_bytes(jobs: int) -> float:
    """Bytes per idle naive actor: job object, input dict, task and stream pair, all waiting."""
    ev_send, ev_recv = anyio.create_memory_object_stream[JobEvent](math.inf)
    events = references.Events(ev_send)
    inboxes: list[MemoryObjectSendStream[str]] = []  # held as a supervisor would hold them
    async with ev_send, ev_recv, anyio.create_task_group() as tg:
        tracemalloc.start()
        try:
            before = _traced()
            for n in range(jobs):
                job = references.Job(f"{n:032x}", {"text": "hi"})
                send, receive = anyio.create_memory_object_stream[str](1)
                tg.start_soon(references.naive_actor, job, receive, events)
                inboxes.append(send)
            await anyio.wait_all_tasks_blocked()
            grown = _traced() - before
        finally:
            tracemalloc.stop()
        tg.cancel_scope.cancel()
    for inbox in inboxes:
        inbox.close()
    return grown / jobs


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION, rounds=3)
    p.add_argument("--jobs", type=int, default=100_000, help="jobwarden jobs (100000)")
    p.add_argument("--naive-jobs", type=int, default=20_000, help="naive idle actors (20000)")
    args = harness.parse(p, argv)
    jobs: int = args.jobs
    naive: int = args.naive_jobs
    backend: str = args.backend
    uvloop: bool = args.uvloop
    retain = DEFAULT_RETAIN_EVENTS

    def figure(func: Callable[[], float]) -> Callable[[], harness.Figures]:
        return lambda: {"bytes/job": func()}

    def on_loop(
        func: Callable[[int, int], Awaitable[float]], retain_events: int
    ) -> Callable[[], float]:
        return lambda: harness.run(func, jobs, retain_events, backend=backend, uvloop=uvloop)

    candidates = {
        "jobwarden queued": figure(on_loop(queued_bytes, retain)),
        f"jobwarden queued {NO_HISTORY}": figure(on_loop(queued_bytes, 1)),
        "jobwarden finished": figure(on_loop(finished_bytes, retain)),
        f"jobwarden finished {NO_HISTORY}": figure(on_loop(finished_bytes, 1)),
        "naive idle actor": figure(
            lambda: harness.run(naive_idle_bytes, naive, backend=backend, uvloop=uvloop)
        ),
    }
    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "memory",
        {
            "jobs": jobs,
            "naive_jobs": naive,
            "rounds": args.rounds,
            "backend": backend,
            "loop": loop,
        },
    )
    samples = harness.interleave(candidates, args.rounds, quiet=args.json)
    med = {name: report.add(name, "traced", "B/job", s["bytes/job"]) for name, s in samples.items()}
    for kind, nevents in (("queued", jobs), ("finished", 3 * jobs)):
        full = med[f"jobwarden {kind}"]
        share = full - med[f"jobwarden {kind} {NO_HISTORY}"]
        kept = min(retain, nevents)
        report.note(
            f"{kind}: the store's event history is bounded (MemoryStore(retain_events={retain:,}):"
            f" {kept:,} of {nevents:,} events kept); it is {harness.fmt(share)} B/job"
            f" ({share / full:.0%}) of the {harness.fmt(full)} B/job figure"
            f" (the difference from the same run with retain_events=1)"
        )
    report.note(
        "queued: benchheld.wait (max_concurrency=1) holds its one slot on an anyio.Event, so every"
        " job submitted after it stays queued; figures include each job's input dict"
    )
    report.note(
        f"naive idle actor: {naive:,} tasks each waiting on its own stream"
        " (job object + input dict + task + stream pair, no event); DESIGN.md says about 8.5 KB"
    )
    report.check(
        "queued job memory",
        f"jobwarden {med['jobwarden queued'] / KB:.2f} KB per queued job"
        f" (naive idle actor {med['naive idle actor'] / KB:.2f} KB)",
        med["jobwarden queued"] / KB,
        "<=",
        3.0,
        " KB",
    )
    report.check(
        "finished job memory",
        f"jobwarden {med['jobwarden finished'] / KB:.2f} KB per retained finished job",
        med["jobwarden finished"] / KB,
        "<=",
        1.5,
        " KB",
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
