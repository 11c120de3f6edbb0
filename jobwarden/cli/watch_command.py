"""``watch``: a server's live events as a table, or one CloudEvent per line for machines."""

from __future__ import annotations

import sys
from contextlib import aclosing

import click

from jobwarden.actors.states import JobState
from jobwarden.cli.client import ApiClient, path_segment
from jobwarden.cli.client_options import NAME_TEXT, client_options, run_client
from jobwarden.cli.event_stream import ALL_EVENTS, StreamSpec, follow
from jobwarden.cli.outcomes import EXIT_CODES_HELP, ExitCode
from jobwarden.cli.render import data_console, message_console
from jobwarden.cli.watch_view import WatchView

STATES = [state.value for state in JobState]


@click.command("watch", epilog=EXIT_CODES_HELP)
@click.option(
    "--job",
    "job_id",
    type=NAME_TEXT,
    metavar="ID",
    help="only this job; ends after its last event",
)
@click.option("--tool", type=NAME_TEXT, metavar="T", help="only jobs of this tool")
@click.option("--state", type=click.Choice(STATES), help="only events entering this state")
@click.option(
    "--since",
    type=click.IntRange(0),
    metavar="N",
    help="start after event offset N (the default: from now on; with --job, from its start)",
)
@client_options
def watch_command(
    job_id: str | None,
    tool: str | None,
    state: str | None,
    since: int | None,
    url: str,
    api_key: str | None,
    as_json: bool,
) -> int:
    """Stream job events live: a table with a row per job, or --json one CloudEvent per line.

    With --job it ends after that job's terminal event; otherwise it runs until Ctrl-C (exit 0).
    A dropped connection is resumed from the last event seen (before any event, from where the
    server said the stream starts), so nothing is missed or repeated.
    """
    filters = {
        name: value for name, value in (("tool", tool), ("state", state)) if value is not None
    }
    path = ALL_EVENTS
    if job_id is not None:
        path = f"/v1/jobs/{path_segment(job_id)}/events"
    spec = StreamSpec(path=path, filters=filters, since=since)
    messages = message_console()

    def reconnecting(offset: int | None) -> None:
        if offset is None:
            # Dropped before the server said where the stream starts (a server older than that
            # notice, or a drop during the handshake): there is no offset to resume from.
            messages.print(
                "connection lost before the server said where the stream starts; resuming from"
                " now: events while it was down are not shown (--since N resumes exactly)",
                style="yellow",
            )
        else:
            messages.print(f"connection lost; resuming after event {offset}", style="yellow")

    async def action() -> ExitCode:
        async with ApiClient(url, api_key) as api:
            # Asked first, so a wrong name gets the server's error envelope, not a bare 404.
            if job_id is not None:
                await api.get(spec.path.removesuffix("/events"))
            if tool is not None:
                await api.get(f"/v1/tools/{path_segment(tool)}")
            with WatchView(data_console(), live=not as_json) as view:
                async with aclosing(follow(api, spec, reconnecting)) as frames:
                    async for frame in frames:
                        if as_json:
                            sys.stdout.write(frame.raw + "\n")
                            sys.stdout.flush()
                        if frame.event is None:
                            messages.print(f"events up to {frame.offset} are gone (retention)")
                            continue
                        if not as_json:
                            view.show(frame.event)
                        if job_id is not None and frame.event.data.state.terminal:
                            break
        return ExitCode.OK

    return run_client(action, interrupted=ExitCode.OK)
