"""Process mode with real worker processes: every misbehaviour fails only its own job."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from jobwarden import JobEvent, JobRecord, JobState, Supervisor
from jobwarden.actors.process_pool import ProcessPoolStatistics
from jobwarden.errors import OutcomeType
from tests.process_fakes import crowd_line, procs

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # generous: only turns a hang into a failure


async def wait_running(sup: Supervisor, job_id: str) -> None:
    """Return once the job's running event was published."""
    async with sup.subscribe(job_id=job_id) as events:
        async for event in events:
            if isinstance(event, JobEvent) and event.type == "jobwarden.job.running":
                return


async def run_one(sup: Supervisor, tool: str, payload: dict[str, Any]) -> JobRecord:
    rec = await sup.submit(tool, payload)
    return await sup.wait(rec.id, timeout=HANG_GUARD_S)


async def test_process_tool_succeeds_in_a_reused_worker() -> None:
    """Sequential calls of a process tool succeed with their results and share one worker."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            for n in range(3):
                done = await run_one(sup, "procs.square", {"n": n})
                assert done.state is JobState.SUCCEEDED
                assert done.result == {"n": n * n}
            assert sup.processes.statistics() == ProcessPoolStatistics(size=2, idle=1, started=1)
            metrics = sup.registry.metrics("procs.square")
            assert (metrics.calls, metrics.successes, metrics.in_flight) == (3, 3, 0)


async def test_what_a_process_tool_logs_is_logged_by_the_server_with_the_job() -> None:
    """Lines a process tool logs (ctx.log, structlog, stdlib logging) reach the server's log
    with their level, fields and job; lines below INFO stay in the worker."""
    with anyio.fail_after(HANG_GUARD_S), capture_logs() as logs:
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.logs", {"n": 3})
    assert done.state is JobState.SUCCEEDED
    tool = [entry for entry in logs if entry["event"].startswith("through")]
    assert [(e["event"], e["log_level"]) for e in tool] == [
        ("through ctx.log", "info"),
        ("through structlog", "warning"),
        ("through logging, n=3", "error"),
    ]
    assert all(e["job_id"] == done.id and e["tool"] == "procs.logs" for e in tool)
    assert all(e["attempt"] == 1 for e in tool)
    assert tool[0]["n"] == 3
    assert tool[0]["thing"].startswith("<object object at ")
    assert tool[2]["logger"] == "user.std"
    assert not [entry for entry in logs if entry["event"] == "too fine to send"]


async def test_threads_of_a_process_tool_send_large_messages_concurrently_intact() -> None:
    """Large progress reports and log lines sent at once from several threads of a process
    tool all reach the server whole, and the job succeeds in its worker."""
    threads, per, size = 4, 25, 20_000
    expected = sorted(crowd_line(t, i, size) for t in range(threads) for i in range(per))
    with anyio.fail_after(HANG_GUARD_S), capture_logs() as logs:
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.crowd", {"threads": threads, "per": per, "size": size})
            async with sup.subscribe(job_id=done.id) as events:
                progress = [
                    event.data.message
                    async for event in events
                    if isinstance(event, JobEvent) and event.type == "jobwarden.job.progress"
                ]
            started = sup.processes.statistics().started
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"n": threads}
    assert sorted(m for m in progress if m is not None) == expected
    assert sorted(e["text"] for e in logs if e["event"] == "crowd structlog") == expected
    stdlib = sorted(e["event"] for e in logs if e["event"].startswith("crowd stdlib "))
    assert stdlib == [f"crowd stdlib {line}" for line in expected]
    assert started == 1


async def test_raising_process_tool_fails_with_plugin_error() -> None:
    """An exception in the worker fails the job with plugin_error naming the exception."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.raises", {"n": 3})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.PLUGIN_ERROR
            assert done.error.message == "ValueError: bad n 3"
            assert done.error.details == {"exception": "builtins.ValueError"}
            assert sup.registry.metrics("procs.raises").failures_by_type == {"plugin_error": 1}
            assert sup.processes.statistics().started == 1


@pytest.mark.parametrize("tool", ["procs.wrong_type", "procs.unencodable"])
async def test_wrong_output_of_a_process_tool_is_invalid_output(tool: str) -> None:
    """A worker's result that does not fit the return type fails the job with invalid_output."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, tool, {})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.INVALID_OUTPUT
            assert sup.registry.metrics(tool).failures_by_type == {"invalid_output": 1}


async def test_a_dict_for_a_struct_return_type_is_invalid_output_as_in_other_modes() -> None:
    """A process tool returning a dict of its Struct return type's shape fails invalid_output
    naming both types, as an async or thread tool does."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.as_dict", {"n": 2})
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert done.error.message == (
        "procs.as_dict returned a value that does not match its return type:"
        " Expected `NumberOut`, got `dict`"
    )


@pytest.mark.parametrize(
    ("n", "says"),
    [
        (0, "it holds a string that is not valid Unicode (surrogates not allowed)"),
        (1, "it is nested too deeply for JSON, or holds itself"),
        (2, "it is nested too deeply for JSON, or holds itself"),
    ],
    ids=["surrogate", "deep", "cycle"],
)
async def test_a_process_result_nothing_can_encode_is_invalid_output_in_the_same_worker(
    n: int, says: str
) -> None:
    """A worker's result holding a lone surrogate, nested too deeply or holding itself is
    invalid_output saying why, as in the other modes, and the worker serves the next call (it
    died: the job was "crashed" and a new worker spawned)."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.no_json", {"n": n})
            after = await run_one(sup, "procs.square", {"n": 3})
            started = sup.processes.statistics().started
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert done.error.message.endswith(says)
    assert after.result == {"n": 9}
    assert started == 1


async def test_a_process_result_past_64_bits_comes_back_whole() -> None:
    """An int past 64 bits returned by a process tool is its result, as in the other modes (it
    crosses back as a pickle: MessagePack cannot carry it), and the worker serves the next call;
    before, the job failed invalid_output."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.huge", {})
            after = await run_one(sup, "procs.square", {"n": 3})
            started = sup.processes.statistics().started
    assert done.state is JobState.SUCCEEDED
    assert done.result == 2**70
    assert after.result == {"n": 9}
    assert started == 1


@pytest.mark.parametrize("n", [2**70, -(2**70), 2**64 - 1])
async def test_an_input_int_of_any_size_reaches_a_process_tool(n: int) -> None:
    """A valid input holding an int past 64 bits (or at their edge) reaches a process tool."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.digits", {"n": n})
            assert sup.processes.statistics().started == 1
    assert done.state is JobState.SUCCEEDED
    assert done.result == str(n)


async def test_timeout_kills_the_worker_and_the_pool_replaces_it() -> None:
    """A busy loop past its timeout ends timed_out, and the next call gets a fresh worker."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.spin", {})
            assert done.state is JobState.TIMED_OUT
            assert done.error is not None
            assert done.error.type == OutcomeType.TIMEOUT
            assert (await run_one(sup, "procs.square", {"n": 2})).result == {"n": 4}
            assert sup.processes.statistics().started == 2
            metrics = sup.registry.metrics("procs.spin")
            assert (metrics.timeouts, metrics.errors, metrics.in_flight) == (1, 0, 0)


async def test_cancel_of_a_running_process_job_kills_its_worker() -> None:
    """Cancelling a running process job ends it cancelled at once and the worker is replaced."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            rec = await sup.submit("procs.spin", {}, timeout_s=3600)
            await wait_running(sup, rec.id)
            cancelled = await sup.cancel(rec.id)
            assert cancelled.state is JobState.CANCELLED
            assert (await run_one(sup, "procs.square", {"n": 3})).result == {"n": 9}
            assert sup.processes.statistics().started == 2
            assert sup.registry.metrics("procs.spin").cancellations == 1


async def test_a_process_tools_error_text_with_a_lone_surrogate_arrives_escaped() -> None:
    """An exception whose text a worker cannot send as is (a lone surrogate) still fails the
    job as plugin_error, its text escaped; the worker lives on."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.names_a_bad_file", {"n": 1})
            assert done.error is not None
            assert (done.state, done.error.type) == (JobState.FAILED, OutcomeType.PLUGIN_ERROR)
            assert done.error.message == "FileNotFoundError: caf\\udcff"
            assert (await run_one(sup, "procs.square", {"n": 4})).result == {"n": 16}
            assert sup.processes.statistics().started == 1


async def test_a_process_tools_exception_class_with_a_lone_surrogate_is_named_escaped() -> None:
    """An exception whose class's module name holds a lone surrogate fails the job as
    plugin_error naming the class escaped, and the worker lives on."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.raises_oddly", {})
            assert done.error is not None
            assert (done.state, done.error.type) == (JobState.FAILED, OutcomeType.PLUGIN_ERROR)
            assert done.error.message == "Oddly: odd"
            assert done.error.details == {"exception": "plugins.caf\\udcff.Oddly"}
            assert (await run_one(sup, "procs.square", {"n": 4})).result == {"n": 16}
            assert sup.processes.statistics().started == 1


async def test_a_process_tool_calling_sys_exit_fails_with_plugin_error() -> None:
    """sys.exit() in a process tool fails its job as plugin_error naming SystemExit; the worker
    lives on and takes the next call."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.leaves", {"n": 3})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.PLUGIN_ERROR
            assert done.error.message == "SystemExit: 3"
            assert done.error.details == {"exception": "builtins.SystemExit"}
            assert (await run_one(sup, "procs.square", {"n": 4})).result == {"n": 16}
            assert sup.processes.statistics().started == 1


@pytest.mark.parametrize(
    ("tool", "details"),
    [("procs.exits", {"exit_code": 3}), ("procs.segfault", {"signal": "SIGSEGV"})],
)
async def test_a_dying_worker_fails_only_its_job_as_crashed(
    tool: str, details: dict[str, Any]
) -> None:
    """A worker that exits or segfaults mid-call fails that job as crashed, with how it died."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, tool, {"n": 3})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.CRASHED
            assert done.error.details == details
            assert (await run_one(sup, "procs.square", {"n": 4})).result == {"n": 16}
            assert sup.registry.metrics(tool).failures_by_type == {"crashed": 1}


@pytest.mark.parametrize(
    ("tool", "details"),
    [("procs.hog", {"memory_mb": 512}), ("procs.burn", {"signal": "SIGXCPU", "cpu_s": 1})],
)
async def test_resource_limits_fail_the_job_as_resource_exhausted(
    tool: str, details: dict[str, Any]
) -> None:
    """Running past memory_mb or cpu_s fails the job with resource_exhausted."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, tool, {})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.RESOURCE_EXHAUSTED
            assert done.error.details == details
            assert (await run_one(sup, "procs.square", {"n": 5})).result == {"n": 25}
            failures = sup.registry.metrics(tool).failures_by_type
            assert failures == {"resource_exhausted": 1}


async def test_cpu_s_counts_from_the_calls_start_whatever_the_worker_used_before() -> None:
    """With cpu_s=1, on a worker that already used a second and a fraction, half a CPU second
    succeeds, and a second and a half burnt by the tool's own threads ends resource_exhausted
    as SIGXCPU (the worker's past, rounded up to whole seconds, gave it nearly two)."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            assert (await run_one(sup, "procs.align", {})).state is JobState.SUCCEEDED
            within = await run_one(sup, "procs.burn_cpu", {"seconds": 0.5})
            assert within.state is JobState.SUCCEEDED
            assert (await run_one(sup, "procs.align", {})).state is JobState.SUCCEEDED
            assert sup.processes.statistics().started == 1
            over = await run_one(sup, "procs.burn_cpu", {"seconds": 1.5, "threads": 2})
            assert over.state is JobState.FAILED
            assert over.error is not None
            assert over.error.type == OutcomeType.RESOURCE_EXHAUSTED
            assert over.error.details == {"signal": "SIGXCPU", "cpu_s": 1}
            assert (await run_one(sup, "procs.square", {"n": 3})).result == {"n": 9}


async def test_writes_to_stdout_and_stderr_go_nowhere(capfd: pytest.CaptureFixture[str]) -> None:
    """A process tool's prints and raw writes to fds 1 and 2 reach neither stream."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs]) as sup:
            done = await run_one(sup, "procs.chatty", {"n": 1})
            assert done.state is JobState.SUCCEEDED
    captured = capfd.readouterr()
    assert "CHATTY" not in captured.out
    assert "CHATTY" not in captured.err


@pytest.mark.parametrize(
    ("tool", "state"),
    [
        ("procs.raises", JobState.FAILED),
        ("procs.wrong_type", JobState.FAILED),
        ("procs.spin", JobState.TIMED_OUT),
        ("procs.exits", JobState.FAILED),
        ("procs.segfault", JobState.FAILED),
        ("procs.hog", JobState.FAILED),
        ("procs.chatty", JobState.SUCCEEDED),
    ],
)
async def test_healthy_jobs_beside_a_misbehaving_one_all_succeed(
    tool: str, state: JobState
) -> None:
    """A burst of healthy process jobs running beside a misbehaving one all succeed."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=2) as sup:
            bad = await sup.submit(tool, {"n": 3})
            healthy = [await sup.submit("procs.square", {"n": n}) for n in range(12)]
            assert (await sup.wait(bad.id, timeout=HANG_GUARD_S)).state is state
            for n, rec in enumerate(healthy):
                done = await sup.wait(rec.id, timeout=HANG_GUARD_S)
                assert (done.state, done.result) == (JobState.SUCCEEDED, {"n": n * n})
            square = sup.registry.metrics("procs.square")
            assert (square.calls, square.successes, square.in_flight) == (12, 12, 0)
            assert sup.registry.metrics(tool).calls == 1
        assert sup.processes.statistics().idle == 0


async def test_a_thread_left_by_an_earlier_call_does_not_report_for_the_next_job() -> None:
    """Progress a process tool's leftover thread reports while its worker runs the next job
    stays off that job (each report names its job and attempt); before, the parent applied it
    to whichever job the worker ran then."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            await run_one(sup, "procs.leaves_a_reporter", {})
            second = await sup.submit("procs.waits_for_the_reporter", {})
            async with sup.subscribe(job_id=second.id, since=0) as events:
                seen = [event async for event in events if isinstance(event, JobEvent)]
            done = await sup.wait(second.id, timeout=HANG_GUARD_S)
    assert done.state is JobState.SUCCEEDED
    assert [e.data.message for e in seen if e.type.endswith("progress")] == ["mine"]
    assert done.progress == 0.25


async def test_a_worker_that_closes_its_pipe_and_runs_on_is_killed_and_its_job_crashed() -> None:
    """A tool that closes its worker's pipe and keeps running fails its job as crashed at once,
    its worker terminated, and the next call gets a fresh worker."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.closes_its_fds", {"n": 2 * HANG_GUARD_S})
            assert done.state is JobState.FAILED
            assert done.error is not None
            assert done.error.type == OutcomeType.CRASHED
            assert done.error.details == {"signal": "SIGTERM"}
            assert (await run_one(sup, "procs.square", {"n": 4})).result == {"n": 16}
            assert sup.processes.statistics().started == 2


def kill_left(pid_file: Path) -> None:
    """Kill the process whose pid ``pid_file`` holds, if it was written and it still runs."""
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def test_a_worker_exiting_while_a_process_it_forked_holds_its_pipe_crashes_the_job(
    tmp_path: Path,
) -> None:
    """A worker that exits mid-call while a child it forked keeps its pipe open fails that job
    as crashed with its own exit code."""
    pid_file = tmp_path / "child.pid"
    payload = {"pid_file": str(pid_file), "seconds": 2 * HANG_GUARD_S}
    try:
        with anyio.fail_after(HANG_GUARD_S):
            async with Supervisor(plugins=[procs], process_workers=1) as sup:
                done = await run_one(sup, "procs.forks_and_exits", payload)
                assert done.error is not None
                assert (done.state, done.error.type) == (JobState.FAILED, OutcomeType.CRASHED)
                assert done.error.details == {"exit_code": 3}
    finally:
        kill_left(pid_file)


async def ended(pid: int) -> None:
    """Return once process ``pid`` has exited (at once if it is gone)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("how", ["cancel", "shutdown"])
async def test_a_process_a_tool_started_ends_with_its_stopped_worker(
    how: str, tmp_path: Path
) -> None:
    """A child process a process tool started is killed with its worker when the job is
    cancelled or the supervisor shuts down."""
    pid_file = tmp_path / "child.pid"
    payload = {"pid_file": str(pid_file), "seconds": 2 * HANG_GUARD_S}
    try:
        with anyio.fail_after(HANG_GUARD_S):
            async with Supervisor(plugins=[procs], process_workers=1, shutdown_grace_s=0) as sup:
                rec = await sup.submit("procs.starts_a_child", payload)
                async with sup.subscribe(job_id=rec.id) as events:
                    async for event in events:
                        if isinstance(event, JobEvent) and event.type == "jobwarden.job.progress":
                            break
                if how == "cancel":
                    assert (await sup.cancel(rec.id)).state is JobState.CANCELLED
                    await ended(int(pid_file.read_text()))
            await ended(int(pid_file.read_text()))
    finally:
        kill_left(pid_file)


async def test_a_process_tool_reads_nothing_from_the_servers_stdin() -> None:
    """A process tool reading fd 0 finds end of file, not what waits on the server's stdin."""
    reading, writing = os.pipe()
    os.write(writing, b"the server's input")
    saved = os.dup(0)
    os.dup2(reading, 0)  # what the worker would inherit as stdin
    try:
        with anyio.fail_after(HANG_GUARD_S):
            async with Supervisor(plugins=[procs], process_workers=1) as sup:
                done = await run_one(sup, "procs.reads_stdin", {"n": 100})
    finally:
        os.dup2(saved, 0)
        for fd in (saved, reading, writing):
            os.close(fd)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "")


async def test_a_process_tool_can_start_a_multiprocessing_child() -> None:
    """A process tool may start a process with multiprocessing: its worker is not daemonic."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.uses_multiprocessing", {"n": 7})
    assert (done.state, done.result) == (JobState.SUCCEEDED, {"n": 7})


async def test_an_aware_datetime_keeps_its_offset_both_ways() -> None:
    """A timezone-aware datetime reaches a process tool, and comes back, with its own offset."""
    when = "2024-01-01T10:00:00+05:00"
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[procs], process_workers=1) as sup:
            done = await run_one(sup, "procs.when", {"when": when})
    assert (done.state, done.result) == (JobState.SUCCEEDED, {"when": when, "seen": when})
