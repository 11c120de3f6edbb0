"""The job state machine: the one transition table, and the check every change goes through."""

from __future__ import annotations

from enum import StrEnum

from jobwarden.errors import IllegalTransition


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once nothing can happen to the job any more."""
        return not TRANSITIONS[self]


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.TIMED_OUT,
            JobState.CANCELLED,
            JobState.QUEUED,  # a retry: the record's attempt goes up by one
        }
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
    JobState.CANCELLED: frozenset(),
}

TERMINAL_STATES = frozenset(state for state, targets in TRANSITIONS.items() if not targets)


def check_transition(current: JobState, target: JobState) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``current -> target``."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal job transition {current} -> {target}")
