"""A plugin's own BaseException (not an Exception) fails only what the plugin was doing: its job,
its input check, its hook, its import; never the supervisor or another job."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, Plugin, Supervisor, ToolContext, errors
from jobwarden.errors import OutcomeType, describe, plugin_failure
from jobwarden.plugins.discovery import PluginLoadError, load_spec
from tests.fakes import Gates, KeyIn, TextOut, fake_plugin

pytestmark = pytest.mark.anyio


class PluginAbort(BaseException):
    """A plugin's own control-flow exception, deriving from BaseException as some libraries'
    do (gevent's Timeout, a framework's abort)."""


class AbortWhenRead(Exception):
    """An exception whose text cannot be read: its __str__ raises a BaseException."""

    def __str__(self) -> str:
        raise PluginAbort("no text")


def aborting_plugin() -> Plugin:
    """Tools that raise what Exception does not catch, in the loop and in a worker thread."""
    plugin = Plugin("aborting", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def abort(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise a BaseException subclass of the plugin's own."""
        raise PluginAbort(inp.key)

    @plugin.tool(timeout=5.0, mode="thread")
    def abort_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """The same, in a worker thread."""
        raise PluginAbort(inp.key)

    @plugin.tool(timeout=5.0)
    async def exit_generator(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise GeneratorExit outside any generator."""
        raise GeneratorExit(inp.key)

    @plugin.tool(timeout=5.0, mode="thread")
    def exit_generator_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise GeneratorExit in a worker thread."""
        raise GeneratorExit(inp.key)

    @plugin.tool(timeout=5.0, mode="thread")
    def cancel_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise asyncio's CancelledError in a worker thread, where nothing can cancel."""
        raise asyncio.CancelledError(inp.key)

    @plugin.tool(timeout=5.0, mode="thread")
    def interrupt_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise KeyboardInterrupt in a worker thread, where no signal can."""
        raise KeyboardInterrupt(inp.key)

    @plugin.tool(timeout=5.0)
    async def group(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise a group holding a BaseException subclass."""
        raise BaseExceptionGroup(inp.key, [PluginAbort("a"), ValueError("b")])

    @plugin.tool(timeout=5.0)
    async def unreadable(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Raise an exception whose __str__ raises a BaseException subclass."""
        raise AbortWhenRead

    return plugin


@pytest.mark.parametrize(
    ("tool", "message", "exception"),
    [
        ("abort", "PluginAbort: k", f"{__name__}.PluginAbort"),
        ("abort_thread", "PluginAbort: k", f"{__name__}.PluginAbort"),
        ("exit_generator", "GeneratorExit: k", "builtins.GeneratorExit"),
        ("exit_generator_thread", "GeneratorExit: k", "builtins.GeneratorExit"),
        ("cancel_thread", "CancelledError: k", "asyncio.exceptions.CancelledError"),
        (
            "interrupt_thread",
            "ThreadInterrupt: KeyboardInterrupt: k",
            "jobwarden.actors.thread_calls.ThreadInterrupt",
        ),
        ("group", "BaseExceptionGroup: k (2 sub-exceptions)", "builtins.BaseExceptionGroup"),
        (
            "unreadable",
            "AbortWhenRead: <its message could not be read: PluginAbort>",
            f"{__name__}.AbortWhenRead",
        ),
    ],
)
async def test_a_tool_raising_a_base_exception_fails_only_its_job(
    tool: str, message: str, exception: str
) -> None:
    """The job fails as plugin_error naming the exception, counted in the tool's metrics, while
    a job running beside it finishes and the supervisor runs on (it stopped, cancelling both)."""
    gates = Gates()
    async with Supervisor(plugins=[aborting_plugin(), fake_plugin(gates)]) as sup:
        beside = await sup.submit("fake.gate", {"key": "beside"})
        await gates.wait_entered("beside")
        with capture_logs() as logs:
            done = await sup.wait((await sup.submit(f"aborting.{tool}", {"key": "k"})).id, 5)
        gates.open("beside")
        other = await sup.wait(beside.id, timeout=5)
        metrics = sup.registry.metrics(f"aborting.{tool}")
        assert sup.statistics().restarts == 0
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == (OutcomeType.PLUGIN_ERROR, message)
    assert done.error.details == {"exception": exception}
    assert other.state is JobState.SUCCEEDED
    assert metrics.failures_by_type == {"plugin_error": 1}
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["tool raised"]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_keyboard_interrupt_from_a_tool_reaches_the_host_as_itself(backend: str) -> None:
    """A tool's KeyboardInterrupt (a Ctrl-C landing in plugin code) stops the supervisor and
    comes out of ``async with`` as itself, the task group's exception group as its cause, not
    wrapped in that group."""
    # The test runs its own loop: asyncio also re-raises a task's KeyboardInterrupt out of the
    # loop, after the host has handled it.
    plugin = Plugin("interrupting")

    @plugin.tool()
    async def interrupt(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Be interrupted."""
        raise KeyboardInterrupt(inp.key)

    caught: list[BaseException] = []

    async def host() -> None:
        gates = Gates()
        try:
            async with Supervisor(plugins=[plugin, fake_plugin(gates)]) as sup:
                await sup.submit("fake.gate", {"key": "beside"})
                await gates.wait_entered("beside")
                await sup.run("interrupting.interrupt", {"key": "k"})
        except BaseException as exc:
            caught.append(exc)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(host, backend=backend)
    [exc] = caught
    assert type(exc) is KeyboardInterrupt
    assert exc.args == ("k",)
    assert isinstance(exc.__cause__, BaseExceptionGroup)


class AbortingIn(msgspec.Struct):
    """An input whose type's own check raises a BaseException subclass."""

    key: str

    def __post_init__(self) -> None:
        raise PluginAbort(self.key)


async def test_an_input_check_raising_a_base_exception_refuses_only_that_input() -> None:
    """An input type's __post_init__ raising a BaseException subclass is InvalidInput naming
    it, with no job created, and the supervisor takes the next submit."""
    plugin = Plugin("checking", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def run(inp: AbortingIn, ctx: ToolContext) -> TextOut:
        """Never called: every input is refused."""
        return TextOut(text=inp.key)

    gates = Gates()
    async with Supervisor(plugins=[plugin, fake_plugin(gates)]) as sup:
        with pytest.raises(errors.InvalidInput) as caught:
            await sup.submit("checking.run", {"key": "k"})
        assert (await sup.list_jobs()).jobs == []
        gates.open("next")
        assert await sup.run("fake.gate", {"key": "next"}) == {"text": "next"}
    assert caught.value.message == "the tool's input check raised PluginAbort: k"


async def test_a_hook_raising_a_base_exception_fails_only_its_plugin() -> None:
    """A startup hook raising a BaseException subclass marks its plugin failed, saying so, and
    the supervisor starts and runs the other plugins' jobs."""
    plugin = Plugin("hooked", version="1.0.0")

    @plugin.on_startup
    async def start() -> None:
        """Abort the start."""
        raise PluginAbort("no start")

    gates = Gates()
    async with Supervisor(plugins=[plugin, fake_plugin(gates)]) as sup:
        status = sup.registry.status("hooked")
        gates.open("next")
        assert await sup.run("fake.gate", {"key": "next"}) == {"text": "next"}
    assert status.reason is not None
    assert "raised PluginAbort: no start" in status.reason


def test_a_module_raising_a_base_exception_at_import_is_a_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin module whose import raises a BaseException subclass is PluginLoadError naming
    it, not a crash of whatever loads it."""
    (tmp_path / "aborting_at_import.py").write_text(
        "class Abort(BaseException):\n    pass\n\nraise Abort('no import')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginLoadError) as caught:
        load_spec("aborting_at_import:plugin")
    sys.modules.pop("aborting_at_import", None)
    assert str(caught.value) == "importing aborting_at_import raised Abort: no import"


@pytest.mark.parametrize(
    ("exc", "fails_only_the_call"),
    [
        (ValueError("v"), True),
        (PluginAbort("a"), True),
        (GeneratorExit(), True),
        (SystemExit(2), True),
        (KeyboardInterrupt(), False),
        (BaseExceptionGroup("g", [PluginAbort("a"), ValueError("v")]), True),
        (BaseExceptionGroup("g", [PluginAbort("a"), KeyboardInterrupt()]), False),
    ],
)
def test_which_exceptions_fail_only_the_plugins_call(
    exc: BaseException, fails_only_the_call: bool
) -> None:
    """Everything but KeyboardInterrupt (and groups holding one) fails only the plugin's call."""
    assert plugin_failure(exc) is fails_only_the_call


def test_cancellation_is_never_a_plugin_failure() -> None:
    """The backend's cancellation, alone or in a group, goes on: it is not the plugin's."""

    class Cancelled(BaseException):
        """Stands for the backend's cancellation exception."""

    assert not plugin_failure(Cancelled(), Cancelled)
    assert not plugin_failure(BaseExceptionGroup("g", [ValueError("v"), Cancelled()]), Cancelled)
    assert plugin_failure(PluginAbort("a"), Cancelled)


def test_describing_an_exception_lets_only_a_keyboard_interrupt_through() -> None:
    """An exception whose __str__ raises is described with a note, unless what it raised is a
    KeyboardInterrupt (a Ctrl-C), which goes on."""

    class CtrlCWhenRead(Exception):
        """An exception whose __str__ is interrupted."""

        def __str__(self) -> str:
            raise KeyboardInterrupt

    assert (
        describe(AbortWhenRead()) == "AbortWhenRead: <its message could not be read: PluginAbort>"
    )
    with pytest.raises(KeyboardInterrupt):
        describe(CtrlCWhenRead())
