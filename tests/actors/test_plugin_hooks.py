"""Plugin startup and shutdown hooks, run by the supervisor at start and stop."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import anyio
import msgspec
import pytest

from jobwarden import (
    JobState,
    MemoryStore,
    Plugin,
    PluginLifecycle,
    PluginRegistry,
    Supervisor,
    ToolContext,
    errors,
)
from jobwarden.actors import plugin_hooks
from jobwarden.actors.recovery import Recovered
from jobwarden.records import JobRecord
from jobwarden.store.base import EventBounds
from jobwarden.store.sqlite import SqliteStore
from tests.actors.test_recovery import crashed_file, demo_plugin, opened_gate
from tests.fakes import UNDECODABLE
from tests.plugins.test_registry import Text

pytestmark = pytest.mark.anyio


class HookFailed(RuntimeError):
    """Raised by a hook on purpose."""


def hooked_plugin(
    name: str, calls: list[str], *, fail_start: bool = False, fail_stop: bool = False
) -> Plugin:
    """A plugin with one ``echo`` tool whose hooks append to ``calls`` and raise on request."""
    plugin = Plugin(name, version="1.0.0")

    @plugin.tool()
    async def echo(inp: Text, ctx: ToolContext) -> Text:
        return inp

    @plugin.on_startup
    async def start() -> None:
        calls.append(f"{name} start")
        if fail_start:
            raise HookFailed("no database")

    @plugin.on_shutdown
    async def stop() -> None:
        calls.append(f"{name} stop")
        if fail_stop:
            raise HookFailed("could not flush")

    return plugin


async def test_hooks_run_at_start_and_stop_and_set_the_lifecycle() -> None:
    """A successful startup hook makes the plugin initialized, then running; shutdown runs last."""
    calls: list[str] = []
    first = hooked_plugin("first", calls)
    second = Plugin("second")
    seen: list[PluginLifecycle] = []

    @second.on_startup
    async def look() -> None:
        seen.append(registry.status("first").state)

    registry = PluginRegistry([first, second])
    async with Supervisor(registry=registry) as sup:
        assert calls == ["first start"]
        assert seen == [PluginLifecycle.INITIALIZED]
        assert sup.registry.status("first").state is PluginLifecycle.RUNNING
        assert sup.registry.status("second").state is PluginLifecycle.RUNNING
        assert await sup.run("first.echo", {"text": "hi"}) == {"text": "hi"}
    assert calls == ["first start", "first stop"]
    status = registry.status("first")
    assert (status.state, status.reason) == (PluginLifecycle.UNAVAILABLE, "the supervisor stopped")


async def test_a_startup_hook_that_raises_fails_only_its_plugin() -> None:
    """Its plugin is failed with the reason, its tools refuse jobs, the other plugin runs."""
    calls: list[str] = []
    registry = PluginRegistry(
        [hooked_plugin("broken", calls, fail_start=True), hooked_plugin("healthy", calls)]
    )
    async with Supervisor(registry=registry) as sup:
        status = sup.registry.status("broken")
        assert status.state is PluginLifecycle.FAILED
        assert status.reason == "startup hook raised HookFailed: no database"
        with pytest.raises(errors.ToolNotFound) as refused:
            await sup.submit("broken.echo", {"text": "x"})
        assert refused.value.details == {"reason": "plugin_failed"}
        assert "plugin 'broken' failed: startup hook raised HookFailed" in refused.value.message
        assert await sup.run("healthy.echo", {"text": "ok"}) == {"text": "ok"}
    assert calls == ["broken start", "healthy start", "healthy stop"]
    assert registry.status("broken").state is PluginLifecycle.FAILED


async def test_a_startup_hook_calling_sys_exit_fails_only_its_plugin() -> None:
    """A startup hook that calls sys.exit() fails its plugin with the reason, like one that
    raises; the supervisor starts and the other plugins run."""
    calls: list[str] = []
    exiting = Plugin("exiting", version="1.0.0")

    @exiting.on_startup
    async def leave() -> None:
        sys.exit(3)

    async with Supervisor(plugins=[exiting, hooked_plugin("fine", calls)]) as sup:
        status = sup.registry.status("exiting")
        assert await sup.run("fine.echo", {"text": "hi"}) == {"text": "hi"}
    assert status.state is PluginLifecycle.FAILED
    assert status.reason == "startup hook raised SystemExit: 3"
    assert calls == ["fine start", "fine stop"]


async def test_a_hook_error_with_a_lone_surrogate_is_recorded_escaped() -> None:
    """A startup hook whose exception text holds a lone surrogate fails its plugin with that
    text escaped, so its status can still be sent as JSON."""
    broken = Plugin("broken", version="1.0.0")

    @broken.on_startup
    async def start() -> None:
        raise FileNotFoundError(UNDECODABLE)

    async with Supervisor(plugins=[broken]) as sup:
        status = sup.registry.status("broken")
    assert status.reason == "startup hook raised FileNotFoundError: caf\\udcff"
    msgspec.json.encode(status)


async def test_a_shutdown_hook_that_raises_is_recorded_and_the_stop_completes() -> None:
    """The plugin ends unavailable with the hook's error in its reason."""
    calls: list[str] = []
    registry = PluginRegistry([hooked_plugin("leaky", calls, fail_stop=True)])
    async with Supervisor(registry=registry):
        pass
    status = registry.status("leaky")
    assert status.state is PluginLifecycle.UNAVAILABLE
    assert status.reason == (
        "the supervisor stopped; its shutdown hook raised HookFailed: could not flush"
    )


async def test_hooks_that_overrun_their_time_are_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A startup hook past HOOK_TIMEOUT_S fails its plugin; a late shutdown hook is cut off."""
    monkeypatch.setattr(plugin_hooks, "HOOK_TIMEOUT_S", 0.001)
    slow_start, slow_stop = Plugin("slow_start"), Plugin("slow_stop")

    @slow_start.on_startup
    async def hang() -> None:
        await anyio.sleep_forever()

    @slow_stop.on_shutdown
    async def hang_too() -> None:
        await anyio.sleep_forever()

    registry = PluginRegistry([slow_start, slow_stop])
    async with Supervisor(registry=registry):
        assert registry.status("slow_start").reason == "startup hook did not finish within 0.001s"
    assert registry.status("slow_stop").reason == (
        "the supervisor stopped; its shutdown hook did not finish within 0.001s"
    )


def test_a_hook_must_be_an_async_def_without_arguments_and_registered_once() -> None:
    """Each misdeclared hook fails at registration with RegistrationError."""
    plugin = Plugin("demo")

    def plain() -> None:
        return None

    async def needs(arg: int) -> None:
        return None

    async def fine(*args: int, flag: bool = False) -> None:
        return None

    with pytest.raises(errors.RegistrationError, match="on_startup needs an async def"):
        plugin.on_startup(plain)  # type: ignore[type-var]
    with pytest.raises(errors.RegistrationError, match="on_shutdown: the hook takes no arguments"):
        plugin.on_shutdown(needs)  # type: ignore[type-var]
    plugin.on_startup(fine)
    plugin.on_shutdown(fine)
    with pytest.raises(errors.RegistrationError, match="a startup hook is already registered"):
        plugin.on_startup(fine)
    with pytest.raises(errors.RegistrationError, match="a shutdown hook is already registered"):
        plugin.on_shutdown(fine)


async def test_a_plugin_added_once_the_supervisor_started_is_refused() -> None:
    """Adding a plugin to a started supervisor's registry raises ``RegistrationError``: its
    startup hook would never run, so its tools must never take a job."""
    calls: list[str] = []
    late = hooked_plugin("late", calls)
    async with Supervisor(plugins=[hooked_plugin("first", calls)]) as sup:
        with pytest.raises(errors.RegistrationError, match="before the supervisor starts"):
            sup.registry.add(late)
        with pytest.raises(errors.RegistrationError, match="before the supervisor starts"):
            sup.registry.add_failed("pkg:late", "no module named pkg")
        with pytest.raises(errors.ToolNotFound):
            await sup.submit("late.echo", {"text": "x"})
        assert sup.registry.plugin_names() == ["first"]
    assert calls == ["first start", "first stop"]


async def test_recovered_jobs_of_a_plugin_that_failed_to_start_are_cancelled(
    tmp_path: Path,
) -> None:
    """A durable job left queued for a plugin whose startup hook now fails is not run."""
    path = tmp_path / "jobs.db"
    [left] = await crashed_file(path, ("broken.echo", "k", JobState.QUEUED))
    calls: list[str] = []
    plugin = hooked_plugin("broken", calls, fail_start=True)
    async with Supervisor(plugins=[plugin], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(abandoned=1)
        record = await sup.get(left.id)
    assert record.state is JobState.CANCELLED
    assert record.error is not None
    assert "plugin 'broken' failed: startup hook raised HookFailed" in record.error.message
    assert calls == ["broken start"]


class UnreadableStore(MemoryStore):
    """A memory store whose event log cannot be read: a supervisor's start fails on it before
    any plugin starts."""

    async def event_bounds(self) -> EventBounds:
        raise errors.StoreError("the event log cannot be read")


async def test_a_start_that_fails_after_the_hooks_ran_is_undone(tmp_path: Path) -> None:
    """When recovery cannot write (a full disk), the start raises the store's error after
    stopping what it started: the shutdown hook runs, and the file is free for the next start,
    which recovers the job."""
    path = tmp_path / "jobs.db"
    [cut_off] = await crashed_file(path, ("demo.step", "k", JobState.RUNNING))
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON events"
            " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    calls: list[str] = []
    plugin = hooked_plugin("hooked", calls)
    demo = demo_plugin([], opened_gate())
    supervisor = Supervisor(plugins=[plugin, demo], store=SqliteStore(path))
    with pytest.raises(errors.StoreError, match="disk is full"):
        async with supervisor:
            raise AssertionError("unreachable: the start fails")
    assert calls == ["hooked start", "hooked stop"]
    assert supervisor.registry.status("hooked").state is PluginLifecycle.UNAVAILABLE
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER full")
    async with Supervisor(plugins=[demo], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(interrupted=1)
        assert (await sup.get(cut_off.id)).state is JobState.FAILED


async def test_a_start_that_fails_before_the_hooks_runs_no_shutdown_hook() -> None:
    """A start that fails before any plugin started stops none: no shutdown hook runs."""
    calls: list[str] = []
    supervisor = Supervisor(plugins=[hooked_plugin("hooked", calls)], store=UnreadableStore())
    with pytest.raises(errors.StoreError, match="cannot be read"):
        async with supervisor:
            raise AssertionError("unreachable: the start fails")
    assert calls == []
    assert supervisor.registry.status("hooked").state is PluginLifecycle.LOADED


class SlowRecovery(MemoryStore):
    """A durable-looking memory store whose recovery read waits until cancelled; it notes when
    that read began and whether it was closed."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.reading = anyio.Event()
        self.closed = False

    async def unfinished(self) -> list[JobRecord]:
        self.reading.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self.closed = True
        await super().close()


async def test_a_start_cancelled_during_recovery_is_undone() -> None:
    """Cancelling a start while it recovers stops what it started: the started plugin's
    shutdown hook runs and the store is closed."""
    calls: list[str] = []
    store = SlowRecovery()
    supervisor = Supervisor(plugins=[hooked_plugin("hooked", calls)], store=store)

    async def start() -> None:
        async with supervisor:
            raise AssertionError("unreachable: the start is cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(start)
        await store.reading.wait()
        tg.cancel_scope.cancel()
    assert calls == ["hooked start", "hooked stop"]
    assert store.closed
