"""Throughput: N ``builtin.echo`` jobs submitted as fast as possible, one subscriber seeing all.

Each job emits three events (queued, running, succeeded); the subscriber must count exactly 3N and
every job must succeed. jobwarden is compared with the naive design (a task and a stream per job)
and with a bare pool of long-lived workers (``benchmarks/references.py``).

    .venv/bin/python -m benchmarks.throughput [--jobs 100000] [--rounds 5] [--backend trio]
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from benchmarks import harness, references
from jobwarden import Supervisor, builtin

TOOL = "builtin.echo"
DESCRIPTION = "Throughput of N builtin.echo jobs with one subscriber, beside two references."


class _Counter:
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = 0


async def _subscriber(
    sup: Supervisor, expected: int, counter: _Counter, *, task_status: TaskStatus[None]
) -> None:
    async with sup.subscribe() as events:
        task_status.started()
        async for _ in events:
            counter.seen += 1
            if counter.seen == expected:
                return


async def run_jobwarden(jobs: int) -> float:
    """Seconds from creating the Supervisor to its shutdown, all jobs done and all events seen."""
    counter = _Counter()
    began = time.perf_counter()
    async with Supervisor(plugins=[builtin], max_queued=jobs, subscriber_buffer=3 * jobs) as sup:
        async with anyio.create_task_group() as tg:
            await tg.start(_subscriber, sup, 3 * jobs, counter)
            for _ in range(jobs):
                await sup.submit(TOOL, {"text": "hi"})
        stats = sup.statistics()
        emitted = (await sup.store.event_bounds()).last
    elapsed = time.perf_counter() - began
    metrics = sup.registry.metrics(TOOL)
    if counter.seen != 3 * jobs or emitted != 3 * jobs:
        raise RuntimeError(f"{emitted} events emitted, {counter.seen} seen; expected {3 * jobs}")
    if (metrics.calls, metrics.successes, stats.queued, stats.running) != (jobs, jobs, 0, 0):
        raise RuntimeError(f"not every job succeeded: {metrics}, {stats}")
    return elapsed


async def _timed(runner: references.Runner, jobs: int) -> float:
    began = time.perf_counter()
    await runner(jobs)
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs per run (100000)")
    p.add_argument("--workers", type=int, default=64, help="the pool reference's workers (64)")
    args = harness.parse(p, argv)
    jobs: int = args.jobs
    backend: str = args.backend
    uvloop: bool = args.uvloop

    def rate(func: Callable[[], float]) -> Callable[[], harness.Figures]:
        return lambda: {"jobs/s": jobs / func()}

    def pool(n: int) -> Awaitable[None]:
        return references.run_pool(n, args.workers)

    candidates = {
        "jobwarden": rate(lambda: harness.run(run_jobwarden, jobs, backend=backend, uvloop=uvloop)),
        "naive": rate(
            lambda: harness.run(_timed, references.run_naive, jobs, backend=backend, uvloop=uvloop)
        ),
        "pool": rate(lambda: harness.run(_timed, pool, jobs, backend=backend, uvloop=uvloop)),
    }
    other_loop = "asyncio" if uvloop else "uvloop"
    # The uvloop comparison needs the optional extra (scripts/bench installs it); without it the
    # targets are still measured, and a note says what is missing.
    compare_loops = backend == "asyncio" and importlib.util.find_spec("uvloop") is not None
    if compare_loops:
        candidates[f"jobwarden/{other_loop}"] = rate(
            lambda: harness.run(run_jobwarden, jobs, backend=backend, uvloop=not uvloop)
        )
    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "throughput",
        {"jobs": jobs, "rounds": args.rounds, "backend": backend, "loop": loop},
    )
    small = min(jobs, 2_000)
    warmup = {
        "jobwarden": lambda: harness.run(run_jobwarden, small, backend=backend, uvloop=uvloop),
        "naive": lambda: harness.run(
            _timed, references.run_naive, small, backend=backend, uvloop=uvloop
        ),
        "pool": lambda: harness.run(_timed, pool, small, backend=backend, uvloop=uvloop),
    }
    samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)
    medians = {
        name: report.add(name, "throughput", "jobs/s", s["jobs/s"]) for name, s in samples.items()
    }
    report.note(
        "the submit loop never yields, so all N jobs are queued (and their queued events buffered)"
        " before the runners and the subscriber get the loop: hence max_queued=N and"
        " subscriber_buffer=3N"
    )
    report.note(
        "timed: Supervisor start to shutdown, with the one subscriber counting all 3N events and"
        " every job checked succeeded; references: the whole run_naive/run_pool call"
    )
    ours = medians["jobwarden"]
    for ref, bound in (("naive", 3.0), ("pool", 0.7)):
        ratio = ours / medians[ref]
        theirs = harness.fmt(medians[ref])
        line = f"jobwarden {harness.fmt(ours)} jobs/s = {ratio:.2f}x {ref} ({theirs} jobs/s)"
        report.check(f"throughput vs {ref}", line, ratio, ">=", bound, "x")
    if compare_loops:
        on_uv, on_plain = (
            (ours, medians["jobwarden/asyncio"]) if uvloop else (medians["jobwarden/uvloop"], ours)
        )
        report.note(
            f"uvloop (not a target): jobwarden {harness.fmt(on_uv)} jobs/s on uvloop vs"
            f" {harness.fmt(on_plain)} on plain asyncio = {on_uv / on_plain - 1:+.0%}"
        )
    elif backend == "asyncio":
        report.note("uvloop (not a target): not installed here (pip install 'jobwarden[uvloop]')")
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
