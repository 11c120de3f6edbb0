"""How long a queued attempt may still wait to start: its tool's queue timeout and total timeout.

Both count on the wall clock from stamps in the record (the submit, a retry's ``retry_at``), the
one clock shared by every node of a cluster and by a server before and after a restart, so time
spent waiting in a shared queue or across a restart counts. Pure functions of the tool and the
record: a job actor asks them about its own job, a cluster node about a job no node holds yet.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from jobwarden.plugins.tool import Tool
from jobwarden.records import JobRecord


def total_left(tool: Tool, record: JobRecord, now: datetime) -> float | None:
    """Seconds left of the tool's total timeout (None: it has none)."""
    total = tool.total_timeout_s
    if total is None:
        return None
    return total - (now - record.created_at).total_seconds()


def queue_left(record: JobRecord, wait: float, now: datetime) -> float:
    """Seconds left of ``wait`` (the tool's queue timeout) for the current attempt to start.

    The window opened when the attempt was queued: at submit for the first, at ``retry_at`` for
    a retry.
    """
    opened = record.created_at if record.attempt == 1 else record.retry_at
    if opened is None:
        return wait  # a retry stored before records noted retry_at: its window opens now
    return wait - (now - opened).total_seconds()


def start_left(tool: Tool, record: JobRecord, now: datetime) -> float:
    """Seconds left for the current attempt to start: of the queue timeout or of the total
    timeout, whichever ends first (``inf``: the tool has neither)."""
    wait = tool.queue_timeout_s
    queue = math.inf if wait is None else queue_left(record, wait, now)
    total = total_left(tool, record, now)
    return queue if total is None else min(queue, total)


def start_deadline(tool: Tool, record: JobRecord, now: datetime) -> datetime | None:
    """The wall-clock moment the current attempt runs out of time to start (None: never)."""
    left = start_left(tool, record, now)
    return None if left == math.inf else now + timedelta(seconds=left)


def unstarted_message(tool: Tool, record: JobRecord, now: datetime) -> str:
    """Why the job, still queued, ran out of time: the limit of the two that ends first."""
    total = total_left(tool, record, now)
    wait = tool.queue_timeout_s
    # Both counted from wall-clock stamps at the same ``now``: whichever has less left is the one
    # whose deadline the alarm was set by, however the clocks drifted since.
    if total is not None and (wait is None or total < queue_left(record, wait, now)):
        return total_message(tool)
    return f"{tool.name} waited more than {tool.queue_timeout_s:g}s to start"


def total_message(tool: Tool) -> str:
    """Why a job ran out of its total timeout."""
    return f"{tool.name} did not finish within its total timeout of {tool.total_timeout_s:g}s"
