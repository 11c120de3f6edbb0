"""A plugin's manifest: what it is and what its tools take and give, as data."""

from __future__ import annotations

from typing import Any

import msgspec

from jobwarden.plugins.circuit import CircuitPolicy
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.plugins.tool import Plugin, Tool


class ToolManifest(msgspec.Struct, frozen=True):
    """One tool: how it runs and its input and output JSON Schemas."""

    name: str
    description: str
    mode: str
    timeout_s: float | None
    total_timeout_s: float | None
    queue_timeout_s: float | None
    max_concurrency: int | None
    retry_on_interrupt: bool
    retry: RetryPolicy | None
    circuit: CircuitPolicy | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class PluginManifest(msgspec.Struct, frozen=True):
    """A plugin: name, version, description, its tools, and which hooks it has."""

    name: str
    version: str
    description: str
    tools: list[ToolManifest]
    hooks: list[str]


def tool_manifest(tool: Tool) -> ToolManifest:
    """The manifest entry of one tool."""
    return ToolManifest(
        name=tool.name,
        description=tool.description,
        mode=tool.mode,
        timeout_s=tool.timeout_s,
        total_timeout_s=tool.total_timeout_s,
        queue_timeout_s=tool.queue_timeout_s,
        max_concurrency=tool.max_concurrency,
        retry_on_interrupt=tool.retry_on_interrupt,
        retry=tool.retry,
        circuit=tool.circuit,
        input_schema=tool.input_schema(),
        output_schema=tool.output_schema(),
    )


def manifest(plugin: Plugin) -> PluginManifest:
    """The manifest of ``plugin``."""
    hooks = [
        kind
        for kind, hook in (("startup", plugin.startup_hook), ("shutdown", plugin.shutdown_hook))
        if hook is not None
    ]
    return PluginManifest(
        name=plugin.name,
        version=plugin.version,
        description=plugin.description,
        tools=[tool_manifest(t) for t in plugin.tools.values()],
        hooks=hooks,
    )
