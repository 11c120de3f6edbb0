"""The HTTP adapter's settings refuse values that would make it misbehave, when they are made."""

from __future__ import annotations

import math

import msgspec
import pytest

from jobwarden.transport import ServerSettings


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"max_body_bytes": 0}, "max_body_bytes must be >= 1, not 0"),
        ({"max_body_bytes": -1}, "max_body_bytes must be >= 1, not -1"),
        ({"max_wait_s": -1.0}, "max_wait_s must be a number >= 0, not -1.0"),
        ({"max_wait_s": math.nan}, "max_wait_s must be a number >= 0, not nan"),
        ({"ws_queue": 0}, "ws_queue must be >= 1, not 0"),
        ({"heartbeat_s": 0.0}, "heartbeat_s must be a number > 0, not 0.0"),
        ({"heartbeat_s": math.inf}, "heartbeat_s must be a number > 0, not inf"),
        ({"heartbeat_s": math.nan}, "heartbeat_s must be a number > 0, not nan"),
        ({"read_timeout_s": 0.0}, "read_timeout_s must be a number > 0, not 0.0"),
        ({"read_timeout_s": math.inf}, "read_timeout_s must be a number > 0, not inf"),
        ({"read_timeout_s": math.nan}, "read_timeout_s must be a number > 0, not nan"),
        (
            {"allowed_origins": ["https://App.example:443/"]},
            "allowed origin 'https://App.example:443/' is not as a browser sends it:"
            " give 'https://app.example'",
        ),
        ({"allowed_origins": ["https://app.example/path"]}, "is not an origin"),
    ],
)
def test_settings_that_would_break_the_adapter_are_refused(
    settings: dict[str, object], says: str
) -> None:
    """A body limit below one byte (aiohttp reads 0 as no limit), a negative or NaN wait, an
    empty websocket queue, a heartbeat that never or always beats, a read timeout that is never
    or always over, or an allowed origin no browser would send is a ValueError."""
    with pytest.raises(ValueError, match=says):
        msgspec.convert(settings, ServerSettings)


def test_the_defaults_and_the_edges_are_taken() -> None:
    """The defaults, a one-byte body limit and a zero max wait (no ?wait=) are valid."""
    assert ServerSettings().max_body_bytes == 1 << 20
    assert ServerSettings(max_body_bytes=1, max_wait_s=0.0).max_wait_s == 0.0
