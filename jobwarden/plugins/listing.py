"""What ``jobwarden tools`` prints: each loaded plugin's manifest, and each failure's reason."""

from __future__ import annotations

from typing import Any

import msgspec

from jobwarden.plugins.manifest import PluginManifest, manifest
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry


class FailedPlugin(msgspec.Struct, frozen=True):
    """A plugin that could not be loaded: where it was named, and why."""

    source: str
    reason: str | None


class Listing(msgspec.Struct, frozen=True):
    """``jobwarden tools --json``."""

    plugins: list[PluginManifest]
    failed: list[FailedPlugin]


def failures(registry: PluginRegistry) -> list[FailedPlugin]:
    """The plugins registered as failed, with their reasons."""
    return [
        FailedPlugin(source=name, reason=status.reason)
        for name in registry.plugin_names()
        if (status := registry.status(name)).state is PluginLifecycle.FAILED
    ]


# Registration keeps every timeout and breaker window as a float, so ``timeout=5`` would list as
# 5.0: the listing gives back the 5 its author wrote. (The HTTP API's manifests keep the float.)
_SECONDS = {
    "tool": ("timeout_s", "total_timeout_s", "queue_timeout_s"),
    "retry": ("backoff_s", "max_backoff_s"),
    "circuit": ("window_s", "cooldown_s"),
}
# Past 2**53 not every integer is a float: such a value stays the float it is.
_EXACT_INTEGERS = 2.0**53


def seconds_text(seconds: float) -> str:
    """``seconds`` as people write them: ``5`` (not ``5.0``), ``0.25``, ``1234567``, in full,
    where ``:g`` would round to six digits (``1.23457e+06``)."""
    return repr(as_written(seconds))


def as_written(value: Any) -> Any:
    """A float that holds an integer as that int; anything else as it is."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INTEGERS:
        return int(value)
    return value


def _toolas_written(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool's manifest (as builtins) with its seconds as written."""
    for name in _SECONDS["tool"]:
        tool[name] = as_written(tool[name])
    for policy in ("retry", "circuit"):
        if tool[policy] is not None:
            for name in _SECONDS[policy]:
                tool[policy][name] = as_written(tool[policy][name])
    return tool


def render_json(registry: PluginRegistry) -> str:
    """The listing as one JSON document and a newline."""
    listing = msgspec.to_builtins(
        Listing(plugins=[manifest(p) for p in registry.plugins()], failed=failures(registry))
    )
    for plugin in listing["plugins"]:
        plugin["tools"] = [_toolas_written(tool) for tool in plugin["tools"]]
    return msgspec.json.encode(listing).decode() + "\n"


def render_text(registry: PluginRegistry) -> str:
    """The listing for people: each plugin, its tools, then what failed to load."""
    lines: list[str] = []
    for plugin in registry.plugins():
        found = manifest(plugin)
        hooks = f" (hooks: {', '.join(found.hooks)})" if found.hooks else ""
        lines.append(f"{found.name} {found.version}{hooks}: {found.description}".rstrip(": "))
        for tool in found.tools:
            limit = tool.timeout_s
            timeout = "no timeout" if limit is None else f"timeout {seconds_text(limit)}s"
            breaker = "" if tool.circuit is None else f", breaker after {tool.circuit.failures}"
            lines.append(f"  {tool.name} [{tool.mode}, {timeout}{breaker}] {tool.description}")
    for failed in failures(registry):
        lines.append(f"FAILED {failed.source}: {failed.reason}")
    return "\n".join(lines) + "\n"
