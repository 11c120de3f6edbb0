"""Plugin start-up and shutdown hooks, run by the supervisor.

Hooks are plugin code, so they are called here, a module the governance scanner allows to call
plugin code, each under a ``finally`` that records how it ended in the registry (``record_hook``):
the plugin's lifecycle says whether it started, and why not. A hook that raises or overruns
``HOOK_TIMEOUT_S`` fails only its own plugin, whatever it raises (asyncio's ``CancelledError``
too, when nobody cancelled the supervisor: ``cancellation``); the rest of the server runs.
"""

from __future__ import annotations

from typing import Literal

import anyio
import structlog

from jobwarden.actors.cancellation import cancelled_from_outside
from jobwarden.errors import describe, plugin_failure
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry
from jobwarden.plugins.tool import Plugin

log = structlog.get_logger("jobwarden.plugins")
HOOK_TIMEOUT_S = 30.0
INTERRUPTED = "was interrupted"


async def start_plugin(registry: PluginRegistry, plugin: Plugin) -> None:
    """Run ``plugin``'s startup hook, if any: initialized if it returns, else failed."""
    await _run_hook(registry, plugin, "startup")


async def stop_plugin(registry: PluginRegistry, plugin: Plugin) -> None:
    """Run ``plugin``'s shutdown hook, unless it failed to start or never started (a
    supervisor whose start failed before it); it ends unavailable."""
    if registry.status(plugin.name).state in (PluginLifecycle.FAILED, PluginLifecycle.LOADED):
        return
    await _run_hook(registry, plugin, "shutdown")


async def _run_hook(
    registry: PluginRegistry, plugin: Plugin, which: Literal["startup", "shutdown"]
) -> None:
    hook = plugin.startup_hook if which == "startup" else plugin.shutdown_hook
    error: str | None = INTERRUPTED
    try:
        with anyio.move_on_after(HOOK_TIMEOUT_S) as scope:
            if hook is not None:
                await hook()
        error = f"did not finish within {HOOK_TIMEOUT_S:g}s" if scope.cancelled_caught else None
    except ImportError as exc:
        # A missing optional dependency is the deployment's state, not a bug: its message is the
        # whole story (the install hint), a traceback on every start only buries it.
        log.warning(
            f"plugin {which} hook: a dependency is missing", plugin=plugin.name, error=str(exc)
        )
        error = f"raised {describe(exc)}"
    except BaseException as exc:
        # A CancelledError of the hook's own (it awaited a future a library cancelled) is its
        # failure like any other; a cancellation of the supervisor must go on.
        outside = cancelled_from_outside()
        if not plugin_failure(exc, anyio.get_cancelled_exc_class() if outside else None):
            raise
        log.exception(f"plugin {which} hook raised", plugin=plugin.name)
        error = f"raised {describe(exc)}"
    finally:
        registry.record_hook(plugin.name, which, error)
