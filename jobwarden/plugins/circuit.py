"""The per-tool circuit breaker: closed, open after repeated failures, half-open for one trial.

A tool with a ``CircuitPolicy`` trips after ``failures`` consecutive failed executions, all
within ``window_s`` seconds; it then refuses work for ``cooldown_s`` seconds (open). After the
cool-down the next submit is let through as the one trial (half-open): its success closes the
circuit, its failure opens it again for another cool-down. A cancelled or interrupted call says
nothing about the tool's health, so it neither counts as a failure nor resets the count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from jobwarden.errors import OutcomeType

# What the tool did wrong; cancelled and interrupted calls are someone else's doing.
FAILURES = frozenset(
    {
        OutcomeType.PLUGIN_ERROR,
        OutcomeType.INVALID_OUTPUT,
        OutcomeType.TIMEOUT,
        OutcomeType.CRASHED,
        OutcomeType.RESOURCE_EXHAUSTED,
    }
)

Clock = Callable[[], float]


class CircuitState(StrEnum):
    """Whether a tool takes work: closed (yes), open (no), half_open (one trial)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitPolicy(msgspec.Struct, frozen=True):
    """When a tool's circuit opens (``failures`` within ``window_s``) and for how long."""

    failures: int
    window_s: float
    cooldown_s: float

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("circuit failures must be >= 1")
        if not (self.window_s > 0 and self.cooldown_s > 0):
            raise ValueError("circuit window_s and cooldown_s must be > 0 seconds")


class CircuitStatus(msgspec.Struct, frozen=True):
    """One tool's circuit as health and metrics report it."""

    tool: str
    state: CircuitState
    reason: str | None
    open_until: datetime | None
    consecutive_failures: int
    policy: CircuitPolicy


class Circuit:
    """The breaker of one tool; the registry feeds it every outcome and asks it at submit."""

    __slots__ = (
        "_clock",
        "_failures",
        "_open_until",
        "_reason",
        "_trial_job",
        "_trial_until",
        "policy",
        "tool",
    )

    def __init__(self, tool: str, policy: CircuitPolicy, clock: Clock) -> None:
        self.tool = tool
        self.policy = policy
        self._clock = clock
        self._failures: deque[float] = deque()
        self._open_until: float | None = None
        self._reason: str | None = None
        # While half-open: until when the trial let through holds the one slot. A trial that
        # never runs (cancelled while queued) records no outcome, so its hold expires after a
        # cool-down and the next submit becomes the trial.
        self._trial_until: float | None = None
        self._trial_job: str | None = None

    @property
    def state(self) -> CircuitState:
        """The state right now: an open circuit past its cool-down is half-open."""
        if self._open_until is None:
            return CircuitState.CLOSED
        if self._clock() < self._open_until:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def admit(self, job_id: str | None = None) -> str | None:
        """Let a call through (None), or say why it is refused while the circuit is open.

        ``job_id`` names the job let through, so that ``release`` can give its trial back.
        """
        until = self._open_until
        if until is None:
            return None
        now = self._clock()
        if now < until:
            return f"{self._reason}; refusing calls until {_datetime(until).isoformat()}"
        if self._trial_until is None or now >= self._trial_until:
            self._trial_until = now + self.policy.cooldown_s
            self._trial_job = job_id
            return None
        return f"{self._reason}; a trial call is deciding whether it closes"

    def release(self, job_id: str) -> None:
        """The job ``admit`` let through will not run (its idempotency key named an earlier job,
        or it was not stored): if it held the trial, the next submit becomes the trial."""
        if self._trial_job == job_id and self._trial_until is not None:
            self._trial_until = self._trial_job = None

    def succeeded(self) -> None:
        """A call succeeded: the tool works, the circuit closes."""
        self._failures.clear()
        self._open_until = self._trial_until = self._reason = self._trial_job = None

    def failed(self, outcome: str) -> None:
        """A call ended with error type ``outcome``; a failure of the tool may open the circuit."""
        if outcome not in FAILURES:
            return
        now = self._clock()
        if self.state is CircuitState.HALF_OPEN:
            self._open(now, f"the trial call failed ({outcome})")
            return
        failures = self._failures
        failures.append(now)
        while failures[0] <= now - self.policy.window_s:
            failures.popleft()
        if len(failures) >= self.policy.failures and self._open_until is None:
            self._open(
                now,
                f"{len(failures)} consecutive failures within {self.policy.window_s:g}s"
                f" (last: {outcome})",
            )

    def status(self) -> CircuitStatus:
        """A snapshot for health and metrics."""
        state = self.state
        return CircuitStatus(
            tool=self.tool,
            state=state,
            reason=None if state is CircuitState.CLOSED else self._reason,
            open_until=None if self._open_until is None else _datetime(self._open_until),
            consecutive_failures=len(self._failures),
            policy=self.policy,
        )

    def _open(self, now: float, reason: str) -> None:
        self._open_until = now + self.policy.cooldown_s
        self._trial_until = self._trial_job = None
        self._reason = f"circuit open: {reason}"


def _datetime(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
