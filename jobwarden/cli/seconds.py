"""``Seconds``: the parameter type of every option that takes a number of seconds."""

from __future__ import annotations

import math
from typing import Any

import click


class Seconds(click.FloatRange):
    """A finite number of seconds within the range given.

    ``FloatRange`` alone admits NaN, which every comparison with its bounds lets through, and
    infinity when it has no upper bound: the server would drop the one (JSON has no NaN, so it
    is sent as null) and never reach the other.
    """

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """``value`` as seconds, or a usage error naming the option."""
        seconds: float = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value} is not a number of seconds", param, ctx)
        return seconds
