"""JW004 clean: lifecycle states and execution outcomes kept apart."""

import enum


class PluginLifecycle(enum.StrEnum):
    LOADED = "loaded"
    INITIALIZED = "initialized"
    RUNNING = "running"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"

    def describe(self):
        status = "ok"
        return status


def mark(plugin, registry, job, metrics):
    plugin.lifecycle = "failed"
    job.state = "succeeded"
    metrics.outcome = "error"
    registry.set_lifecycle(plugin, state="unavailable", reason="error")
    return {"status": "ok", "lifecycle": plugin.lifecycle}
