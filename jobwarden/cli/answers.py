"""The shapes of the server's answers that the client commands read.

Only the members a command uses are named (msgspec ignores the others), so a newer server's
additions pass; an answer without them is not jobwarden's, whatever its status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from jobwarden.actors.states import JobState


class ErrorShape(msgspec.Struct):
    """An error envelope's ``error``, as far as a summary line reads it."""

    type: str
    message: str


class JobShape(msgspec.Struct):
    """A job, as far as ``submit`` and ``cancel`` read it."""

    id: str
    state: JobState
    result: Any
    error: ErrorShape | None


class ListedJob(JobShape):
    """A job, as far as the jobs table reads it."""

    tool: str
    created_at: datetime
    progress: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobAnswer(msgspec.Struct):
    """POST /v1/jobs, POST /v1/jobs/{id}/cancel: ``{"job"}``."""

    job: JobShape


class JobsPage(msgspec.Struct):
    """GET /v1/jobs: ``{"jobs", "next_cursor"}``."""

    jobs: list[ListedJob]
    next_cursor: str | None = None
