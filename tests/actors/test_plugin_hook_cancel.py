"""Plugin hooks ending in a cancellation: asyncio's CancelledError raised by the hook on its own
fails only its plugin; a real cancellation of the supervisor's start still stops the start."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest

from jobwarden import Plugin, PluginLifecycle, PluginRegistry, Supervisor
from tests.actors.test_plugin_hooks import hooked_plugin

pytestmark = pytest.mark.anyio

asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


async def raise_cancelled() -> None:
    """Raise asyncio's CancelledError outright (on trio, an ordinary BaseException)."""
    raise asyncio.CancelledError("a library's own")


async def await_cancelled_future() -> None:
    """Await a future something else (here, the hook itself) cancelled."""
    future = asyncio.get_running_loop().create_future()
    future.cancel()
    await future


async def startup_fails_only_its_plugin(hook: Callable[[], Awaitable[None]]) -> None:
    calls: list[str] = []
    cancelling = Plugin("cancelling", version="1.0.0")
    cancelling.on_startup(hook)
    registry = PluginRegistry([cancelling, hooked_plugin("healthy", calls)])
    with anyio.fail_after(30):
        async with Supervisor(registry=registry) as sup:
            assert await sup.run("healthy.echo", {"text": "ok"}) == {"text": "ok"}
    status = registry.status("cancelling")
    assert status.state is PluginLifecycle.FAILED
    assert status.reason is not None
    assert status.reason.startswith("startup hook raised CancelledError")
    assert calls == ["healthy start", "healthy stop"]


async def test_a_startup_hook_raising_cancelled_error_outright_fails_only_its_plugin() -> None:
    """A startup hook that raises CancelledError itself fails its plugin; the supervisor starts
    and the other plugins run."""
    await startup_fails_only_its_plugin(raise_cancelled)


@asyncio_only
async def test_a_startup_hook_awaiting_a_cancelled_future_fails_only_its_plugin() -> None:
    """A startup hook that awaits a future something else cancelled fails its plugin; the
    supervisor starts and the other plugins run."""
    await startup_fails_only_its_plugin(await_cancelled_future)


@asyncio_only
async def test_a_shutdown_hook_raising_cancelled_error_leaves_the_stop_to_complete() -> None:
    """A shutdown hook that ends in a CancelledError of its own is recorded as raised, and the
    later plugins' shutdown hooks still run."""
    calls: list[str] = []
    cancelling = Plugin("cancelling", version="1.0.0")
    cancelling.on_shutdown(await_cancelled_future)
    registry = PluginRegistry([cancelling, hooked_plugin("later", calls)])
    with anyio.fail_after(30):
        async with Supervisor(registry=registry):
            pass
    status = registry.status("cancelling")
    assert status.state is PluginLifecycle.UNAVAILABLE
    assert status.reason is not None
    assert "its shutdown hook raised CancelledError" in status.reason
    assert calls == ["later start", "later stop"]


async def test_cancelling_a_start_during_a_startup_hook_still_cancels_the_start() -> None:
    """A cancellation of the task starting the supervisor, arriving while a startup hook waits,
    ends the start (the hook recorded as interrupted) instead of failing just that plugin."""
    entered = anyio.Event()
    waiting = Plugin("waiting", version="1.0.0")

    @waiting.on_startup
    async def wait() -> None:
        entered.set()
        await anyio.sleep_forever()

    registry = PluginRegistry([waiting])
    reached: list[str] = []

    async def start() -> None:
        async with Supervisor(registry=registry):
            reached.append("body")

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(start)
            await entered.wait()
            tg.cancel_scope.cancel()
    assert reached == []
    status = registry.status("waiting")
    assert status.state is PluginLifecycle.FAILED
    assert status.reason == "startup hook was interrupted"
