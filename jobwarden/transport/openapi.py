"""OpenAPI 3.1 for every route, with schemas generated from the msgspec types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from aiohttp import web

from jobwarden import __version__
from jobwarden.actors.supervisor import SupervisorStatistics
from jobwarden.errors import ErrorEnvelope
from jobwarden.plugins.manifest import PluginManifest
from jobwarden.plugins.metrics import ToolMetrics
from jobwarden.store.base import MAX_PAGE
from jobwarden.transport import seed_routes as seed
from jobwarden.transport import wire
from jobwarden.transport.context import SETTINGS, SUPERVISOR
from jobwarden.transport.dashboard import ASSETS, INDEX
from jobwarden.transport.openapi_bodies import one_per_seed_tool, one_per_tool


class MetricsBody(msgspec.Struct):
    """GET /v1/metrics."""

    tools: list[ToolMetrics]
    supervisor: SupervisorStatistics


class Op(msgspec.Struct, frozen=True):
    """One operation: where it lives and what it takes and answers."""

    method: str
    path: str
    summary: str
    responses: dict[int, Any]
    body: Any = None
    # (name, JSON type or a whole JSON Schema, description)
    query: tuple[tuple[str, str | dict[str, Any], str], ...] = ()
    auth: bool = True
    stream: bool = False
    media: tuple[str, ...] = ()  # media types of a 200 that is not JSON
    path_schemas: dict[str, dict[str, Any]] = {}  # a path parameter's schema, if not any string
    description: str = ""  # what the summary cannot say (an event stream's protocol)


_JOB_ID = "{id}"
# OpenAPI cannot describe a websocket's frames: the event streams say them in words.
_STREAM = (
    "A websocket, or SSE when the request accepts text/event-stream (`Last-Event-ID` resumes). "
    'Websocket client frames: {"op": "subscribe", "job"?, "tool"?, "state"?, "since"?}, '
    '{"op": "unsubscribe"}, {"op": "ping"} (answered {"type": "pong"}). Each subscription, '
    'from the URL or a subscribe frame, first sends {"type": "subscribed", "since": N}, then '
    "its events, each a CloudEvent: exactly those after offset N, so a client resumes with "
    "since=N before its first event. An SSE stream opens with the line `id: N` and no data, "
    "which EventSource takes as its last event id. Errors after the upgrade are frames holding "
    "an error envelope's body (SSE: a jobwarden.stream.error event)."
)
_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}  # a listing's page size
_HTML = ("text/html",)
# What a submit can answer besides its job: unknown tool, body too large or not JSON, queue
# full, shutting down (or the store refusing the write).
WAIT = {"type": "number", "minimum": 0}  # and at most the server's ``max_wait_s``
_SUBMIT_ERRORS: dict[int, Any] = {
    404: ErrorEnvelope,
    413: ErrorEnvelope,
    415: ErrorEnvelope,
    429: ErrorEnvelope,
    503: ErrorEnvelope,
}
# What a route reading stored jobs can answer when the store cannot (a damaged row, a lost
# connection): 503 with details.reason "store_unavailable".
_READ_ERRORS: dict[int, Any] = {503: ErrorEnvelope}
# The headers that come with some statuses, whichever route answers them: a client that honours
# them (a backoff reading Retry-After, a generated client) learns of them only from here.
_HEADERS: dict[int, dict[str, Any]] = {
    101: {
        "Upgrade": {
            "description": "websocket: the stream continues as websocket frames",
            "required": True,
            "schema": {"type": "string", "const": "websocket"},
        }
    },
    401: {
        "WWW-Authenticate": {
            "description": "how to authenticate (RFC 9110)",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    405: {
        "Allow": {
            "description": "the methods this path takes",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds to wait before submitting again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    503: {
        "Retry-After": {
            # A store that cannot be reached may come back; a server shutting down will not.
            "description": "seconds to wait before trying again; sent when the store is"
            " unavailable, not when the server is shutting down",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
# A stream route upgrades a websocket handshake (Upgrade: websocket) to the stream itself.
_SWITCHING: dict[int, Any] = {101: None}

OPERATIONS: tuple[Op, ...] = (
    Op("get", "/v1/health", "Liveness", {200: wire.Health}, auth=False),
    Op("get", "/v1/tools", "Every tool with its schemas", {200: wire.ToolsBody}),
    Op("get", "/v1/tools/{name}", "One tool", {200: wire.ToolBody, 404: ErrorEnvelope}),
    Op("get", "/v1/plugins", "Every plugin's state and metrics", {200: wire.PluginsBody}),
    Op(
        "get",
        "/v1/plugins/{name}/health",
        "One plugin's state and metrics",
        {200: wire.PluginHealth, 404: ErrorEnvelope},
    ),
    Op(
        "get",
        "/v1/plugins/{name}/manifest",
        "One plugin's manifest: tools with schemas, modes, timeouts, hooks",
        {200: PluginManifest, 404: ErrorEnvelope},
    ),
    Op(
        "post",
        "/v1/jobs",
        "Submit a job",
        {
            200: wire.JobBody,
            202: wire.JobBody,
            **_SUBMIT_ERRORS,
        },
        body=wire.SubmitBody,
        query=(("wait", WAIT, "seconds to wait for the job to finish"),),
    ),
    Op(
        "get",
        "/v1/jobs",
        "List jobs, newest first",
        {200: wire.JobsPage, **_READ_ERRORS},
        query=(
            ("state", "string", "only jobs in this state"),
            ("tool", "string", "only jobs of this tool"),
            ("limit", _LIMIT, "default 50"),
            ("cursor", "string", "next_cursor of the previous page"),
        ),
    ),
    Op(
        "get",
        f"/v1/jobs/{_JOB_ID}",
        "One job",
        {200: wire.JobBody, 404: ErrorEnvelope, **_READ_ERRORS},
    ),
    Op(
        "get",
        f"/v1/jobs/{_JOB_ID}/result",
        "A finished job's result",
        {200: wire.ResultBody, 404: ErrorEnvelope, 409: ErrorEnvelope, **_READ_ERRORS},
    ),
    Op(
        "post",
        f"/v1/jobs/{_JOB_ID}/cancel",
        "Cancel a job",
        {200: wire.JobBody, 404: ErrorEnvelope, 409: ErrorEnvelope, 503: ErrorEnvelope},
    ),
    Op(
        "delete",
        f"/v1/jobs/{_JOB_ID}",
        "Cancel a job",
        {200: wire.JobBody, 404: ErrorEnvelope, 409: ErrorEnvelope, 503: ErrorEnvelope},
    ),
    Op(
        "get",
        f"/v1/jobs/{_JOB_ID}/events",
        "A job's events (websocket, or SSE with Accept: text/event-stream)",
        {**_SWITCHING, 200: None, 404: ErrorEnvelope, **_READ_ERRORS},
        query=(
            ("since", "integer", "resume after this event id"),
            ("tool", "string", "only this tool"),
            ("state", "string", "only events entering this state"),
        ),
        stream=True,
        description=_STREAM,
    ),
    Op(
        "get",
        "/v1/events",
        "Every visible event (websocket, or SSE with Accept: text/event-stream)",
        {**_SWITCHING, 200: None, 404: ErrorEnvelope, **_READ_ERRORS},
        query=(
            ("since", "integer", "resume after this event id"),
            ("job", "string", "only this job"),
            ("tool", "string", "only this tool"),
            ("state", "string", "only events entering this state"),
        ),
        stream=True,
        description=_STREAM,
    ),
    Op("get", "/v1/metrics", "Per-tool metrics as JSON", {200: MetricsBody}),
    Op("get", "/metrics", "Prometheus text exposition", {200: None}, media=("text/plain",)),
    Op(
        "get",
        "/openapi.json",
        "This document",
        {200: None},
        auth=False,
        media=("application/json",),
    ),
    Op("get", "/", "The live dashboard page", {200: None, 304: None}, auth=False, media=_HTML),
    Op(
        "get",
        "/dashboard/{name}",
        "One of the dashboard's scripts or style sheets",
        {200: None, 304: None, 404: ErrorEnvelope},
        auth=False,
        media=("text/javascript", "text/css"),
        path_schemas={"name": {"type": "string", "enum": sorted(set(ASSETS) - {INDEX})}},
    ),
    Op(
        "post",
        "/v1/analyze-execution",
        "Seed-compatible: run an analysis and wait",
        {
            200: seed.SyncResult,
            202: seed.SyncResult,
            **_SUBMIT_ERRORS,
        },
        body=seed.AnalyzeBody,
    ),
    Op(
        "post",
        "/v1/analyze-execution/async",
        "Seed-compatible: queue an analysis",
        {
            202: seed.AsyncAccepted,
            **_SUBMIT_ERRORS,
        },
        body=seed.AnalyzeBody,
    ),
    Op(
        "get",
        "/v1/analyze-execution/jobs",
        "Seed-compatible: list jobs, newest first",
        {200: seed.SeedList, **_READ_ERRORS},
        query=(
            ("plugin", "string", "only this plugin"),
            ("status", "string", "seed status"),
            ("limit", _LIMIT, f"default {MAX_PAGE}"),
            ("cursor", "string", "next_cursor of the previous page"),
        ),
    ),
    Op(
        "get",
        f"/v1/analyze-execution/jobs/{_JOB_ID}",
        "Seed-compatible: a job's status",
        {200: seed.SeedJobBody, 404: ErrorEnvelope, **_READ_ERRORS},
    ),
    Op(
        "get",
        f"/v1/analyze-execution/jobs/{_JOB_ID}/result",
        "Seed-compatible: a job's result",
        {200: seed.SeedResult, 404: ErrorEnvelope, **_READ_ERRORS},
    ),
    Op(
        "delete",
        f"/v1/analyze-execution/jobs/{_JOB_ID}",
        "Seed-compatible: cancel a job",
        {200: seed.SeedCancelled, 404: ErrorEnvelope, 409: ErrorEnvelope, 503: ErrorEnvelope},
    ),
)

_COMMON_ERRORS = (400, 401, 403, 405)


def build_spec(
    prefix: str = "",
    *,
    tools: Mapping[str, dict[str, Any]] | None = None,
    plugins: Mapping[str, Sequence[str]] | None = None,
    max_wait_s: float | None = None,
) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``prefix``: where the app is mounted in another one.

    ``tools`` (each name a server offers, with its input's JSON Schema) makes a submit body one of
    a variant per tool, its ``input`` that tool's; with ``plugins`` too (each plugin's tool names,
    in their order) a seed body is one of a variant per tool the seed routes can run. Without
    them any name (and any input object) fits the schema. ``max_wait_s``: the server's limit on
    ``?wait=``.
    """
    types = {t for op in OPERATIONS for t in (*op.responses.values(), op.body) if t is not None}
    types.add(ErrorEnvelope)
    ordered = sorted(types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(ordered, refs, strict=True))
    if tools:
        components["SubmitBody"] = one_per_tool(components["SubmitBody"], tools, components)
        if plugins is not None:
            components["AnalyzeBody"] = one_per_seed_tool(components["AnalyzeBody"], plugins, tools)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, ref_of)
    if max_wait_s is not None:
        for operation in (doc for methods in paths.values() for doc in methods.values()):
            for param in operation["parameters"]:
                if param["name"] == "wait":
                    param["schema"] = {**param["schema"], "maximum": max_wait_s}
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobwarden", "version": __version__},
        **({"servers": [{"url": prefix}]} if prefix else {}),
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
    }


def _operation(op: Op, ref_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": op.path_schemas.get(name, {"type": "string"}),
        }
        for name in _path_params(op.path)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": kind} if isinstance(kind, str) else kind,
            "description": text,
        }
        for name, kind, text in op.query
    ]
    responses: dict[str, Any] = {}
    for status, body in op.responses.items():
        content = {"application/json": {"schema": ref_of[body]}} if body is not None else None
        if op.stream and status == 200:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
        if op.media and status == 200:
            content = {media: {"schema": _media_schema(media)} for media in op.media}
        responses[str(status)] = {
            "description": _reason(status),
            **({"content": content} if content else {}),
        }
    # Every route answers a method it does not take with 405; those behind a key, more.
    for status in _COMMON_ERRORS if op.auth else (405,):
        responses.setdefault(
            str(status),
            {
                "description": _reason(status),
                "content": {"application/json": {"schema": ref_of[ErrorEnvelope]}},
            },
        )
    for status_text, response in responses.items():
        headers = _HEADERS.get(int(status_text))
        if headers:
            response["headers"] = headers
    doc: dict[str, Any] = {
        "summary": op.summary,
        **({"description": op.description} if op.description else {}),
        "operationId": _operation_id(op),
        "parameters": parameters,
        "responses": responses,
    }
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref_of[op.body]}},
        }
    doc["security"] = [{"bearer": []}, {"apiKey": []}, {"apiKeyQuery": []}] if op.auth else []
    return doc


def _media_schema(media: str) -> dict[str, Any]:
    return {"type": "object"} if media == "application/json" else {"type": "string"}


def _operation_id(op: Op) -> str:
    path = op.path.strip("/") or "index"
    words = path.replace("{", "").replace("}", "").replace(".", "_").split("/")
    return "_".join([op.method, *words])


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase


routes = web.RouteTableDef()


SPECS = web.AppKey("openapi_documents", dict[str, bytes])
"""The app's document per mount point, encoded once: its tools do not change while it runs."""


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document; mounted under a prefix, its ``servers`` names that prefix."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    prefix = path.removesuffix("/openapi.json")
    specs = request.app[SPECS]
    body = specs.get(prefix)
    if body is None:
        registry = request.app[SUPERVISOR].registry
        tools = {tool.name: tool.input_schema() for tool in registry.available_tools()}
        plugins = {
            p.name: [tool.name for tool in p.tools.values() if tool.name in tools]
            for p in registry.plugins()
        }
        spec = build_spec(
            prefix,
            tools=tools,
            plugins=plugins,
            max_wait_s=request.app[SETTINGS].max_wait_s,
        )
        body = specs[prefix] = msgspec.json.encode(spec)
    return web.Response(body=body, content_type="application/json")
