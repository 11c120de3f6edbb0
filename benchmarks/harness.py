"""Shared benchmark plumbing: interleaved rounds, medians, percentiles, the table and JSON output.

Every benchmark measures jobwarden and its reference(s) in the same process, alternating their
order round by round (the machine is shared and noisy), and reports the median of each figure.
Benchmarks report; they never gate: the exit code is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, TypeVarTuple

import anyio
import msgspec

from jobwarden.logs import configure_logging

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

Figures = dict[str, float]
"""What one round of one candidate measured: figure name -> value."""


class Figure(msgspec.Struct, frozen=True):
    """One figure of one candidate over all rounds."""

    candidate: str
    name: str
    unit: str
    median: float
    samples: list[float]


class Verdict(msgspec.Struct, frozen=True):
    """One target: the value compared, the bound, and whether it held."""

    target: str
    value: float
    op: str
    bound: float
    passed: bool
    line: str


class Report(msgspec.Struct):
    """Everything a benchmark prints, in the shape ``--json`` emits."""

    benchmark: str
    params: dict[str, Any]
    figures: list[Figure] = msgspec.field(default_factory=list)
    verdicts: list[Verdict] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    def add(self, candidate: str, name: str, unit: str, samples: Sequence[float]) -> float:
        """Record a figure's samples; returns their median."""
        mid = statistics.median(samples)
        self.figures.append(Figure(candidate, name, unit, mid, list(samples)))
        return mid

    def check(self, target: str, line: str, value: float, op: str, bound: float, unit: str) -> bool:
        """Compare ``value`` with ``bound`` (``op`` is ``>=`` or ``<=``) and keep the verdict.

        ``line`` describes the measurement; the target (``bound`` + ``unit``, e.g. ``"x"`` or
        ``" ms"``) and PASS or MISS are appended to it.
        """
        passed = value >= bound if op == ">=" else value <= bound
        verdict = "PASS" if passed else "MISS"
        # The line rounds (0.4957 reads 0.50): the compared value is shown to four digits too.
        text = (
            f"{target}: {line} (target {op} {fmt(bound)}{unit}; compared {value:.4g}{unit})"
            f" {verdict}"
        )
        self.verdicts.append(Verdict(target, value, op, bound, passed, text))
        return passed

    def note(self, text: str) -> None:
        """A line printed under the table (context needed to read the figures honestly)."""
        self.notes.append(text)


class GcPauses:
    """Seconds spent in the cyclic garbage collector while the ``with`` block runs.

    ``full_seconds`` and ``full`` are the part spent in (and the number of) full collections,
    which walk every tracked object; the rest went to collections of the young generations.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self.full_seconds = 0.0
        self.full = 0
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            paused = time.perf_counter() - self._began
            self.seconds += paused
            self.collections += 1
            if info["generation"] == 2:
                self.full_seconds += paused
                self.full += 1

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)


def parser(description: str, *, rounds: int = 5, uvloop: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds ({rounds})")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    if uvloop:
        p.add_argument("--uvloop", action="store_true", help="asyncio on uvloop for every figure")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the shared options; silence logs below ERROR.

    A benchmark checks every job's outcome itself and stops on the first one that went wrong,
    so per-job warnings (a traceback each) would only flood the terminal and skew the timing.
    """
    configure_logging("json", logging.ERROR)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if getattr(args, "uvloop", False) and args.backend != "asyncio":
        p.error("--uvloop needs --backend asyncio")
    return args


def run(
    func: Callable[[*Ts], Awaitable[T]],
    *args: *Ts,
    backend: str = "asyncio",
    uvloop: bool = False,
) -> T:
    """Run ``func(*args)`` in a fresh event loop of the given backend, after a full collection."""
    gc.collect()
    options: dict[str, Any] = {"use_uvloop": True} if uvloop else {}
    return anyio.run(func, *args, backend=backend, backend_options=options)


def interleave(
    candidates: Mapping[str, Callable[[], Figures]],
    rounds: int,
    *,
    quiet: bool = False,
    warmup: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Run every candidate once per round, reversing the order every other round.

    ``warmup`` callables (typically the candidates at a small size) run once first, unrecorded,
    so the first round does not pay for first-time costs. Returns candidate -> figure name ->
    one sample per round. Progress goes to stderr.
    """
    for name, func in (warmup or {}).items():
        if not quiet:
            print(f"  warm-up {name}", file=sys.stderr, flush=True)
        func()
    names = list(candidates)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            figures = candidates[name]()
            for key, value in figures.items():
                samples[name].setdefault(key, []).append(value)
            if not quiet:
                shown = ", ".join(f"{k} {fmt(v)}" for k, v in figures.items())
                print(f"  round {index + 1}/{rounds} {name}: {shown}", file=sys.stderr, flush=True)
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1])."""
    if not values:
        raise ValueError("percentile of nothing")
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def fmt(value: float) -> str:
    """A figure for people: thousands separators for big ones, three significant digits else."""
    if value != value or math.isinf(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def emit(report: Report, *, as_json: bool) -> None:
    """Print the report: an aligned table, notes and verdicts, or JSON."""
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report)).decode() + "\n")
        return
    params = "  ".join(f"{k}={v}" for k, v in report.params.items())
    print(f"== {report.benchmark}  ({params})")
    rows = [("candidate", "figure", "median", "min", "max", "unit")]
    for f in report.figures:
        lo, hi = min(f.samples), max(f.samples)
        rows.append((f.candidate, f.name, fmt(f.median), fmt(lo), fmt(hi), f.unit))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {2, 3, 4}
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
    for text in report.notes:
        print(f"note: {text}")
    for verdict in report.verdicts:
        print(verdict.line)
