"""jobwarden: supervised plugin execution.

Every tool call is a job actor with a state machine; a supervisor runs it in a ToolRunner that
validates, enforces timeouts, honours cancellation, wraps failures in error envelopes and keeps
per-tool metrics. Lifecycle events stream to subscribers as CloudEvents.
"""

from typing import TYPE_CHECKING, Any

from jobwarden import errors
from jobwarden.actors.recovery import Recovered
from jobwarden.actors.retention import Retention
from jobwarden.actors.states import JobState
from jobwarden.actors.subscription import Subscription
from jobwarden.actors.supervisor import Supervisor, SupervisorStatistics
from jobwarden.errors import ErrorInfo
from jobwarden.plugins.builtin import builtin
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.metrics import ToolMetrics
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry, PluginStatus
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.plugins.tool import Plugin, Tool
from jobwarden.records import EventData, JobEvent, JobRecord, StreamEvent, StreamReset
from jobwarden.store.base import JobPage, JobQuery, JobStore
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from jobwarden.store.redis import RedisStore

__version__ = "0.1.0"

__all__ = [
    "ErrorInfo",
    "EventData",
    "JobEvent",
    "JobPage",
    "JobQuery",
    "JobRecord",
    "JobState",
    "JobStore",
    "MemoryStore",
    "Plugin",
    "PluginLifecycle",
    "PluginRegistry",
    "PluginStatus",
    "Recovered",
    "RedisStore",
    "Retention",
    "RetryPolicy",
    "SqliteStore",
    "StreamEvent",
    "StreamReset",
    "Subscription",
    "Supervisor",
    "SupervisorStatistics",
    "Tool",
    "ToolContext",
    "ToolMetrics",
    "__version__",
    "builtin",
    "errors",
]


def __getattr__(name: str) -> Any:
    # RedisStore is imported on first use: redis-py is an optional extra, and an import of
    # jobwarden must work (and stay quick) without it.
    if name == "RedisStore":
        try:
            from jobwarden.store.redis import RedisStore
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "redis":
                raise
            raise ImportError(
                f"RedisStore needs the redis extra: pip install 'jobwarden[redis]' ({exc})",
                name=name,
            ) from exc
        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
