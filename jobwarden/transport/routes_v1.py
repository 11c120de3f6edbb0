"""The v1 HTTP routes: health, tools, plugins, jobs and metrics."""

from __future__ import annotations

import math
import time

from aiohttp import web

from jobwarden import __version__
from jobwarden.actors.states import JobState
from jobwarden.errors import JobNotFinished
from jobwarden.logs import bind_request_job
from jobwarden.plugins.manifest import manifest
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Tool
from jobwarden.store.base import MAX_PAGE, JobQuery
from jobwarden.transport.auth import CANCEL, READ, SUBMIT
from jobwarden.transport.context import (
    SETTINGS,
    STARTED,
    SUPERVISOR,
    ServerSettings,
    authorize,
    int_param,
    log_job,
    now,
    read_body,
    visible_job,
)
from jobwarden.transport.responses import ApiError, json_response
from jobwarden.transport.wire import (
    Health,
    JobBody,
    JobsPage,
    PluginHealth,
    PluginsBody,
    ResultBody,
    ToolBody,
    ToolsBody,
    submit_decoder,
)

routes = web.RouteTableDef()


@routes.get("/v1/health")
async def health(request: web.Request) -> web.Response:
    """Liveness; needs no key. A cluster node also says its name."""
    uptime = round(now() - request.app[STARTED], 3)
    shared = request.app[SUPERVISOR].shared
    node = shared.node if shared is not None else None
    return json_response(Health(status="ok", version=__version__, uptime_s=uptime, node=node))


@routes.get("/v1/tools")
async def list_tools(request: web.Request) -> web.Response:
    """Every tool that may take jobs, with its schemas (not a failed plugin's: see /v1/plugins)."""
    authorize(request, READ)
    tools = request.app[SUPERVISOR].registry.available_tools()
    return json_response(ToolsBody(tools=[_tool_body(t) for t in tools]))


@routes.get("/v1/tools/{name}")
async def get_tool(request: web.Request) -> web.Response:
    """One tool, or 404 tool_not_found (also for a failed plugin's, with the reason)."""
    authorize(request, READ)
    return json_response(
        _tool_body(request.app[SUPERVISOR].registry.available_tool(request.match_info["name"]))
    )


@routes.get("/v1/plugins")
async def list_plugins(request: web.Request) -> web.Response:
    """Every plugin's lifecycle state and metrics."""
    authorize(request, READ)
    registry = request.app[SUPERVISOR].registry
    return json_response(
        PluginsBody(plugins=[_plugin_health(registry, name) for name in registry.plugin_names()])
    )


@routes.get("/v1/plugins/{name}/health")
async def plugin_health(request: web.Request) -> web.Response:
    """One plugin's lifecycle state and metrics, or 404 not_found."""
    authorize(request, READ)
    return json_response(
        _plugin_health(request.app[SUPERVISOR].registry, request.match_info["name"])
    )


@routes.get("/v1/plugins/{name}/manifest")
async def plugin_manifest(request: web.Request) -> web.Response:
    """One plugin's manifest; 404 not_found for an unknown plugin or one that failed to load."""
    authorize(request, READ)
    registry = request.app[SUPERVISOR].registry
    return json_response(manifest(registry.plugin(request.match_info["name"])))


@routes.post("/v1/jobs")
async def submit_job(request: web.Request) -> web.Response:
    """Queue a job: 202 with it, or 200 when it finished within ``?wait=`` seconds."""
    principal = authorize(request, SUBMIT)
    app = request.app  # a property lookup through the match info: once, on this hot route
    settings = app[SETTINGS]
    wait = _wait_seconds(request, settings)
    body = await read_body(request, submit_decoder, settings)
    sup = app[SUPERVISOR]
    record = await sup.submit(
        body.tool,
        body.input,
        timeout_s=body.timeout_s,
        idempotency_key=body.idempotency_key,
        owner=principal.name,
    )
    bind_request_job(record)
    if wait and not record.state.terminal:
        # ``finished_within``, inlined: one coroutine less on the path ?wait= benchmarks.
        try:
            record = await sup.wait(record.id, timeout=wait)
        except TimeoutError:
            record = await sup.get(record.id)
        except JobNotFinished:  # the supervisor stopped first: the job waits for the next start
            pass
    return json_response(JobBody(job=record), 200 if record.state.terminal else 202)


@routes.get("/v1/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """The caller's jobs, newest first, filtered, paginated with ``cursor``."""
    principal = authorize(request, READ)
    query = request.query
    state = query.get("state")
    if state is not None and state not in JobState.__members__.values():
        raise ApiError(400, "invalid_request", f"unknown state {state!r}")
    page = await request.app[SUPERVISOR].list_jobs(
        JobQuery(
            state=JobState(state) if state else None,
            tool=query.get("tool") or None,
            owner=principal.owner_filter,
            limit=int_param(request, "limit", 1, MAX_PAGE) or 50,
            cursor=query.get("cursor") or None,
        )
    )
    return json_response(JobsPage(jobs=page.jobs, next_cursor=page.next_cursor))


@routes.get("/v1/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    """One job, or 404 (also for another principal's job)."""
    return json_response(JobBody(job=await visible_job(request, READ)))


@routes.get("/v1/jobs/{id}/result")
async def get_result(request: web.Request) -> web.Response:
    """A terminal job's result or error; 409 job_not_finished before that."""
    record = await visible_job(request, READ)
    if not record.state.terminal:
        raise ApiError(
            409, "job_not_finished", f"job is {record.state}", job_id=record.id, tool=record.tool
        )
    return json_response(
        ResultBody(job_id=record.id, state=record.state, result=record.result, error=record.error)
    )


@routes.post("/v1/jobs/{id}/cancel")
@routes.delete("/v1/jobs/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a queued or running job; 409 job_finished if it already ended."""
    principal = authorize(request, CANCEL)
    record = await request.app[SUPERVISOR].cancel(
        request.match_info["id"], owner=principal.owner_filter
    )
    log_job(record)
    return json_response(JobBody(job=record))


@routes.get("/v1/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Per-tool metrics and the supervisor's load, as JSON."""
    authorize(request, READ)
    sup = request.app[SUPERVISOR]
    tools = [sup.registry.metrics(t.name) for t in sup.registry.tools()]
    return json_response({"tools": tools, "supervisor": sup.statistics()})


def _wait_seconds(request: web.Request, settings: ServerSettings) -> float:
    raw = request.query.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    limit = settings.max_wait_s
    if not 0 <= wait <= limit:
        raise ApiError(400, "invalid_request", f"wait must be a number of seconds in [0, {limit}]")
    return wait


def _tool_body(tool: Tool) -> ToolBody:
    return ToolBody(
        name=tool.name,
        plugin=tool.plugin,
        description=tool.description,
        mode=tool.mode,
        timeout_s=tool.timeout_s,
        max_concurrency=tool.max_concurrency,
        input_schema=tool.input_schema(),
        output_schema=tool.output_schema(),
    )


def _plugin_health(registry: PluginRegistry, name: str) -> PluginHealth:
    status = registry.status(name)
    snapshots = [registry.metrics(tool) for tool in status.tools]
    calls = sum(m.calls for m in snapshots)
    used = [m for m in snapshots if m.last_used is not None]
    latest = max(used, key=lambda m: m.last_used) if used else None  # type: ignore[arg-type,return-value]
    total_ms = sum((m.mean_ms or 0.0) * m.calls for m in snapshots)
    return PluginHealth(
        name=name,
        version=status.version,
        description=status.description,
        state=status.state,
        reason=status.reason,
        uptime_s=round(time.time() - status.loaded_at.timestamp(), 3),
        tools=list(status.tools),
        success_count=sum(m.successes for m in snapshots),
        error_count=sum(m.errors for m in snapshots),
        timeout_count=sum(m.timeouts for m in snapshots),
        cancel_count=sum(m.cancellations for m in snapshots),
        in_flight=sum(m.in_flight for m in snapshots),
        last_used=latest.last_used if latest else None,
        last_ms=latest.last_ms if latest else None,
        avg_ms=round(total_ms / calls, 3) if calls else None,
        p95_ms=registry.p95_ms(name),
        circuits=registry.circuits(name),
        abandoned_threads=sum(m.abandoned_threads for m in snapshots),
    )
