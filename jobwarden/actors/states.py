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

    terminal: bool
    """True once nothing can happen to the job any more (set on each member below)."""


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

# ``terminal`` is a plain attribute of each member rather than a property: the job path reads it
# several times per job, and a property is a Python call each time (an attribute: a dict lookup).
for _state in JobState:
    _state.terminal = not TRANSITIONS[_state]

# The members as module constants, for the job path: on Python 3.11 an attribute of an Enum
# class (``JobState.QUEUED``) is looked up through ``EnumType.__getattr__``'s slot, a Python-level
# hook that costs about ten times a global name.
QUEUED = JobState.QUEUED
RUNNING = JobState.RUNNING
SUCCEEDED = JobState.SUCCEEDED
CANCELLED = JobState.CANCELLED


def check_transition(current: JobState, target: JobState) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``current -> target``."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal job transition {current} -> {target}")
