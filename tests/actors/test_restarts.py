"""Restart intensity: at most ``max_restarts`` within ``window_s`` seconds, OTP style."""

from __future__ import annotations

import math

import pytest

from jobwarden.actors import restarts
from jobwarden.actors.restarts import RestartIntensity
from jobwarden.errors import SupervisorCrashed


class FakeClock:
    """Stands in for the ``time`` module inside restarts.py: a monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock installed as restarts.py's ``time``."""
    fake = FakeClock()
    monkeypatch.setattr(restarts, "time", fake)
    return fake


def test_allows_max_restarts_within_the_window(clock: FakeClock) -> None:
    """Exactly ``max_restarts`` restarts inside the window are allowed and counted."""
    intensity = RestartIntensity(3, 10.0)
    for _ in range(3):
        intensity.record(RuntimeError("crash"))
        clock.now += 1.0
    assert intensity.total == 3


def test_one_more_restart_raises_supervisor_crashed(clock: FakeClock) -> None:
    """One restart more than allowed in the window raises SupervisorCrashed from its cause."""
    intensity = RestartIntensity(2, 10.0)
    intensity.record(RuntimeError("first"))
    intensity.record(RuntimeError("second"))
    cause = ValueError("third")
    with pytest.raises(SupervisorCrashed) as info:
        intensity.record(cause)
    assert info.value.__cause__ is cause
    message = str(info.value)
    assert "3 runner crashes" in message
    assert "limit 2" in message
    assert "ValueError: third" in message
    assert intensity.total == 3


def test_zero_max_restarts_fails_on_the_first(clock: FakeClock) -> None:
    """With max_restarts=0 the very first restart raises."""
    intensity = RestartIntensity(0, 5.0)
    with pytest.raises(SupervisorCrashed):
        intensity.record(RuntimeError("boom"))


def test_restarts_older_than_the_window_are_forgotten(clock: FakeClock) -> None:
    """Restarts that fell out of the window no longer count towards the limit."""
    intensity = RestartIntensity(2, 10.0)
    intensity.record(RuntimeError("1"))
    intensity.record(RuntimeError("2"))
    clock.now += 10.5
    intensity.record(RuntimeError("3"))
    intensity.record(RuntimeError("4"))
    assert intensity.total == 4
    with pytest.raises(SupervisorCrashed):
        intensity.record(RuntimeError("5"))


def test_window_slides_one_restart_at_a_time(clock: FakeClock) -> None:
    """Only the restarts older than the window are dropped; recent ones still count."""
    intensity = RestartIntensity(2, 10.0)
    intensity.record(RuntimeError("at 0"))
    clock.now += 6.0
    intensity.record(RuntimeError("at 6"))
    clock.now += 6.0  # t=12: the restart at 0 is gone, the one at 6 is not
    intensity.record(RuntimeError("at 12"))
    clock.now += 1.0  # t=13: restarts at 6 and 12 are inside the window
    with pytest.raises(SupervisorCrashed, match="3 runner crashes"):
        intensity.record(RuntimeError("at 13"))


def test_restart_exactly_window_old_still_counts(clock: FakeClock) -> None:
    """A restart exactly ``window_s`` seconds old is still inside the window."""
    intensity = RestartIntensity(1, 10.0)
    intensity.record(RuntimeError("at 0"))
    clock.now += 10.0
    with pytest.raises(SupervisorCrashed):
        intensity.record(RuntimeError("at 10"))


@pytest.mark.parametrize(
    ("max_restarts", "window_s"),
    [(-1, 10.0), (3, 0.0), (3, -1.0), (3, math.nan)],
)
def test_invalid_settings_raise_value_error(max_restarts: int, window_s: float) -> None:
    """Negative max_restarts and a window that is not a positive number are refused."""
    with pytest.raises(ValueError, match="window_s"):
        RestartIntensity(max_restarts, window_s)


def test_settings_are_kept() -> None:
    """The limits are readable back and the total starts at zero."""
    intensity = RestartIntensity(5, 60.0)
    assert (intensity.max_restarts, intensity.window_s, intensity.total) == (5, 60.0, 0)
