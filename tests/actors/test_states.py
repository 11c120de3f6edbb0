"""The job state machine: the one transition table, checked pair by pair."""

from __future__ import annotations

import itertools

import pytest

from jobwarden import errors
from jobwarden.actors.states import TERMINAL_STATES, TRANSITIONS, JobState, check_transition

Q, R = JobState.QUEUED, JobState.RUNNING
S, F, T, C = JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED

# Written out from DESIGN.md, independently of the table under test.
ALLOWED: frozenset[tuple[JobState, JobState]] = frozenset(
    {(Q, R), (Q, C), (R, S), (R, F), (R, T), (R, C), (R, Q)}
)
ALL_PAIRS = list(itertools.product(JobState, repeat=2))


def test_state_values_are_the_documented_names() -> None:
    """JobState has exactly the six documented states with their wire names."""
    assert [s.value for s in JobState] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "cancelled",
    ]


def test_every_pair_is_covered() -> None:
    """The parametrised pairs below really are all 36 (current, target) combinations."""
    assert len(ALL_PAIRS) == len(JobState) ** 2 == 36
    assert set(ALL_PAIRS) >= ALLOWED


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition_passes(current: JobState, target: JobState) -> None:
    """A transition DESIGN.md lists is accepted without raising."""
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [pair for pair in ALL_PAIRS if pair not in ALLOWED])
def test_illegal_transition_raises(current: JobState, target: JobState) -> None:
    """Every transition DESIGN.md does not list raises IllegalTransition naming both states."""
    with pytest.raises(errors.IllegalTransition) as info:
        check_transition(current, target)
    assert str(current) in str(info.value)
    assert str(target) in str(info.value)


def test_table_matches_design_exactly() -> None:
    """The TRANSITIONS table holds exactly the documented pairs and has a row for every state."""
    assert set(TRANSITIONS) == set(JobState)
    table = {(cur, tgt) for cur, targets in TRANSITIONS.items() for tgt in targets}
    assert table == ALLOWED


def test_illegal_transition_is_a_runtime_error() -> None:
    """IllegalTransition is a bug signal: a JobwardenError and a RuntimeError."""
    with pytest.raises(RuntimeError):
        check_transition(S, R)
    assert issubclass(errors.IllegalTransition, errors.JobwardenError)


@pytest.mark.parametrize("state", list(JobState))
def test_terminal_property(state: JobState) -> None:
    """`terminal` is true exactly for succeeded, failed, timed_out and cancelled."""
    assert state.terminal is (state in {S, F, T, C})


def test_terminal_states_constant() -> None:
    """TERMINAL_STATES is exactly the four terminal states, and a frozenset."""
    assert frozenset({S, F, T, C}) == TERMINAL_STATES
    assert isinstance(TERMINAL_STATES, frozenset)


def test_no_self_transitions() -> None:
    """No state may transition to itself: every change is a real change."""
    for state in JobState:
        with pytest.raises(errors.IllegalTransition):
            check_transition(state, state)
