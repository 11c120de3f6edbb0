"""Latency: cancelling a running async job, and how far a timeout overshoots.

(a) Cancel: a ``builtin.sleep`` job of 60 s is running (a subscriber saw its running event); time
``await sup.cancel(id)`` until it returns the cancelled record, and until the cancelled event
reaches the subscriber (another task). Reference: cancelling a bare task's CancelScope.
(b) Timeout: ``builtin.sleep`` of 10 s with ``timeout_s=0.05``, several at a time; overshoot of
the record's (finished_at - started_at) and of a monotonic clock around submit + wait.
Reference: ``anyio.move_on_after(0.05)`` around a bare sleep.

    .venv/bin/python -m benchmarks.latency [--cancels 200] [--timeouts 100] [--rounds 5]
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from benchmarks import harness
from jobwarden import JobEvent, JobState, Supervisor, builtin

DESCRIPTION = "Cancel latency of a running job and timeout overshoot, beside bare anyio."
TOOL = "builtin.sleep"
MS = 1000.0


def _p50_p99(name: str, seconds: list[float]) -> harness.Figures:
    return {
        f"{name} p50": harness.percentile(seconds, 0.50) * MS,
        f"{name} p99": harness.percentile(seconds, 0.99) * MS,
    }


async def _watch(
    sup: Supervisor,
    job_id: str,
    running: anyio.Event,
    seen: list[float],
    *,
    task_status: TaskStatus[None],
) -> None:
    """Subscribe to one job: say when it runs, note when its terminal event arrives."""
    async with sup.subscribe(job_id=job_id) as events:
        task_status.started()
        async for event in events:
            if not isinstance(event, JobEvent):
                continue
            if event.data.state is JobState.RUNNING:
                running.set()
            elif event.data.state.terminal:
                seen.append(time.perf_counter())
                if event.data.state is not JobState.CANCELLED:
                    raise RuntimeError(f"job {job_id} ended {event.data.state}, not cancelled")


async def jobwarden_cancels(runs: int) -> harness.Figures:
    """``runs`` cancels of a running 60 s sleep job, one after the other."""
    returned: list[float] = []
    delivered: list[float] = []
    async with Supervisor(plugins=[builtin]) as sup:
        for _ in range(runs):
            record = await sup.submit(TOOL, {"seconds": 60})
            running = anyio.Event()
            seen: list[float] = []
            async with anyio.create_task_group() as tg:
                await tg.start(_watch, sup, record.id, running, seen)
                await running.wait()
                began = time.perf_counter()
                cancelled = await sup.cancel(record.id)
                returned.append(time.perf_counter() - began)
            if cancelled.state is not JobState.CANCELLED:
                raise RuntimeError(f"cancel returned a {cancelled.state} record")
            delivered.append(seen[0] - began)
    if sup.registry.metrics(TOOL).cancellations != runs:
        raise RuntimeError("not every job was counted as cancelled")
    return _p50_p99("cancel() returned", returned) | _p50_p99("event at subscriber", delivered)


async def _sleeper(scope: anyio.CancelScope, ready: anyio.Event, seen: list[float]) -> None:
    with scope:
        ready.set()
        await anyio.sleep(60)
    seen.append(time.perf_counter())


async def bare_cancels(runs: int) -> harness.Figures:
    """``runs`` cancels of a bare task sleeping 60 s in its own CancelScope."""
    observed: list[float] = []
    joined: list[float] = []
    for _ in range(runs):
        ready = anyio.Event()
        scope = anyio.CancelScope()
        seen: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sleeper, scope, ready, seen)
            await ready.wait()
            began = time.perf_counter()
            scope.cancel()
        joined.append(time.perf_counter() - began)
        observed.append(seen[0] - began)
    return _p50_p99("task observed it", observed) | _p50_p99("task joined", joined)


async def _spread(runs: int, concurrent: int, one: Callable[[], Awaitable[None]]) -> None:
    """Run ``one`` ``runs`` times, ``concurrent`` at a time."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    async with anyio.create_task_group() as tg:
        for index in range(concurrent):
            tg.start_soon(worker, runs // concurrent + (index < runs % concurrent))


async def jobwarden_timeouts(runs: int, concurrent: int, limit_s: float) -> harness.Figures:
    """Overshoot of ``limit_s`` on 10 s sleep jobs, from the records and from the caller."""
    recorded: list[float] = []
    wall: list[float] = []
    async with Supervisor(plugins=[builtin]) as sup:

        async def one() -> None:
            began = time.perf_counter()
            record = await sup.submit(TOOL, {"seconds": 10}, timeout_s=limit_s)
            done = await sup.wait(record.id)
            wall.append(time.perf_counter() - began - limit_s)
            if done.state is not JobState.TIMED_OUT or not (done.started_at and done.finished_at):
                raise RuntimeError(f"job {done.id} ended {done.state}, not timed_out")
            recorded.append((done.finished_at - done.started_at).total_seconds() - limit_s)

        await _spread(runs, concurrent, one)
    return _p50_p99("overshoot (record)", recorded) | _p50_p99("overshoot (caller)", wall)


async def bare_timeouts(runs: int, concurrent: int, limit_s: float) -> harness.Figures:
    """Overshoot of ``move_on_after(limit_s)`` around a bare 10 s sleep."""
    wall: list[float] = []

    async def one() -> None:
        began = time.perf_counter()
        with anyio.move_on_after(limit_s):
            await anyio.sleep(10)
        wall.append(time.perf_counter() - began - limit_s)

    await _spread(runs, concurrent, one)
    return _p50_p99("overshoot", wall)


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--cancels", type=int, default=200, help="cancels per round (200)")
    p.add_argument("--timeouts", type=int, default=100, help="timed-out jobs per round (100)")
    p.add_argument("--concurrent", type=int, default=10, help="timeouts at a time (10)")
    p.add_argument("--timeout", type=float, default=0.05, help="timeout_s (0.05)")
    args = harness.parse(p, argv)
    cancels: int = args.cancels
    timeouts: int = args.timeouts
    concurrent: int = args.concurrent
    timeout: float = args.timeout
    backend: str = args.backend
    uvloop: bool = args.uvloop
    candidates: dict[str, Callable[[], harness.Figures]] = {
        "jobwarden cancel": lambda: harness.run(
            jobwarden_cancels, cancels, backend=backend, uvloop=uvloop
        ),
        "bare cancel": lambda: harness.run(bare_cancels, cancels, backend=backend, uvloop=uvloop),
        "jobwarden timeout": lambda: harness.run(
            jobwarden_timeouts, timeouts, concurrent, timeout, backend=backend, uvloop=uvloop
        ),
        "bare timeout": lambda: harness.run(
            bare_timeouts, timeouts, concurrent, timeout, backend=backend, uvloop=uvloop
        ),
    }
    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "latency",
        {
            "cancels": cancels,
            "timeouts": timeouts,
            "concurrent": concurrent,
            "timeout_s": timeout,
            "rounds": args.rounds,
            "backend": backend,
            "loop": loop,
        },
    )
    warmup = {
        "jobwarden": lambda: harness.run(jobwarden_cancels, 10, backend=backend, uvloop=uvloop),
        "bare": lambda: harness.run(bare_cancels, 10, backend=backend, uvloop=uvloop),
    }
    samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)
    med = {
        (name, figure): report.add(name, figure, "ms", values)
        for name, figures in samples.items()
        for figure, values in figures.items()
    }
    report.note(
        "each figure is a per-round percentile; the table shows the median (min, max) over rounds;"
        " synchronisation is by events, never sleeps"
    )
    for figure, ref in (
        ("cancel() returned", "task joined"),
        ("event at subscriber", "task observed it"),
    ):
        p50, p99 = (
            med["jobwarden cancel", f"{figure} p50"],
            med["jobwarden cancel", f"{figure} p99"],
        )
        floor = med["bare cancel", f"{ref} p99"]
        line = f"{figure}: p50 {p50:.3f} ms, p99 {p99:.3f} ms (bare {ref} p99 {floor:.3f} ms)"
        report.check("cancel latency", line, p99, "<=", 5.0, " ms")
    floor = med["bare timeout", "overshoot p99"]
    for figure in ("overshoot (record)", "overshoot (caller)"):
        p50, p99 = (
            med["jobwarden timeout", f"{figure} p50"],
            med["jobwarden timeout", f"{figure} p99"],
        )
        line = f"{figure}: p50 {p50:.2f} ms, p99 {p99:.2f} ms (bare p99 {floor:.2f} ms)"
        report.check("timeout precision", line, p99, "<=", 20.0, " ms")
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
