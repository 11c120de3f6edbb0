"""Job records and event logs behind one async protocol."""

from jobwarden.store.base import EventBounds, JobPage, JobQuery, JobStore
from jobwarden.store.memory import MemoryStore

__all__ = ["EventBounds", "JobPage", "JobQuery", "JobStore", "MemoryStore"]
