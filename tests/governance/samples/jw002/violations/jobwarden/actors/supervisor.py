"""JW002 violation: an execution recorded outside the ToolRunner, for a call it never made."""


def skip(registry, job):
    registry.record_execution(job.tool, "cancelled", 0.0)  # expect: JW002
