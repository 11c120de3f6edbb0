"""The HTTP API's request and response bodies, and the one JSON encoder and decoders they use."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo
from jobwarden.plugins.circuit import CircuitStatus
from jobwarden.records import JobRecord

MAX_TIMEOUT_S = 86_400.0
MAX_OFFSET = 10**18
"""The largest event offset a client may name (``since``, ``Last-Event-ID``): far beyond any
real one, and within what every store can compare against (SQLite's integers are 64-bit)."""


class SubmitBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/jobs. Unknown members are refused (400 invalid_request).

    ``input`` is an object, or an array for a tool whose input type is ``array_like``: which
    one the tool takes is its own input validation's to say (400 invalid_input).
    """

    tool: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    input: dict[str, Any] | list[Any] = msgspec.field(default_factory=dict)
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class JobBody(msgspec.Struct):
    """One job."""

    job: JobRecord


class JobsPage(msgspec.Struct):
    """A page of jobs, newest first."""

    jobs: list[JobRecord]
    next_cursor: str | None


class ResultBody(msgspec.Struct):
    """A finished job's outcome."""

    job_id: str
    state: JobState
    result: Any
    error: ErrorInfo | None


class Health(msgspec.Struct, omit_defaults=True):
    """GET /v1/health; ``node`` names this node of a cluster (absent on a single node)."""

    status: str
    version: str
    uptime_s: float
    node: str | None = None


class ToolBody(msgspec.Struct):
    """A tool's description and JSON Schemas."""

    name: str
    plugin: str
    description: str
    mode: str
    timeout_s: float | None
    max_concurrency: int | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ToolsBody(msgspec.Struct):
    """GET /v1/tools."""

    tools: list[ToolBody]


class PluginHealth(msgspec.Struct):
    """A plugin's lifecycle state and the summed metrics of its tools."""

    name: str
    version: str
    description: str
    state: str
    reason: str | None
    uptime_s: float
    tools: list[str]
    success_count: int
    error_count: int
    timeout_count: int
    cancel_count: int
    in_flight: int
    last_used: datetime | None
    last_ms: float | None
    avg_ms: float | None
    p95_ms: float | None
    circuits: list[CircuitStatus] = msgspec.field(default_factory=list)
    abandoned_threads: int = 0


class PluginsBody(msgspec.Struct):
    """GET /v1/plugins."""

    plugins: list[PluginHealth]


class ClientFrame(msgspec.Struct, tag_field="op", forbid_unknown_fields=True):
    """Base of the websocket client frames, tagged by ``op``."""


class Subscribe(ClientFrame, tag="subscribe"):
    """Start (or restart) the stream with these filters."""

    job: str | None = None
    tool: str | None = None
    since: Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)] | None = None
    state: JobState | None = None


class Unsubscribe(ClientFrame, tag="unsubscribe"):
    """Stop the stream; the connection stays open."""


class Ping(ClientFrame, tag="ping"):
    """Answered with ``{"type": "pong"}``."""


ClientFrameType = Subscribe | Unsubscribe | Ping


class Subscribed(msgspec.Struct, tag_field="type", tag="subscribed"):
    """The server's first frame of each websocket subscription, before any of its events: the
    offset it starts after, so a client that sees no event before the connection drops still
    resumes exactly, with ``since`` = this."""

    since: int


encoder = msgspec.json.Encoder()
submit_decoder = msgspec.json.Decoder(SubmitBody)
frame_decoder = msgspec.json.Decoder(ClientFrameType)
