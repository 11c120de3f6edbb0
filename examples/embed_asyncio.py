"""Embed a jobwarden Supervisor in a plain asyncio program.

Run it: ``python examples/embed_asyncio.py``. It defines a plugin, submits a job and follows its
progress events, waits for it, runs one call end to end, cancels a slow job, and shows how each
kind of failure reaches the caller. It exits 0 when done.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import msgspec
import structlog

from jobwarden import JobEvent, JobState, Plugin, Supervisor, ToolContext, errors

report = Plugin("report", version="1.0.0", description="Builds reports, slowly.")


class BuildIn(msgspec.Struct):
    """What to build: the input is validated against this at submit time."""

    title: str
    pages: int = 3


class BuildOut(msgspec.Struct):
    """The return type is checked too: a tool returning anything else fails invalid_output."""

    title: str
    pages: int


@report.tool(timeout=5.0)
async def build(inp: BuildIn, ctx: ToolContext) -> BuildOut:
    """One progress event per page, so a subscriber can draw a progress bar."""
    for page in range(1, inp.pages + 1):
        # A real tool does I/O here; sleep(0) keeps the example fast but still yields, so a cancel
        # lands at this checkpoint.
        await asyncio.sleep(0)
        await ctx.progress(page / inp.pages, f"page {page} of {inp.pages}")
    if inp.title == "boom":
        raise ValueError("cannot build a report called boom")
    return BuildOut(title=inp.title, pages=inp.pages)


@report.tool(timeout=60.0)
async def slow(inp: BuildIn, ctx: ToolContext) -> BuildOut:
    """Takes a minute unless cancelled: the cancel example below stops it early."""
    await asyncio.sleep(60)
    return BuildOut(title=inp.title, pages=inp.pages)


async def follow_progress(sup: Supervisor) -> None:
    """Submit, then follow the job's events: replayed from its start, then live, until it ends."""
    record = await sup.submit("report.build", {"title": "quarterly", "pages": 4})
    async with sup.subscribe(job_id=record.id) as events:
        async for event in events:
            # A StreamReset would say the history asked for was purged: not from offset 0 here.
            if isinstance(event, JobEvent):
                print(f"event {event.id} {event.type} progress={event.data.progress}")
    done = await sup.wait(record.id, timeout=10)
    print("waited:", done.state, done.result)


async def run_and_fail(sup: Supervisor) -> None:
    """``run`` is submit + wait: it returns the result, or raises JobFailed with the envelope."""
    print("run:", await sup.run("report.build", {"title": "annual"}, timeout=10))
    try:
        await sup.run("report.build", {"title": "boom"}, timeout=10)
    except errors.JobFailed as exc:
        error = exc.record.error  # the envelope's body: type, message, details, plugin, tool...
        print("failed:", error.type if error else None, error.details if error else None)


async def refused_at_submit(sup: Supervisor) -> None:
    """Bad input and unknown tools are refused before any job exists."""
    try:
        await sup.submit("report.build", {"title": 42})
    except errors.InvalidInput as exc:
        print("invalid_input:", exc.message)
    try:
        await sup.submit("report.missing", {})
    except errors.ToolNotFound as exc:
        print("tool_not_found:", exc.message)


async def cancel_slow(sup: Supervisor) -> None:
    """Cancel a running job: the tool is interrupted at its next await."""
    record = await sup.submit("report.slow", {"title": "never"})
    async with sup.subscribe(job_id=record.id) as events:
        async for event in events:
            if event.type == "jobwarden.job.running":
                await sup.cancel(record.id)
    done = await sup.get(record.id)
    assert done.state is JobState.CANCELLED
    print("cancelled:", done.error.message if done.error else None)


async def main() -> None:
    # The default store is in memory; pass store=SqliteStore("jobs.db") to keep jobs on disk.
    async with Supervisor(plugins=[report], concurrency=4) as sup:
        await follow_progress(sup)
        await run_and_fail(sup)
        await refused_at_submit(sup)
        await cancel_slow(sup)
        metrics = sup.registry.metrics("report.build")
        print("metrics:", metrics.calls, "calls,", metrics.errors, "error")


if __name__ == "__main__":
    # jobwarden logs through structlog (a failing tool logs a warning with its traceback): send it
    # where the host program's logs go. Here: warnings and worse, to stderr.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    asyncio.run(main())
