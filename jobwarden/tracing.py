"""OpenTelemetry tracing of jobs (the optional ``tracing`` extra): one trace per job.

Each job is a ``jobwarden.job`` span from submit to its terminal state, a child of whatever span
was current where it was submitted. Its children: ``jobwarden.submit`` (validation and the store
write), then per attempt ``jobwarden.queue`` (waiting for a runner) and ``jobwarden.execute``
(from entering running until the outcome is recorded). Every span carries the job id and tool; the
per-attempt spans their attempt; the execute and job spans the outcome, with an error status when
the job failed or timed out. While a tool runs, its execute span is the current OpenTelemetry
context, so the spans a tool opens itself are children of it: in the runner's task for an async
tool, in the worker thread for a thread tool (anyio copies the context into it), and in the
worker process for a process tool (its W3C trace context travels with the call).

Only this module imports opentelemetry, and only a ``Supervisor`` given a tracer (or ``serve
--tracing``) imports this module: with tracing off, nothing of opentelemetry is loaded and the
supervisor's hooks cost one ``is None`` test each.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from typing import TYPE_CHECKING, cast

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from jobwarden.actors.states import JobState
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.records import JobRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

JOB_ID = "jobwarden.job.id"
TOOL = "jobwarden.tool"
PLUGIN = "jobwarden.plugin"
ATTEMPT = "jobwarden.job.attempt"
OUTCOME = "jobwarden.job.outcome"
STATE = "jobwarden.job.state"
RECOVERED = "jobwarden.job.recovered"

_ERROR_STATES = frozenset({JobState.FAILED, JobState.TIMED_OUT})


class _JobSpans:
    """A job's open spans: the job's own, and the phase it is in (queue or execute); ``call``
    is the context its tool runs in (the execute span current) while it executes."""

    __slots__ = ("call", "context", "phase", "root")

    def __init__(self, root: Span, phase: Span | None) -> None:
        self.root = root
        self.context: Context = trace.set_span_in_context(root)
        self.phase = phase
        self.call: Context | None = None


class JobTracing:
    """Opens and ends each job's spans from the supervisor's hooks; ``tracer`` makes them."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._jobs: dict[str, _JobSpans] = {}

    def submitted(self, record: JobRecord, began_ns: int) -> None:
        """``record`` was accepted by a submit that began at ``began_ns`` (epoch nanoseconds)."""
        root = self._tracer.start_span(
            "jobwarden.job",
            attributes={JOB_ID: record.id, TOOL: record.tool, PLUGIN: record.plugin},
            start_time=began_ns,
        )
        spans = _JobSpans(root, None)
        self._span(spans, "jobwarden.submit", record, start_time=began_ns).end()
        if record.state.terminal:  # refused at once by an open circuit
            _end_job(spans, record)
            return
        spans.phase = self._span(spans, "jobwarden.queue", record, attempt=record.attempt)
        self._jobs[record.id] = spans

    def started(self, record: JobRecord) -> None:
        """The job entered running: its queue span ends, its execute span begins."""
        spans = self._spans(record)
        if spans.phase is not None:
            spans.phase.end()
        spans.phase = self._span(spans, "jobwarden.execute", record, attempt=record.attempt)
        spans.call = trace.set_span_in_context(spans.phase, spans.context)

    def retrying(self, record: JobRecord) -> None:
        """An attempt failed and ``record`` is queued again as the next one."""
        spans = self._spans(record)
        spans.call = None
        if spans.phase is not None:
            _end_phase(spans.phase, record, failed=True)
        spans.phase = self._span(spans, "jobwarden.queue", record, attempt=record.attempt)

    def finished(self, record: JobRecord) -> None:
        """The job reached its terminal state: its open spans end with the outcome."""
        spans = self._jobs.pop(record.id, None) or self._recovered(record)
        if spans.phase is not None:
            _end_phase(spans.phase, record, failed=record.state in _ERROR_STATES)
        _end_job(spans, record)

    def enter(self, job_id: str) -> Token[Context] | None:
        """Make the job's execute span the current context for its tool's call; the token gives
        the previous one back (``leave``). None when the job is not executing."""
        call = self._call(job_id)
        return None if call is None else otel_context.attach(call)

    @staticmethod
    def leave(token: Token[Context]) -> None:
        """Restore the context ``enter`` replaced."""
        otel_context.detach(token)

    def carrier(self, job_id: str) -> dict[str, str] | None:
        """The job's execute span as W3C trace context headers, for a call in a worker process;
        None when the job is not executing."""
        call = self._call(job_id)
        if call is None:
            return None
        headers: dict[str, str] = {}
        propagate.inject(headers, context=call)
        return headers

    def _call(self, job_id: str) -> Context | None:
        """The context the job's tool runs in, while it executes."""
        spans = self._jobs.get(job_id)
        return None if spans is None else spans.call

    def _spans(self, record: JobRecord) -> _JobSpans:
        spans = self._jobs.get(record.id)
        if spans is None:
            spans = self._jobs[record.id] = self._recovered(record)
        return spans

    def _recovered(self, record: JobRecord) -> _JobSpans:
        """Spans for a job this process did not submit: recovered from a durable store."""
        attributes: dict[str, str | bool] = {
            JOB_ID: record.id,
            TOOL: record.tool,
            PLUGIN: record.plugin,
            RECOVERED: True,
        }
        return _JobSpans(self._tracer.start_span("jobwarden.job", attributes=attributes), None)

    def _span(
        self,
        spans: _JobSpans,
        name: str,
        record: JobRecord,
        *,
        attempt: int | None = None,
        start_time: int | None = None,
    ) -> Span:
        attributes: dict[str, str | int] = {JOB_ID: record.id, TOOL: record.tool}
        if attempt is not None:
            attributes[ATTEMPT] = attempt
        return self._tracer.start_span(
            name, context=spans.context, attributes=attributes, start_time=start_time
        )


@contextmanager
def continued(carrier: dict[str, str]) -> Iterator[None]:
    """In a worker process: the job's execute span that ``carrier`` names (``JobTracing.carrier``)
    is the current context while the tool runs, so the tool's own spans join the job's trace."""
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def _outcome(record: JobRecord) -> str:
    return SUCCEEDED if record.error is None else str(record.error.type)


def _end_phase(span: Span, record: JobRecord, *, failed: bool) -> None:
    """End a queue or execute span with the outcome ``record``'s error (or success) gives it."""
    span.set_attribute(OUTCOME, _outcome(record))
    if failed and record.error is not None:
        span.set_status(Status(StatusCode.ERROR, f"{record.error.type}: {record.error.message}"))
    span.end()


def _end_job(spans: _JobSpans, record: JobRecord) -> None:
    root = spans.root
    root.set_attribute(STATE, record.state.value)
    root.set_attribute(ATTEMPT, record.attempt)
    _end_phase(root, record, failed=record.state in _ERROR_STATES)


# --- serve --tracing ------------------------------------------------------------------------------

log = structlog.get_logger("jobwarden.tracing")
EXPORTERS = ("otlp", "console", "none")
OTLP_MODULES = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


class TracingConfigError(ValueError):
    """The OTEL_* settings ask for an exporter that is unknown or not installed."""


def provider_from_env() -> TracerProvider:
    """The SDK's provider for ``jobwarden serve --tracing``, exporting where ``OTEL_*`` says.

    ``OTEL_TRACES_EXPORTER``: ``otlp`` (the default when the OTLP exporter is installed; it then
    reads ``OTEL_EXPORTER_OTLP_*`` itself), ``console`` (spans as JSON on stdout: the default
    without it) or ``none``. ``OTEL_SERVICE_NAME`` names the service (``jobwarden`` unless set).
    """
    # The SDK is imported here, not at the top: embedding needs only the API and a tracer.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "jobwarden"}))
    provider = TracerProvider(resource=resource)
    exporter = span_exporter(os.environ.get("OTEL_TRACES_EXPORTER", ""))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def span_exporter(setting: str) -> SpanExporter | None:
    """The exporter an ``OTEL_TRACES_EXPORTER`` value names (None for ``none``); see above."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    name = setting.strip().lower()
    if name not in ("", *EXPORTERS):
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={name!r} is not supported: use {', '.join(EXPORTERS)}"
        )
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    otlp = _otlp_exporter()
    if otlp is not None:
        return otlp
    if name == "otlp":
        raise TracingConfigError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install"
            " opentelemetry-exporter-otlp-proto-http (or -grpc)"
        )
    log.warning("tracing: no OTLP exporter installed, so spans go to stdout (console)")
    return ConsoleSpanExporter()


def _otlp_exporter() -> SpanExporter | None:
    """The OTLP exporter over HTTP, else gRPC, if either package is installed."""
    for module in OTLP_MODULES:
        try:
            exporter_type = importlib.import_module(module).OTLPSpanExporter
        except ImportError:
            continue
        return cast("SpanExporter", exporter_type())
    return None
