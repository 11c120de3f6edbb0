"""``Seconds``: the parameter type of every option that takes a number of seconds."""

from __future__ import annotations

import math
from typing import Any

import click

from jobwarden.plugins.listing import seconds_text


class Seconds(click.FloatRange):
    """A finite number of seconds within the range given.

    ``FloatRange`` alone admits NaN, which every comparison with its bounds lets through, and
    infinity when it has no upper bound: the server would drop the one (JSON has no NaN, so it
    is sent as null) and never reach the other.
    """

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """``value`` as seconds, or a usage error naming the option and the value as typed."""
        seconds: float = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value} is not a number of seconds", param, ctx)
        try:
            in_range: float = super().convert(seconds, param, ctx)
        except click.BadParameter:
            # click's message shows the parsed float: "-1.0" for the "-1" typed.
            typed = value.strip() if isinstance(value, str) else seconds_text(seconds)
            self.fail(f"{typed} is not in the range {self._describe_range()}.", param, ctx)
        return in_range

    def _describe_range(self) -> str:
        """The range as --help shows it, bounds as written: ``0<x<=86400``, not ``86400.0``
        (click's own prints the floats the bounds are)."""
        rop = "<" if self.max_open else "<="
        if self.min is not None and self.max is not None:
            lop = "<" if self.min_open else "<="
            return f"{seconds_text(self.min)}{lop}x{rop}{seconds_text(self.max)}"
        if self.min is not None:
            return f"x{'>' if self.min_open else '>='}{seconds_text(self.min)}"
        return "" if self.max is None else f"x{rop}{seconds_text(self.max)}"
