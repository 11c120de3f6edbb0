"""Memory store at scale: how long retention batches and filtered listings stop the event loop
at a million retained jobs.

The memory store (the library's default) runs on the event loop, so each call stops everything
else for as long as it takes. A store is filled with N finished jobs (one in a thousand failed,
and ended eight days ago). Listings of 50: of failed jobs, and of queued jobs (there are none),
each once to build the store's list for the filter, then ``LISTINGS`` times. Then it is purged
the way the retention sweep does, ``--batch`` jobs a call: by count (``keep_finished`` = N - 100
* batch) and by age (the old ones), until a call comes back short; each call is timed.
Reference, on the same store: listing the newest 50 jobs with no filter.

    .venv/bin/python -m benchmarks.memory_scale [--jobs 1000000] [--batch 50] [--rounds 3]
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

DESCRIPTION = "Memory store at N retained jobs: purge batches and filtered listings, timed."
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
            state=JobState.FAILED if index % 1000 == 0 else JobState.SUCCEEDED,
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
    listing = await _list(store, JobQuery(limit=50))
    began = time.perf_counter()
    await store.list_jobs(JobQuery(state=JobState.FAILED, limit=50))
    first = time.perf_counter() - began
    failed = await _list(store, JobQuery(state=JobState.FAILED, limit=50))
    queued = await _list(store, JobQuery(state=JobState.QUEUED, limit=50))
    by_count = await _drain(store, batch, keep_finished=jobs - 100 * batch, finished_before=None)
    by_age = await _drain(store, batch, keep_finished=None, finished_before=now - timedelta(days=7))
    return {
        "count batch p50 ms": harness.percentile(by_count, 0.5) * 1e3,
        "count batch max ms": max(by_count) * 1e3,
        "age batch p50 ms": harness.percentile(by_age, 0.5) * 1e3,
        "age batch max ms": max(by_age) * 1e3,
        "listing p50 ms": harness.percentile(listing, 0.5) * 1e3,
        "first filtered listing ms": first * 1e3,
        "failed listing p50 ms": harness.percentile(failed, 0.5) * 1e3,
        "queued listing p50 ms": harness.percentile(queued, 0.5) * 1e3,
    }


async def _list(store: MemoryStore, query: JobQuery) -> list[float]:
    """``LISTINGS`` listings of ``query``, each one's seconds."""
    took: list[float] = []
    for _ in range(LISTINGS):
        began = time.perf_counter()
        await store.list_jobs(query)
        took.append(time.perf_counter() - began)
    return took


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
        "memory_scale", {"jobs": args.jobs, "batch": args.batch, "rounds": args.rounds}
    )
    count = report.add("purge by count", "batch p50", "ms", samples["count batch p50 ms"])
    report.add("purge by count", "batch max", "ms", samples["count batch max ms"])
    age = report.add("purge by age", "batch p50", "ms", samples["age batch p50 ms"])
    report.add("purge by age", "batch max", "ms", samples["age batch max ms"])
    failing = "list failed (1 in 1000)"
    report.add(failing, "first, builds", "ms", samples["first filtered listing ms"])
    failed = report.add(failing, "p50", "ms", samples["failed listing p50 ms"])
    queued = report.add("list queued (none)", "p50", "ms", samples["queued listing p50 ms"])
    listing = report.add("reference: list newest 50", "p50", "ms", samples["listing p50 ms"])
    report.note(
        f"{args.jobs:,} finished jobs in a MemoryStore, one in a thousand failed and ended 8 days"
        " ago; listings of 50 (the first one by state builds the store's lists by state);"
        f" purged {args.batch} a call (the retention sweep's batch), by count (keep all but"
        f" {100 * args.batch:,}) then by age (older than 7 days), until a call comes back short"
    )
    report.note(
        f"against a listing of the newest 50: a purge batch {count / listing:.2f}x (by count) and"
        f" {age / listing:.2f}x (by age), a listing of failed jobs {failed / listing:.2f}x, of"
        f" queued ones {queued / listing:.2f}x"
    )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
