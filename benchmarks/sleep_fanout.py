"""Sleep fan-out: N concurrent 1 s ``builtin.sleep`` jobs, from the first submit to the last done.

The reference is the floor: the same N sleeps as bare anyio tasks in one task group.

    .venv/bin/python -m benchmarks.sleep_fanout [--jobs 10000] [--seconds 1] [--rounds 5]
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from benchmarks import harness
from jobwarden import JobState, Supervisor, builtin

DESCRIPTION = "Wall time of N concurrent 1 s builtin.sleep jobs, beside N bare anyio sleeps."
TOOL = "builtin.sleep"


async def run_jobwarden(jobs: int, seconds: float) -> harness.Figures:
    """Wall seconds from the first submit until every job succeeded (and the supervisor's start)."""
    began = time.perf_counter()
    async with Supervisor(plugins=[builtin], concurrency=jobs, max_queued=jobs) as sup:
        started = time.perf_counter()
        with harness.GcPauses() as pauses:
            ids = [(await sup.submit(TOOL, {"seconds": seconds})).id for _ in range(jobs)]
            # Newest first: it finishes (about) last, so the other waits find their job done and
            # return at once instead of each arming a wait of its own.
            for job_id in reversed(ids):
                record = await sup.wait(job_id)
                if record.state is not JobState.SUCCEEDED:
                    raise RuntimeError(f"job {job_id} ended {record.state}: {record.error}")
            done = time.perf_counter()
    if sup.registry.metrics(TOOL).successes != jobs:
        raise RuntimeError("not every job succeeded")
    return {
        "wall s": done - started,
        "gc s": pauses.seconds,
        "full gc s": pauses.full_seconds,
        "full gcs": pauses.full,
        "start s": started - began,
    }


async def run_bare(jobs: int, seconds: float) -> harness.Figures:
    """Wall seconds for N bare ``anyio.sleep`` tasks in one task group."""
    with harness.GcPauses() as pauses:
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(anyio.sleep, seconds)
        done = time.perf_counter()
    return {
        "wall s": done - began,
        "gc s": pauses.seconds,
        "full gc s": pauses.full_seconds,
        "full gcs": pauses.full,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--jobs", type=int, default=10_000, help="concurrent sleeps (10000)")
    p.add_argument("--seconds", type=float, default=1.0, help="each sleep (1.0)")
    args = harness.parse(p, argv)
    jobs: int = args.jobs
    seconds: float = args.seconds
    backend: str = args.backend
    uvloop: bool = args.uvloop
    candidates = {
        "jobwarden": lambda: harness.run(
            run_jobwarden, jobs, seconds, backend=backend, uvloop=uvloop
        ),
        "bare tasks": lambda: harness.run(run_bare, jobs, seconds, backend=backend, uvloop=uvloop),
    }
    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "sleep_fanout",
        {"jobs": jobs, "seconds": seconds, "rounds": args.rounds, "backend": backend, "loop": loop},
    )
    warmup = {
        "jobwarden": lambda: harness.run(run_jobwarden, 100, 0.01, backend=backend, uvloop=uvloop),
        "bare tasks": lambda: harness.run(run_bare, 100, 0.01, backend=backend, uvloop=uvloop),
    }
    samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)
    ours = report.add(
        "jobwarden", "first submit -> last succeeded", "s", samples["jobwarden"]["wall s"]
    )
    ours_gc = report.add("jobwarden", "  of which in gc", "s", samples["jobwarden"]["gc s"])
    ours_full = report.add(
        "jobwarden", "    in full collections", "s", samples["jobwarden"]["full gc s"]
    )
    report.add("jobwarden", "    full collections", "", samples["jobwarden"]["full gcs"])
    report.add("jobwarden", "Supervisor start (not timed)", "s", samples["jobwarden"]["start s"])
    floor = report.add("bare tasks", "start -> all slept", "s", samples["bare tasks"]["wall s"])
    floor_gc = report.add("bare tasks", "  of which in gc", "s", samples["bare tasks"]["gc s"])
    floor_full = report.add(
        "bare tasks", "    in full collections", "s", samples["bare tasks"]["full gc s"]
    )
    report.add("bare tasks", "    full collections", "", samples["bare tasks"]["full gcs"])
    report.note(
        f"Supervisor(concurrency={jobs:,}, max_queued={jobs:,}); the bare tasks are the floor;"
        " the Supervisor's start (spawning its runners) is shown but not in the timed figure"
    )
    report.note(
        f"cyclic gc pauses inside the timed window: jobwarden {ours_gc:.3f} s ({ours_full:.3f} s"
        f" in full collections), bare tasks {floor_gc:.3f} s ({floor_full:.3f} s in full"
        " collections); medians, measured with gc.callbacks; gc is left on, as in production"
    )
    report.check(
        "sleep fan-out",
        f"jobwarden {ours:.3f} s for {jobs:,} x {seconds:g} s sleeps"
        f" (floor {floor:.3f} s, overhead {ours - floor:+.3f} s)",
        ours,
        "<=",
        seconds + 0.5,
        " s",
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
