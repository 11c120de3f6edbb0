"""Memory store retention: what one purge batch costs the event loop at a million retained jobs.

The memory store (the library's default) runs on the event loop, so a purge batch stops
everything else for as long as it takes. A store is filled with N finished jobs (one in a
thousand ended eight days ago), then purged the way the retention sweep does, a batch of
``--batch`` at a time: by count (``keep_finished`` = N - 100 * batch) and by age (the old ones),
until a batch comes back short. Each batch call is timed. Reference, on the same store: listing
the newest 50 jobs, the cheapest read an HTTP client makes.

    .venv/bin/python -m benchmarks.memory_purge [--jobs 1000000] [--batch 50] [--rounds 3]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from benchmarks import harness
from jobwarden import JobRecord, JobState
from jobwarden.ids import new_job_id
from jobwarden.records import EventData, JobEvent
from jobwarden.store.base import JobQuery
from jobwarden.store.memory import MemoryStore

DESCRIPTION = "Memory store: one purge batch's time at N retained jobs, beside a listing's."
LISTINGS = 200


async def measure(jobs: int, batch: int) -> harness.Figures:
    """Fill a store, purge it in batches by count then by age, time each batch and a listing."""
    store = MemoryStore()
    now = datetime.now(UTC)
    old = now - timedelta(days=8)
    for index in range(jobs):
        record = JobRecord(
            id=new_job_id(),
            tool="builtin.echo",
            plugin="builtin",
            state=JobState.SUCCEEDED,
            input={"text": "hi"},
            result={"text": "hi"},
            created_at=now,
            finished_at=old if index % 1000 == 0 else now,
        )
        data = EventData(job_id=record.id, tool=record.tool, state=record.state, attempt=1)
        event = JobEvent(
            id=str(index + 1),
            source="jobwarden://bench",
            type="jobwarden.job.succeeded",
            subject=record.id,
            time=now,
            data=data,
        )
        await store.put(record, event)
    listing: list[float] = []
    for _ in range(LISTINGS):
        began = time.perf_counter()
        await store.list_jobs(JobQuery(limit=50))
        listing.append(time.perf_counter() - began)
    by_count = await _drain(store, batch, keep_finished=jobs - 100 * batch, finished_before=None)
    by_age = await _drain(store, batch, keep_finished=None, finished_before=now - timedelta(days=7))
    return {
        "count batch p50 ms": harness.percentile(by_count, 0.5) * 1e3,
        "count batch max ms": max(by_count) * 1e3,
        "age batch p50 ms": harness.percentile(by_age, 0.5) * 1e3,
        "age batch max ms": max(by_age) * 1e3,
        "listing p50 ms": harness.percentile(listing, 0.5) * 1e3,
    }


async def _drain(
    store: MemoryStore, batch: int, *, keep_finished: int | None, finished_before: datetime | None
) -> list[float]:
    """Purge batch after batch until one comes back short; each call's seconds."""
    took: list[float] = []
    while True:
        began = time.perf_counter()
        removed = await store.purge(
            finished_before=finished_before, keep_finished=keep_finished, limit=batch
        )
        took.append(time.perf_counter() - began)
        if removed < batch:
            return took


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table and how a batch compares with a listing."""
    p = harness.parser(DESCRIPTION, rounds=3, uvloop=False)
    p.add_argument("--jobs", type=int, default=1_000_000, help="retained jobs (1000000)")
    p.add_argument("--batch", type=int, default=50, help="jobs per purge call (50)")
    args = harness.parse(p, argv)
    if args.jobs < 1000 or args.batch < 1:
        p.error("need --jobs >= 1000 and --batch >= 1")
    samples: dict[str, list[float]] = {}
    for index in range(args.rounds):
        figures = harness.run(measure, args.jobs, args.batch, backend=args.backend)
        for key, value in figures.items():
            samples.setdefault(key, []).append(value)
        if not args.json:
            shown = ", ".join(f"{k} {harness.fmt(v)}" for k, v in figures.items())
            print(f"  round {index + 1}/{args.rounds}: {shown}", flush=True)
    report = harness.Report(
        "memory_purge", {"jobs": args.jobs, "batch": args.batch, "rounds": args.rounds}
    )
    count = report.add("purge by count", "batch p50", "ms", samples["count batch p50 ms"])
    report.add("purge by count", "batch max", "ms", samples["count batch max ms"])
    age = report.add("purge by age", "batch p50", "ms", samples["age batch p50 ms"])
    report.add("purge by age", "batch max", "ms", samples["age batch max ms"])
    listing = report.add("reference: list newest 50", "p50", "ms", samples["listing p50 ms"])
    report.note(
        f"{args.jobs:,} finished jobs in a MemoryStore, one in a thousand ended 8 days ago;"
        f" purged {args.batch} a call (the retention sweep's batch), by count (keep all but"
        f" {100 * args.batch:,}) then by age (older than 7 days), until a call comes back short"
    )
    report.note(
        f"a purge batch costs the event loop {count / listing:.2f}x (by count) and"
        f" {age / listing:.2f}x (by age) a listing of the newest 50"
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
