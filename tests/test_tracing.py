"""OpenTelemetry spans per job, recorded by the SDK's in-memory exporter; tracing off imports
nothing of opentelemetry; the exporter ``serve --tracing`` picks from the OTEL_* variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

import jobwarden
from jobwarden import JobState, Plugin, PluginRegistry, Supervisor, ToolContext, builtin
from jobwarden.server import ConfigError, ServeOptions, tracer_provider
from jobwarden.store.sqlite import SqliteStore
from jobwarden.tracing import (
    ATTEMPT,
    JOB_ID,
    OUTCOME,
    RECOVERED,
    STATE,
    TOOL,
    TracingConfigError,
    provider_from_env,
    span_exporter,
)
from tests.actors.test_circuit_breaker import fail_twice, flaky_plugin
from tests.actors.test_retries import Flaky
from tests.fakes import Gates, fake_plugin
from tests.plugins.test_circuit import FakeClock
from tests.tracing_fakes import Nothing, SpanIds, traced

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Where the spans of ``provider`` end up, each as soon as it ends."""
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A provider of its own (the global one is left alone) exporting to ``exporter``."""
    made = TracerProvider(shutdown_on_exit=False)
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


def spans_of(exporter: InMemorySpanExporter, job_id: str) -> list[ReadableSpan]:
    """The finished spans of one job, in the order they ended."""
    spans = exporter.get_finished_spans()
    return [s for s in spans if s.attributes is not None and s.attributes.get(JOB_ID) == job_id]


def tree(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The job span and its children (by start time); asserts they form one trace under it."""
    [root] = [s for s in spans if s.name == "jobwarden.job"]
    children = sorted((s for s in spans if s is not root), key=lambda s: s.start_time or 0)
    assert root.context is not None
    for child in children:
        assert child.context is not None
        assert child.parent is not None
        assert child.context.trace_id == root.context.trace_id
        assert child.parent.span_id == root.context.span_id
    return root, children


@pytest.mark.anyio
async def test_a_job_is_one_trace_of_submit_queue_and_execute(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A succeeded job: its span holds submit, queue and execute in order, with its id, tool,
    attempt and outcome, and no error status anywhere."""
    async with Supervisor(plugins=[builtin], tracer=provider.get_tracer("test")) as sup:
        rec = await sup.submit("builtin.echo", {"text": "hi"})
        await sup.wait(rec.id, timeout=10)
    root, children = tree(spans_of(exporter, rec.id))
    assert [s.name for s in children] == [
        "jobwarden.submit",
        "jobwarden.queue",
        "jobwarden.execute",
    ]
    assert root.attributes is not None
    assert root.attributes[TOOL] == "builtin.echo"
    assert root.attributes[OUTCOME] == "succeeded"
    assert root.attributes[STATE] == "succeeded"
    queue, execute = children[1], children[2]
    assert queue.attributes is not None
    assert queue.attributes[ATTEMPT] == 1
    assert execute.attributes is not None
    assert execute.attributes[OUTCOME] == "succeeded"
    assert all(s.status.status_code is StatusCode.UNSET for s in [root, *children])
    assert root.start_time is not None
    assert root.end_time is not None
    assert all(root.start_time <= (s.start_time or 0) for s in children)
    assert all((s.end_time or 0) <= root.end_time for s in children)


@pytest.mark.anyio
async def test_failed_and_timed_out_jobs_have_an_error_status(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A tool that raises and one that times out leave their execute and job spans in error,
    with the error type and message as the description."""
    plugins = [builtin, fake_plugin(Gates())]
    async with Supervisor(plugins=plugins, tracer=provider.get_tracer("test")) as sup:
        failed = await sup.submit("builtin.fail", {"message": "no luck"})
        hung = await sup.submit("fake.hang", {"key": "never"})
        assert (await sup.wait(failed.id, timeout=10)).state is JobState.FAILED
        assert (await sup.wait(hung.id, timeout=10)).state is JobState.TIMED_OUT
    for job_id, outcome in ((failed.id, "plugin_error"), (hung.id, "timeout")):
        root, children = tree(spans_of(exporter, job_id))
        execute = children[-1]
        for span in (root, execute):
            assert span.status.status_code is StatusCode.ERROR
            assert span.status.description is not None
            assert span.status.description.startswith(f"{outcome}: ")
            assert span.attributes is not None
            assert span.attributes[OUTCOME] == outcome
    root, _ = tree(spans_of(exporter, failed.id))
    assert root.status.description is not None
    assert "no luck" in root.status.description


@pytest.mark.anyio
async def test_a_retried_job_has_a_queue_and_execute_span_per_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Each attempt gets its own queue and execute spans; the failed attempt's is in error, and
    the job ends succeeded on attempt 2."""
    plugin = Flaky(failures=1).plugin(Gates())
    async with Supervisor(plugins=[plugin], tracer=provider.get_tracer("test")) as sup:
        rec = await sup.submit("flaky.sometimes", {})
        assert (await sup.wait(rec.id, timeout=10)).state is JobState.SUCCEEDED
    root, children = tree(spans_of(exporter, rec.id))
    phases = [(s.name, (s.attributes or {})[ATTEMPT], s.status.status_code) for s in children[1:]]
    assert phases == [
        ("jobwarden.queue", 1, StatusCode.UNSET),
        ("jobwarden.execute", 1, StatusCode.ERROR),
        ("jobwarden.queue", 2, StatusCode.UNSET),
        ("jobwarden.execute", 2, StatusCode.UNSET),
    ]
    assert root.attributes is not None
    assert (root.attributes[ATTEMPT], root.attributes[OUTCOME]) == (2, "succeeded")


@pytest.mark.anyio
async def test_a_job_cancelled_while_queued_ends_in_its_queue_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A job cancelled before it started has no execute span; queue and job end as cancelled,
    which is not an error."""
    gates = Gates()
    tracer = provider.get_tracer("test")
    async with Supervisor(plugins=[fake_plugin(gates)], concurrency=1, tracer=tracer) as sup:
        held = await sup.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        waiting = await sup.submit("fake.gate", {"key": "held"})
        await sup.cancel(waiting.id)
        gates.open("held")
        await sup.wait(held.id, timeout=10)
    root, children = tree(spans_of(exporter, waiting.id))
    assert [s.name for s in children] == ["jobwarden.submit", "jobwarden.queue"]
    for span in (root, children[-1]):
        assert span.attributes is not None
        assert span.attributes[OUTCOME] == "cancelled"
        assert span.status.status_code is StatusCode.UNSET


@pytest.mark.anyio
async def test_a_refused_call_is_a_trace_of_its_submit_alone(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A call an open circuit refuses at submit is a job span with only its submit span, in
    error with circuit_open."""
    registry = PluginRegistry([flaky_plugin()], clock=FakeClock())
    async with Supervisor(registry=registry, tracer=provider.get_tracer("test")) as sup:
        await fail_twice(sup)
        refused = await sup.submit("flaky.call", {})
    root, children = tree(spans_of(exporter, refused.id))
    assert [s.name for s in children] == ["jobwarden.submit"]
    assert root.attributes is not None
    assert root.attributes[OUTCOME] == "circuit_open"
    assert root.status.status_code is StatusCode.ERROR


@pytest.mark.anyio
async def test_the_job_span_is_a_child_of_the_submitter_s_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A job submitted inside a span of the embedding application joins that span's trace."""
    tracer = provider.get_tracer("test")
    async with Supervisor(plugins=[builtin], tracer=tracer) as sup:
        with tracer.start_as_current_span("caller") as caller:
            rec = await sup.submit("builtin.echo", {"text": "hi"})
        await sup.wait(rec.id, timeout=10)
    root, _ = tree(spans_of(exporter, rec.id))
    assert root.parent is not None
    assert root.parent.span_id == caller.get_span_context().span_id


@pytest.mark.anyio
async def test_a_recovered_job_gets_a_trace_of_its_own(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A job left queued in a durable store is traced when the next supervisor runs it, marked
    as recovered (its submit belonged to an earlier process)."""
    gates = Gates()
    path = tmp_path / "jobs.db"
    async with Supervisor(
        plugins=[fake_plugin(gates)], store=SqliteStore(path), concurrency=1, shutdown_grace_s=0
    ) as sup:
        await sup.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        left = await sup.submit("fake.gate", {"key": "next"})
    gates.open("next")
    async with Supervisor(
        plugins=[fake_plugin(gates)], store=SqliteStore(path), tracer=provider.get_tracer("t")
    ) as sup:
        assert (await sup.wait(left.id, timeout=10)).state is JobState.SUCCEEDED
    root, children = tree(spans_of(exporter, left.id))
    assert [s.name for s in children] == ["jobwarden.execute"]
    assert root.attributes is not None
    assert root.attributes[RECOVERED] is True


def _ids(span: ReadableSpan) -> SpanIds:
    assert span.context is not None
    return SpanIds(trace_id=f"{span.context.trace_id:032x}", span_id=f"{span.context.span_id:016x}")


@pytest.mark.anyio
@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
@pytest.mark.parametrize("tool", ["traced.in_task", "traced.in_thread", "traced.in_process"])
async def test_a_tool_runs_with_its_job_s_execute_span_current(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tool: str,
    durable: bool,
    tmp_path: Path,
) -> None:
    """Whatever its mode, a tool sees its job's execute span as the current span, so the spans
    it opens itself join the job's trace under it; each job sees its own (on the SQLite store
    too, whose jobs start ahead of their runner)."""
    store = SqliteStore(tmp_path / "jobs.db") if durable else None
    async with Supervisor(
        plugins=[traced], tracer=provider.get_tracer("test"), concurrency=1, store=store
    ) as sup:
        first = await sup.submit(tool, {})
        second = await sup.submit(tool, {})
        done = [await sup.wait(first.id, timeout=60), await sup.wait(second.id, timeout=60)]
    for job in done:
        assert job.state is JobState.SUCCEEDED, job.error
        _, children = tree(spans_of(exporter, job.id))
        [execute] = [s for s in children if s.name == "jobwarden.execute"]
        assert msgspec.convert(job.result, SpanIds) == _ids(execute)


@pytest.mark.anyio
async def test_a_tool_s_own_span_is_a_child_of_its_execute_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A span an async tool opens with ``start_as_current_span`` has the job's execute span as
    its parent; a tool that raised leaves the runner able to run the next job under that job's
    own execute span."""
    tracer = provider.get_tracer("test")
    plugin = Plugin("own", version="1.0.0")

    @plugin.tool(timeout=10)
    async def spanned(inp: Nothing, ctx: ToolContext) -> Nothing:
        with tracer.start_as_current_span("inside the tool"):
            return Nothing()

    async with Supervisor(plugins=[plugin, traced], tracer=tracer, concurrency=1) as sup:
        rec = await sup.submit("own.spanned", {})
        failed = await sup.submit("traced.fails", {})
        after = await sup.submit("traced.in_task", {})
        assert (await sup.wait(rec.id, timeout=10)).state is JobState.SUCCEEDED
        assert (await sup.wait(failed.id, timeout=10)).state is JobState.FAILED
        later = await sup.wait(after.id, timeout=10)
    [inside] = [s for s in exporter.get_finished_spans() if s.name == "inside the tool"]
    [execute] = [s for s in spans_of(exporter, rec.id) if s.name == "jobwarden.execute"]
    assert inside.parent is not None
    assert _ids(inside).trace_id == _ids(execute).trace_id
    assert f"{inside.parent.span_id:016x}" == _ids(execute).span_id
    [after_execute] = [s for s in spans_of(exporter, after.id) if s.name == "jobwarden.execute"]
    assert msgspec.convert(later.result, SpanIds) == _ids(after_execute)


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    """Importing jobwarden (server and CLI included) and running jobs without a tracer never
    loads an opentelemetry module."""
    script = textwrap.dedent(
        """
        import sys
        import anyio
        import jobwarden.cli, jobwarden.server, jobwarden.transport
        from jobwarden import Supervisor, builtin

        async def main():
            async with Supervisor(plugins=[builtin]) as sup:
                for _ in range(3):
                    await sup.run("builtin.echo", {"text": "x"}, timeout=10)

        anyio.run(main)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        print(loaded)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_the_exporter_follows_otel_traces_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """console and none are honoured, case and spaces aside; an unknown name is refused."""
    assert isinstance(span_exporter(" Console "), ConsoleSpanExporter)
    assert span_exporter("none") is None
    with pytest.raises(TracingConfigError, match="zipkin"):
        span_exporter("zipkin")


def test_otlp_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the OTLP exporter package is importable, it is the default and what otlp names."""

    class FakeOtlp(ConsoleSpanExporter):
        """Stands in for OTLPSpanExporter."""

    fake = types.ModuleType("fake_otlp")
    fake.OTLPSpanExporter = FakeOtlp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", fake)
    assert isinstance(span_exporter(""), FakeOtlp)
    assert isinstance(span_exporter("otlp"), FakeOtlp)


def test_without_otlp_the_default_is_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the OTLP exporter, the default falls back to the console (saying so), and asking
    for otlp by name is refused with how to install it."""
    for module in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        monkeypatch.setitem(sys.modules, module, None)
    with capture_logs() as logs:
        assert isinstance(span_exporter(""), ConsoleSpanExporter)
    assert "no OTLP exporter installed" in logs[0]["event"]
    with pytest.raises(TracingConfigError, match="pip install opentelemetry-exporter-otlp"):
        span_exporter("otlp")


def test_the_service_is_named_jobwarden_unless_otel_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider's resource names the service jobwarden, or what OTEL_SERVICE_NAME says."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    provider = provider_from_env()
    assert provider.resource.attributes["service.name"] == "jobwarden"
    provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "workers")
    provider = provider_from_env()
    assert provider.resource.attributes["service.name"] == "workers"
    provider.shutdown()


def test_serve_tracing_refuses_a_bad_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """--tracing with an unknown OTEL_TRACES_EXPORTER is a configuration error naming it."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="zipkin"):
        tracer_provider(ServeOptions(tracing=True))
    assert tracer_provider(ServeOptions()) is None


def test_serve_tracing_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--tracing when opentelemetry cannot be imported is a configuration error naming the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "jobwarden.tracing")
    monkeypatch.delattr(jobwarden, "tracing")
    with pytest.raises(ConfigError, match=r"jobwarden\[tracing\]"):
        tracer_provider(ServeOptions(tracing=True))
