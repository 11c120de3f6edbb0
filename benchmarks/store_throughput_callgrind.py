"""Store throughput counted in instructions: store_throughput's (a) runs under callgrind.

Timings on two shared cores move by tens of percent from run to run (the memory store's figure
most: its run holds every job and event at once); instruction counts do not. Each store runs
``store_throughput.run_jobs`` (64 submitters of ``builtin.echo``, every job and event checked) in
its own process under ``valgrind --tool=callgrind --trace-children=yes``, at two sizes, and the
figure is the difference divided by the difference in jobs: the instructions each further job
costs, the process's start, imports and schema creation left out. For the SQLite store the writer
process is traced too (so it runs as slowed down as the event loop, as on the host it runs beside
it at full speed) and counted apart. User space only: system calls and the kernel's work (the
pipe, the WAL writes and ``fsync``) are not counted. Not a target: the repeatable figure behind
store_throughput's.

    .venv/bin/python -m benchmarks.store_throughput_callgrind [--jobs 3000] [--base 1000]
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness, store_throughput
from benchmarks.http_submit_callgrind import total_instructions
from jobwarden.logs import configure_logging

DESCRIPTION = "store_throughput's (a) runs under callgrind: instructions per job, loop and writer."
KINDS = ("memory", store_throughput.TARGET_STORE)
WRITER = "sqlite_child.py"  # in the command line of the SQLite store's writer process


def run_once(kind: str, jobs: int) -> None:
    """In the traced process: one ``run_jobs`` of ``jobs`` jobs on a new store of ``kind``."""
    configure_logging("json", logging.ERROR)  # as when timed: see ``harness.parse``
    store_throughput.measure(
        kind, jobs, store_throughput.SUBMITTERS, backend="asyncio", uvloop=False
    )


def traced(kind: str, jobs: int, folder: Path) -> tuple[int, int]:
    """Instructions of the event loop's process and of the writer process (0 without one)."""
    prefix = folder / f"{kind.replace(' ', '_')}-{jobs}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={prefix}.%p.out",
        f"--log-file={prefix}.%p.log",  # valgrind's own lines: stderr keeps Python's
        sys.executable,
        "-m",
        "benchmarks.store_throughput_callgrind",
        "--run",
        kind,
        str(jobs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}, {jobs} jobs, under callgrind failed:\n{done.stderr[-2000:]}")
    loop = writer = 0
    for out in prefix.parent.glob(f"{prefix.name}.*.out"):
        with out.open() as lines:  # the command is in the header: no need to read it all twice
            header = [next(lines, "") for _ in range(20)]
        is_writer = any(line.startswith("cmd:") and WRITER in line for line in header)
        if is_writer:
            writer += total_instructions(out)
        else:
            loop += total_instructions(out)
    return loop, writer


def main(argv: Sequence[str] | None = None) -> None:
    """Count each store at both sizes once (three runs agreed to within 2%)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--run"]:
        run_once(args[1], int(args[2]))
        return
    p = harness.parser(DESCRIPTION, rounds=1, uvloop=False)
    p.add_argument("--jobs", type=int, default=3_000, help="jobs of the larger run (3000)")
    p.add_argument("--base", type=int, default=1_000, help="jobs of the smaller run (1000)")
    parsed = harness.parse(p, args)
    if parsed.backend != "asyncio":
        p.error(
            "counted on asyncio, as store_throughput's target is: --backend trio does not apply"
        )
    if not store_throughput.SUBMITTERS <= parsed.base < parsed.jobs:
        p.error(f"need {store_throughput.SUBMITTERS} <= --base < --jobs")
    if shutil.which("valgrind") is None:
        print("store_throughput_callgrind: valgrind is not installed; skipping this benchmark")
        return
    jobs: int = parsed.jobs
    base: int = parsed.base
    report = harness.Report(
        "store_throughput_callgrind",
        {"rounds": parsed.rounds, "jobs": jobs, "base": base, "loop": "asyncio"},
    )
    loop_per_job: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="jobwarden-callgrind-") as tmp:
        for kind in KINDS:
            loops, writers = [], []
            for _ in range(parsed.rounds):
                small = traced(kind, base, Path(tmp))
                large = traced(kind, jobs, Path(tmp))
                loops.append((large[0] - small[0]) / (jobs - base))
                writers.append((large[1] - small[1]) / (jobs - base))
                for written in Path(tmp).iterdir():
                    written.unlink()
                if not parsed.json:
                    print(f"  {kind}: {harness.fmt(loops[-1])} instructions/job", flush=True)
            name = f"{kind}, {store_throughput.SUBMITTERS} submitters"
            loop_per_job[kind] = report.add(name, "event loop's process", "instructions/job", loops)
            if any(writers):
                report.add(name, "writer process", "instructions/job", writers)
    memory, sqlite = loop_per_job["memory"], loop_per_job[store_throughput.TARGET_STORE]
    report.note(
        f"per job: the difference between runs of {jobs} and {base} jobs over {jobs - base};"
        " user-space instructions only (no system calls, no kernel work)"
    )
    report.note(
        f"memory / sqlite event-loop instructions = {memory / sqlite:.2f}: store_throughput's"
        " ratio if both loops ran as many instructions per second and the SQLite store's loop"
        " were never idle (it waits on commits about a tenth of the time there)"
    )
    harness.emit(report, as_json=parsed.json)


if __name__ == "__main__":
    main()
