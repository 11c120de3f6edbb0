"""Embed a jobwarden Supervisor in a trio program: the core runs on anyio, so the same API works.

Run it: ``python examples/embed_trio.py`` (trio is in the ``dev`` extra). It exits 0 when done.
"""

from __future__ import annotations

import logging
import sys

import structlog
import trio

from jobwarden import Supervisor, builtin, errors


async def main() -> None:
    # The builtin plugin ships echo, sleep, fail and sha256: enough to show the lifecycle.
    async with Supervisor(plugins=[builtin]) as sup:
        print("echo:", await sup.run("builtin.echo", {"text": "from trio"}, timeout=10))
        record = await sup.submit("builtin.sleep", {"seconds": 2, "steps": 4})
        async with sup.subscribe(job_id=record.id) as events:
            async for event in events:
                print("event", event.id, event.type)
                if event.type == "jobwarden.job.progress":
                    # The first progress report is enough: stop the job instead of waiting.
                    await sup.cancel(record.id)
        try:
            await sup.run("builtin.fail", {"message": "on purpose"}, timeout=10)
        except errors.JobFailed as exc:
            print("failed:", exc.error.type if exc.error else None)


if __name__ == "__main__":
    # jobwarden logs through structlog (a failing tool logs a warning with its traceback): send it
    # where the host program's logs go. Here: warnings and worse, to stderr.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    trio.run(main)
