"""The seed-compatible ``/v1/analyze-execution`` routes, mapped onto ordinary jobs."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo
from jobwarden.ids import JOB_ID
from jobwarden.plugins.schema import BASE64_STRING
from jobwarden.records import JobRecord
from jobwarden.store.base import MAX_PAGE, JobQuery, unknown_cursor
from jobwarden.transport.auth import CANCEL, READ, SUBMIT, Principal
from jobwarden.transport.context import (
    SETTINGS,
    SUPERVISOR,
    authorize,
    finished_within,
    int_param,
    log_job,
    read_body,
    visible_job,
)
from jobwarden.transport.responses import ApiError, json_response

routes = web.RouteTableDef()

SEED_STATUS = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "done",
    JobState.FAILED: "error",
    JobState.TIMED_OUT: "error",
    JobState.CANCELLED: "cancelled",
}
STATES_FOR_STATUS: dict[str, list[JobState]] = {}
for _state, _status in SEED_STATUS.items():
    STATES_FOR_STATUS.setdefault(_status, []).append(_state)


class AnalyzeBody(msgspec.Struct, forbid_unknown_fields=True):
    """The seed's request: a plugin, a base64 image, its MIME type, and optionally a tool."""

    plugin: Annotated[str, msgspec.Meta(min_length=1)]
    # Checked by ``_submit``, whose refusal says "image must be base64"; the schema says the same.
    image: Annotated[str, msgspec.Meta(extra_json_schema=BASE64_STRING)]
    mime_type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    tool: str | None = None


class SyncResult(msgspec.Struct):
    """POST /v1/analyze-execution."""

    plugin: str
    job_id: str
    status: str
    result: Any
    error: ErrorInfo | None = None


class AsyncAccepted(msgspec.Struct):
    """POST /v1/analyze-execution/async."""

    job_id: str


class SeedJob(msgspec.Struct):
    """A job as the seed API showed it."""

    id: str
    plugin: str
    status: str
    created_at: datetime
    updated_at: datetime


class SeedJobBody(msgspec.Struct):
    """GET /v1/analyze-execution/jobs/{id}."""

    job: SeedJob


class SeedResult(msgspec.Struct):
    """GET /v1/analyze-execution/jobs/{id}/result."""

    job_id: str
    plugin: str
    status: str
    result: Any
    error: ErrorInfo | None
    created_at: datetime
    completed_at: datetime | None


class SeedList(msgspec.Struct):
    """GET /v1/analyze-execution/jobs: ``count`` jobs, newest first; ``next_cursor`` is the
    ``cursor`` that lists the older ones, None when there are none."""

    jobs: list[SeedJob]
    count: int
    next_cursor: str | None = None


class SeedCancelled(msgspec.Struct):
    """DELETE /v1/analyze-execution/jobs/{id}."""

    job_id: str
    status: str
    cancelled: bool


_decoder = msgspec.json.Decoder(AnalyzeBody)


@routes.post("/v1/analyze-execution")
async def analyze_sync(request: web.Request) -> web.Response:
    """Run the analysis and answer with its result (or its error) when it ends."""
    record = await _submit(request)
    record = await finished_within(request, record, request.app[SETTINGS].max_wait_s)
    body = SyncResult(
        plugin=record.plugin,
        job_id=record.id,
        status=SEED_STATUS[record.state],
        result=record.result,
        error=record.error,
    )
    return json_response(body, 200 if record.state.terminal else 202)


@routes.post("/v1/analyze-execution/async")
async def analyze_async(request: web.Request) -> web.Response:
    """Queue the analysis and answer with its job id."""
    record = await _submit(request)
    return json_response(AsyncAccepted(job_id=record.id), 202)


@routes.get("/v1/analyze-execution/jobs")
async def list_seed_jobs(request: web.Request) -> web.Response:
    """Jobs, newest first, filtered by ``plugin`` and seed ``status``: ``limit`` of them (at most
    and by default ``MAX_PAGE``), after ``cursor``, with a ``next_cursor`` when more match."""
    principal = authorize(request, READ)
    status = request.query.get("status")
    if status is not None and status not in STATES_FOR_STATUS:
        raise ApiError(400, "invalid_request", f"status must be one of {sorted(STATES_FOR_STATUS)}")
    # The seed's list had no limit: the largest page by default keeps its callers' answers whole
    # up to it, and next_cursor says when they are not.
    limit = int_param(request, "limit", 1, MAX_PAGE) or MAX_PAGE
    cursor = request.query.get("cursor") or None
    # Only a job id: the cursor this route gives out, and one every store takes whichever state
    # it lists, so one cursor serves both listings "error" merges.
    if cursor is not None and not JOB_ID.fullmatch(cursor):
        raise unknown_cursor(cursor)
    states: list[JobState | None] = list(STATES_FOR_STATUS[status]) if status else [None]
    records: list[JobRecord] = []
    more = False
    for state in states:
        page = await request.app[SUPERVISOR].list_jobs(
            JobQuery(
                state=state,
                plugin=request.query.get("plugin") or None,
                owner=principal.owner_filter,
                limit=limit,
                cursor=cursor,
            )
        )
        records.extend(page.jobs)
        more = more or page.next_cursor is not None
    # Merged newest first by id, the order the stores list in (ids sort by creation time).
    records.sort(key=lambda r: r.id, reverse=True)
    more = more or len(records) > limit
    del records[limit:]
    body = SeedList(
        jobs=[_seed_job(r) for r in records],
        count=len(records),
        next_cursor=records[-1].id if more else None,
    )
    return json_response(body)


@routes.get("/v1/analyze-execution/jobs/{id}")
async def seed_status(request: web.Request) -> web.Response:
    """A job's seed status."""
    record = await visible_job(request, READ)
    return json_response(SeedJobBody(job=_seed_job(record)))


@routes.get("/v1/analyze-execution/jobs/{id}/result")
async def seed_result(request: web.Request) -> web.Response:
    """A job's result so far: null until it is done."""
    record = await visible_job(request, READ)
    body = SeedResult(
        job_id=record.id,
        plugin=record.plugin,
        status=SEED_STATUS[record.state],
        result=record.result,
        error=record.error,
        created_at=record.created_at,
        completed_at=record.finished_at,
    )
    return json_response(body)


@routes.delete("/v1/analyze-execution/jobs/{id}")
async def seed_cancel(request: web.Request) -> web.Response:
    """Cancel a queued or running job; 409 job_finished if it already ended."""
    principal = authorize(request, CANCEL)
    record = await request.app[SUPERVISOR].cancel(
        request.match_info["id"], owner=principal.owner_filter
    )
    log_job(record)
    return json_response(SeedCancelled(job_id=record.id, status="cancelled", cancelled=True))


async def _submit(request: web.Request) -> JobRecord:
    principal: Principal = authorize(request, SUBMIT)
    body = await read_body(request, _decoder, request.app[SETTINGS])
    try:
        base64.b64decode(body.image, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_request", "image must be base64", plugin=body.plugin) from exc
    sup = request.app[SUPERVISOR]
    plugin = sup.registry.plugin(body.plugin)
    if body.tool is not None:
        tool = f"{body.plugin}.{body.tool}"
    elif plugin.tools:
        tool = next(iter(plugin.tools.values())).name
    else:
        raise ApiError(400, "invalid_request", f"plugin {body.plugin!r} has no tools")
    record = await sup.submit(
        tool, {"image_bytes": body.image, "mime_type": body.mime_type}, owner=principal.name
    )
    return log_job(record)


def _seed_job(record: JobRecord) -> SeedJob:
    return SeedJob(
        id=record.id,
        plugin=record.plugin,
        status=SEED_STATUS[record.state],
        created_at=record.created_at,
        updated_at=_updated_at(record),
    )


def _updated_at(record: JobRecord) -> datetime:
    """When the job last changed state, as near as its record tells.

    A job queued again for another attempt has no ``started_at`` any more: ``created_at`` there
    would move ``updated_at`` back past the start its running status showed, and a poller
    comparing timestamps would miss the change. The moment it was queued again is the earlier
    of ``retry_at`` (that moment plus the backoff; without one, as after a crash, the moment
    itself) and its ``error``'s timestamp (why the last attempt ended, made as it was queued).
    """
    if record.finished_at is not None:
        return record.finished_at
    if record.started_at is not None:
        return record.started_at
    error = record.error
    stamps = [t for t in (record.retry_at, error.timestamp if error else None) if t is not None]
    return max(min(stamps), record.created_at) if stamps else record.created_at
