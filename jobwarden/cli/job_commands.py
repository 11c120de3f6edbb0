"""``submit``, ``jobs`` and ``cancel``: jobs on a running server, over its HTTP API."""

from __future__ import annotations

from contextlib import aclosing
from typing import IO, Any

import click
import msgspec

from jobwarden.actors.states import JobState
from jobwarden.cli.answers import JobAnswer, JobsPage
from jobwarden.cli.client import ApiClient, path_segment
from jobwarden.cli.client_options import NAME_TEXT, UTF8_TEXT, client_options, run_client
from jobwarden.cli.event_stream import StreamSpec, follow
from jobwarden.cli.outcomes import EXIT_CODES_HELP, CommandError, ExitCode, exit_code_for_state
from jobwarden.cli.progress_view import JobProgress
from jobwarden.cli.render import (
    data_console,
    jobs_table,
    message_console,
    print_data,
    seconds,
    state_text,
)
from jobwarden.cli.seconds import Seconds
from jobwarden.records import JobEvent
from jobwarden.transport.wire import MAX_TIMEOUT_S

STATES = [state.value for state in JobState]


def _read_input(text: str | None, file: IO[bytes] | None) -> dict[str, Any] | list[Any]:
    """The tool's input from ``--input`` or ``--input-file``: a JSON object, or an array for a
    tool whose input type is ``array_like`` (what POST /v1/jobs takes); ``{}`` if neither."""
    if text is not None and file is not None:
        raise click.UsageError("give --input or --input-file, not both")
    if text is None and file is None:
        return {}
    if file is not None:
        source, raw = "--input-file", file.read()
        try:
            # Decoded here, not by msgspec, whose error counts the offset from the start of the
            # JSON string holding the byte rather than from the start of the file.
            text = raw.decode()
        except UnicodeDecodeError as exc:
            where = f"byte {raw[exc.start]:#04x} at offset {exc.start}"
            raise click.BadParameter(
                f"not valid JSON: {where} is not UTF-8", param_hint=source
            ) from exc
    else:
        source = "--input"  # UTF8_TEXT refused text that is not UTF-8 already
    try:
        value = msgspec.json.decode(str(text))
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=source) from exc
    if not isinstance(value, dict | list):
        # Which of the two the tool takes is the server's to say (400 invalid_input).
        raise click.BadParameter(
            f"the input must be a JSON object or array, not {_json_kind(value)}", param_hint=source
        )
    return value


def _json_kind(value: Any) -> str:
    """What JSON calls ``value``'s type: ``a string``, ``a number``, ``true``, ``null``."""
    if value is None or isinstance(value, bool):
        return msgspec.json.encode(value).decode()
    return "a string" if isinstance(value, str) else "a number"


@click.command("submit", epilog=EXIT_CODES_HELP)
@click.argument("tool", type=NAME_TEXT)
@click.option(
    "--input",
    "input_text",
    type=UTF8_TEXT,
    metavar="JSON",
    help="the tool's input: a JSON object, or an array for a tool whose input is array_like",
)
@click.option(
    "--input-file",
    type=click.File("rb"),
    help="read the input from this JSON file (- for stdin)",
)
@click.option(
    "--wait", is_flag=True, help="follow the job with a progress bar and print its outcome"
)
@click.option(
    "--timeout",
    type=Seconds(0, MAX_TIMEOUT_S, min_open=True),
    metavar="S",
    help="the job's time limit in seconds (sent as timeout_s; the server times it out)",
)
@click.option(
    "--idempotency-key", type=UTF8_TEXT, metavar="K", help="submit at most once under this key"
)
@client_options
def submit_command(
    tool: str,
    input_text: str | None,
    input_file: IO[bytes] | None,
    wait: bool,
    timeout: float | None,
    idempotency_key: str | None,
    url: str,
    api_key: str | None,
    as_json: bool,
) -> int:
    """Submit a job to TOOL.

    Without --wait, prints the new job's id (the job with --json) and exits 0 once accepted.
    With --wait, shows the job's progress on stderr, then prints its result on stdout, or its
    error envelope, and exits with the job's outcome.
    """
    body: dict[str, Any] = {"tool": tool, "input": _read_input(input_text, input_file)}
    if timeout is not None:
        body["timeout_s"] = timeout
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key

    async def action() -> ExitCode:
        async with ApiClient(url, api_key) as api:
            accepted = await api.post("/v1/jobs", body, shape=JobAnswer)
            job = accepted["job"]
            if not wait:
                if as_json:
                    print_data(data_console(), accepted, True)
                else:
                    data_console().print(job["id"], markup=False)
                return ExitCode.OK
            if JobState(job["state"]).terminal:
                return _outcome(job["id"], job["state"], job["result"], job["error"], as_json)
            return await _follow_job(api, job["id"], tool, as_json)

    return run_client(action)


async def _follow_job(api: ApiClient, job_id: str, tool: str, as_json: bool) -> ExitCode:
    """Show the job's events until its terminal one, then print and return its outcome."""
    spec = StreamSpec(path=f"/v1/jobs/{path_segment(job_id)}/events", filters={})
    started: JobEvent | None = None
    with JobProgress(message_console(), job_id, tool) as view:
        async with aclosing(follow(api, spec)) as frames:
            async for frame in frames:
                event = frame.event
                if event is None:
                    continue
                view.show(event)
                if event.data.state == JobState.RUNNING and started is None:
                    started = event
                if event.data.state.terminal:
                    break
            else:
                raise CommandError(ExitCode.FAILED, f"the event stream of job {job_id} ended early")
    took = seconds(started.time if started else None, event.time)
    data = event.data
    error = None if data.error is None else msgspec.to_builtins(data.error)
    return _outcome(job_id, data.state, data.result, error, as_json, took)


def _outcome(
    job_id: str, state: str, result: Any, error: Any, as_json: bool, took: str = ""
) -> ExitCode:
    """Print a finished job's result (or error envelope) on stdout, a summary on stderr."""
    summary = state_text(state)
    summary.append(f" in {took}" if took else "")
    if error is not None:
        summary.append(f": {error['type']}: {error['message']}")
    message_console().print(f"job {job_id}", summary, soft_wrap=True, markup=False)
    print_data(data_console(), {"error": error} if error is not None else result, as_json)
    return exit_code_for_state(state)


@click.command("jobs", epilog=EXIT_CODES_HELP)
@click.option("--state", type=click.Choice(STATES), help="only jobs in this state")
@click.option("--tool", type=NAME_TEXT, help="only jobs of this tool")
@click.option(
    "--limit", type=click.IntRange(1, 500), help="at most this many jobs, newest first (50)"
)
@client_options
def jobs_command(
    state: str | None,
    tool: str | None,
    limit: int | None,
    url: str,
    api_key: str | None,
    as_json: bool,
) -> int:
    """List jobs, newest first (--json: the server's page, {"jobs", "next_cursor"})."""
    params = {
        name: str(value)
        for name, value in (("state", state), ("tool", tool), ("limit", limit))
        if value is not None
    }

    async def action() -> ExitCode:
        async with ApiClient(url, api_key) as api:
            page = await api.get("/v1/jobs", params, shape=JobsPage)
        if as_json:
            print_data(data_console(), page, True)
        elif page["jobs"]:
            data_console().print(jobs_table(page["jobs"]))
        else:
            message_console().print("no jobs")
        return ExitCode.OK

    return run_client(action)


@click.command("cancel", epilog=EXIT_CODES_HELP)
@click.argument("job_id", metavar="ID", type=NAME_TEXT)
@client_options
def cancel_command(job_id: str, url: str, api_key: str | None, as_json: bool) -> int:
    """Cancel job ID; a job that already finished is an error (exit 1)."""

    async def action() -> ExitCode:
        async with ApiClient(url, api_key) as api:
            answer = await api.post(f"/v1/jobs/{path_segment(job_id)}/cancel", shape=JobAnswer)
        if as_json:
            print_data(data_console(), answer, True)
        else:
            line = state_text(answer["job"]["state"])
            data_console().print(f"job {job_id}", line, soft_wrap=True, markup=False)
        return ExitCode.OK

    return run_client(action)
