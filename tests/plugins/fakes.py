"""Fakes shared by the plugin tests."""

from __future__ import annotations

from jobwarden.plugins.context import ToolContext


class ProgressSink:
    """Records every progress report a tool makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str | None]] = []

    async def __call__(self, fraction: float, message: str | None) -> None:
        self.calls.append((fraction, message))


def make_context(
    sink: ProgressSink, *, job_id: str = "job-1", tool: str = "demo.echo", attempt: int = 1
) -> ToolContext:
    """A ToolContext whose progress reports land in ``sink``."""
    return ToolContext(job_id=job_id, tool=tool, attempt=attempt, progress=sink)
