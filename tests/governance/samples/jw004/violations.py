"""JW004 violations: execution outcomes used as plugin lifecycle states."""

import enum


class PluginLifecycle(enum.StrEnum):
    LOADED = "loaded"
    OK = "ok"  # expect: JW004
    FAILED = "failed"
    broken = "error"  # expect: JW004


class LifecycleState(enum.Enum):
    SUCCESS = enum.auto()  # expect: JW004
    FAILED = enum.auto()


def mark(plugin, registry, set_lifecycle):
    plugin.lifecycle = "errored"  # expect: JW004
    lifecycle_state: str = "Success"  # expect: JW004
    registry.set_lifecycle("demo", state="failure")  # expect: JW004
    registry.set_lifecycle(plugin, lifecycle="succeeded")  # expect: JW004
    set_lifecycle(plugin, "error")  # expect: JW004
    return PluginHealth(lifecycle="ok" if plugin.up else "failed")  # expect: JW004


PluginHealth = dict
