"""What ``jobwarden tools`` prints: each loaded plugin's manifest, and each failure's reason."""

from __future__ import annotations

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


def render_json(registry: PluginRegistry) -> str:
    """The listing as one JSON document and a newline."""
    listing = Listing(plugins=[manifest(p) for p in registry.plugins()], failed=failures(registry))
    return msgspec.json.encode(listing).decode() + "\n"


def render_text(registry: PluginRegistry) -> str:
    """The listing for people: each plugin, its tools, then what failed to load."""
    lines: list[str] = []
    for plugin in registry.plugins():
        found = manifest(plugin)
        hooks = f" (hooks: {', '.join(found.hooks)})" if found.hooks else ""
        lines.append(f"{found.name} {found.version}{hooks}: {found.description}".rstrip(": "))
        for tool in found.tools:
            timeout = "no timeout" if tool.timeout_s is None else f"timeout {tool.timeout_s:g}s"
            breaker = "" if tool.circuit is None else f", breaker after {tool.circuit.failures}"
            lines.append(f"  {tool.name} [{tool.mode}, {timeout}{breaker}] {tool.description}")
    for failed in failures(registry):
        lines.append(f"FAILED {failed.source}: {failed.reason}")
    return "\n".join(lines) + "\n"
