"""Store listing: the newest 50 jobs with a state filter, at 1M retained jobs in a SQLite file.

The file is built once per run by ``store_fill`` (the store's own write ops and ``apply_batch``,
20,000 jobs per transaction): N finished echo jobs of 100 owners, each with its three events
(queued, running, then succeeded 90% / failed 7% / cancelled 3%). The memory store gets the same
puts and transitions at the same time and is the reference; a raw ``sqlite3`` SELECT of the same
SQL on the same file (no worker thread, no decode) shows what the store adds to the query itself.
Each round times Q calls of ``list_jobs(JobQuery(..., limit=50))`` per query shape, one at a time,
and keeps their p50 and p99.

    .venv/bin/python -m benchmarks.store_listing [--jobs 1000000] [--queries 500] [--rounds 5]
        [--backend trio] [--uvloop]
"""

from __future__ import annotations

import gc
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import harness, store_fill
from jobwarden import JobQuery, JobState, JobStore, MemoryStore
from jobwarden.store.sqlite import SqliteStore, listing_sql

DESCRIPTION = "p50/p99 of listing the newest 50 jobs by state at 1M retained jobs (SQLite)."
LIMIT = 50
TARGET_MS = 10.0
# The target's query: a state filter alone (both a common and a rarer state).
TARGET_ROWS = ("state=succeeded", "state=failed")


def shapes(deep: Sequence[str], count: int) -> dict[str, list[JobQuery]]:
    """``count`` queries per shape; cursors and owners drawn with a fixed seed (same for all).

    ``deep`` holds cursors deep in the list, in the store's own form (an id for the memory
    store, a seq for SQLite), the same jobs in the same order for every store.
    """
    rng = random.Random(7)
    return {
        "state=succeeded": [JobQuery(state=JobState.SUCCEEDED, limit=LIMIT)] * count,
        "state=failed": [JobQuery(state=JobState.FAILED, limit=LIMIT)] * count,
        "state=failed, deep cursor": [
            JobQuery(state=JobState.FAILED, cursor=rng.choice(deep), limit=LIMIT)
            for _ in range(count)
        ],
        "owner+state=failed": [
            JobQuery(owner=rng.choice(store_fill.OWNERS), state=JobState.FAILED, limit=LIMIT)
            for _ in range(count)
        ],
    }


def _percentiles(latencies: dict[str, list[float]]) -> harness.Figures:
    figures: harness.Figures = {}
    for shape, values in latencies.items():
        figures[f"{shape} p50"] = harness.percentile(values, 0.5)
        figures[f"{shape} p99"] = harness.percentile(values, 0.99)
    return figures


async def time_store(store: JobStore, rows: dict[str, list[JobQuery]]) -> harness.Figures:
    """Milliseconds per ``list_jobs`` call, one call at a time; every page must be full."""
    latencies: dict[str, list[float]] = {}
    for shape, queries in rows.items():
        values = latencies[shape] = []
        for query in queries:
            began = time.perf_counter()
            page = await store.list_jobs(query)
            values.append((time.perf_counter() - began) * 1000)
            if len(page.jobs) != LIMIT:
                raise RuntimeError(f"{shape}: {len(page.jobs)} jobs listed for {query}")
    return _percentiles(latencies)


async def time_sqlite(path: Path, rows: dict[str, list[JobQuery]]) -> harness.Figures:
    """``time_store`` on a ``SqliteStore`` opened on the file for this round."""
    store = SqliteStore(path)
    await store.open()
    try:
        return await time_store(store, rows)
    finally:
        await store.close()


def time_raw(path: Path, rows: dict[str, list[JobQuery]]) -> harness.Figures:
    """The same SELECTs on a plain read-only connection in this thread, rows left undecoded."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    latencies: dict[str, list[float]] = {}
    try:
        for shape, queries in rows.items():
            values = latencies[shape] = []
            for query in queries:
                sql, params = listing_sql(query, query.limit + 1)
                began = time.perf_counter()
                found = db.execute(sql, params).fetchall()
                values.append((time.perf_counter() - began) * 1000)
                if len(found) != LIMIT + 1:
                    raise RuntimeError(f"{shape}: {len(found)} rows selected for {query}")
    finally:
        db.close()
    return _percentiles(latencies)


async def check_same(
    path: Path,
    memory: MemoryStore,
    ours: dict[str, list[JobQuery]],
    theirs: dict[str, list[JobQuery]],
    sample: int,
) -> None:
    """The first ``sample`` queries of each shape list the same jobs from both stores, matching
    (each store given its own form of the same cursors)."""
    store = SqliteStore(path)
    await store.open()
    try:
        for shape, queries in ours.items():
            for query, same in zip(queries[:sample], theirs[shape][:sample], strict=True):
                page = (await store.list_jobs(query)).jobs
                if page != (await memory.list_jobs(same)).jobs:
                    raise RuntimeError(f"{shape}: the stores list different jobs for {same}")
                for job in page:
                    wrong_owner = query.owner is not None and job.owner != query.owner
                    too_new = same.cursor is not None and job.id >= same.cursor
                    if job.state is not query.state or wrong_owner or too_new:
                        raise RuntimeError(f"{shape}: {job.id} does not match {same}")
    finally:
        await store.close()


def _plans(path: Path, rows: dict[str, list[JobQuery]]) -> list[str]:
    db = sqlite3.connect(path)
    try:
        plans = []
        for shape, queries in rows.items():
            sql, params = listing_sql(queries[0], LIMIT + 1)
            steps = db.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            plans.append(f"{shape}: {'; '.join(step[-1] for step in steps)}")
        return plans
    finally:
        db.close()


def _deep_cursors(path: Path, jobs: int) -> tuple[list[str], list[str]]:
    """Jobs far from the newest (between the oldest 5% and the oldest 20%) as cursors: their
    seqs (the SQLite store's cursors) and their ids (the memory store's)."""
    db = sqlite3.connect(path)
    try:
        found = db.execute(
            "SELECT seq, id FROM jobs ORDER BY seq LIMIT ? OFFSET ?",
            (jobs // 5 - jobs // 20, jobs // 20),
        ).fetchall()
    finally:
        db.close()
    return [str(seq) for seq, _ in found], [job_id for _, job_id in found]


def main(argv: Sequence[str] | None = None) -> None:
    """Build the file, measure, print the table and the verdicts."""
    p = harness.parser(DESCRIPTION)
    p.add_argument("--jobs", type=int, default=1_000_000, help="retained jobs (1000000)")
    p.add_argument("--queries", type=int, default=500, help="calls per query shape per round (500)")
    args = harness.parse(p, argv)
    if args.jobs < 200_000 or args.queries < 1:
        # Below that, some owner may have fewer than 50 failed jobs: every page must be full.
        p.error("need --jobs >= 200000 and --queries >= 1")
    jobs: int = args.jobs
    count: int = args.queries
    backend: str = args.backend
    uvloop: bool = args.uvloop

    with tempfile.TemporaryDirectory(prefix="jobwarden-bench-") as folder:
        path = Path(folder) / "jobs.db"
        memory = MemoryStore()
        if not args.json:
            print(f"  building {jobs:,} jobs in {path} and the memory store", file=sys.stderr)
        began = time.perf_counter()
        harness.run(store_fill.create, path, backend=backend, uvloop=uvloop)
        history = store_fill.finished_jobs(jobs)
        harness.run(store_fill.write, path, history, memory, backend=backend, uvloop=uvloop)
        built = time.perf_counter() - began
        # The million records the memory store holds are never garbage: keep the cyclic
        # collector from scanning them during every candidate's timing (SQLite's included).
        gc.collect()
        gc.freeze()
        seqs, job_ids = _deep_cursors(path, jobs)
        rows, memory_rows = shapes(seqs, count), shapes(job_ids, count)
        harness.run(check_same, path, memory, rows, memory_rows, 20, backend=backend, uvloop=uvloop)
        megabytes = path.stat().st_size / 1e6
        plans = _plans(path, rows)

        candidates: dict[str, Callable[[], harness.Figures]] = {
            "sqlite store": lambda: harness.run(
                time_sqlite, path, rows, backend=backend, uvloop=uvloop
            ),
            "memory store": lambda: harness.run(
                time_store, memory, memory_rows, backend=backend, uvloop=uvloop
            ),
            "raw sqlite3": lambda: time_raw(path, rows),
        }
        small = {shape: queries[:20] for shape, queries in rows.items()}
        memory_small = {shape: queries[:20] for shape, queries in memory_rows.items()}
        warmup = {
            "sqlite store": lambda: harness.run(
                time_sqlite, path, small, backend=backend, uvloop=uvloop
            ),
            "memory store": lambda: harness.run(
                time_store, memory, memory_small, backend=backend, uvloop=uvloop
            ),
            "raw sqlite3": lambda: time_raw(path, small),
        }
        samples = harness.interleave(candidates, args.rounds, quiet=args.json, warmup=warmup)

    loop = "uvloop" if uvloop else backend
    report = harness.Report(
        "store_listing",
        {"jobs": jobs, "queries": count, "rounds": args.rounds, "backend": backend, "loop": loop},
    )
    med: dict[tuple[str, str], float] = {}
    for shape in rows:
        for name, figures in samples.items():
            for stat in ("p50", "p99"):
                key = f"{shape} {stat}"
                med[name, key] = report.add(name, key, "ms", figures[key])
    report.note(
        f"the file: {jobs:,} finished jobs and {3 * jobs:,} events, {megabytes:,.0f} MB, built"
        f" with the store's own write ops in {built:.0f} s (store_fill.py), together with the"
        " memory store holding the same records; the cyclic gc is frozen after the build"
    )
    report.note(
        f"each figure: the p50 / p99 of {count} calls per round, one at a time, median over"
        " rounds; deep cursor: a random job between the oldest 5% and 20% (its seq for SQLite,"
        " its id for the memory store);"
        " owner: one of 100, at random"
    )
    for plan in plans:
        report.note(f"query plan, {plan}")
    report.note(
        "sqlite store = one worker-thread hop + SELECT + decoding 51 records; raw sqlite3 = the"
        " same SELECT in the calling thread, undecoded; two shared cores, load from other work"
        " varied during the run"
    )
    for shape in rows:
        ours, theirs = med["sqlite store", f"{shape} p99"], med["memory store", f"{shape} p99"]
        report.note(
            f"{shape}: sqlite store p99 {harness.fmt(ours)} ms = {ours / theirs:.2f}x the memory"
            f" store's ({harness.fmt(theirs)} ms); raw SELECT p99"
            f" {harness.fmt(med['raw sqlite3', f'{shape} p99'])} ms"
        )
    for shape in TARGET_ROWS:
        p50, p99 = med["sqlite store", f"{shape} p50"], med["sqlite store", f"{shape} p99"]
        report.check(
            f"listing newest {LIMIT}, {shape}, {jobs:,} jobs",
            f"sqlite store p50 {harness.fmt(p50)} ms, p99 {harness.fmt(p99)} ms",
            p99,
            "<=",
            TARGET_MS,
            " ms",
        )
    harness.emit(report, as_json=args.json)


if __name__ == "__main__":
    main()
