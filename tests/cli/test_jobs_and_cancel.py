"""`jobwarden jobs` and `jobwarden cancel` against a real server."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import jobwarden

pytestmark = pytest.mark.anyio


async def _submit(server: str, tool: str, text: str | None = None, wait: bool = True) -> str:
    args = ["submit", tool, "--json"]
    if text is not None:
        args += ["--input", json.dumps({"text": text})]
    if wait:
        args.append("--wait")
        done = await jobwarden(server, *args)
        return done.err.split()[1]
    done = await jobwarden(server, *args)
    return str(json.loads(done.out)["job"]["id"])


async def test_jobs_lists_a_table_newest_first(server: str) -> None:
    """`jobs` prints one row per job, newest first, with tool, state, progress and error."""
    echo = await _submit(server, "clitest.echo", "a")
    fail = await _submit(server, "clitest.fail", "broken")
    done = await jobwarden(server, "jobs", env={"COLUMNS": "200"})
    rows = done.out.splitlines()
    assert done.code == 0, done.err
    assert rows[0].split() == [
        "ID", "TOOL", "STATE", "PROGRESS", "CREATED", "DURATION", "ERROR"
    ]  # fmt: skip
    assert rows[1].split()[:3] == [fail, "clitest.fail", "failed"]
    assert "plugin_error: ToolBroke: broken" in rows[1]
    assert rows[2].split()[:3] == [echo, "clitest.echo", "succeeded"]
    assert len(rows) == 3


async def test_jobs_filters_and_json(server: str) -> None:
    """--state, --tool and --limit filter on the server; --json prints its page as is."""
    first = await _submit(server, "clitest.echo", "1")
    second = await _submit(server, "clitest.echo", "2")
    failed = await _submit(server, "clitest.fail", "x")

    async def ids(*args: str) -> list[str]:
        done = await jobwarden(server, "jobs", "--json", *args)
        assert done.code == 0, done.err
        return [job["id"] for job in json.loads(done.out)["jobs"]]

    assert await ids() == [failed, second, first]
    assert await ids("--state", "failed") == [failed]
    assert await ids("--tool", "clitest.echo") == [second, first]
    assert await ids("--tool", "clitest.echo", "--limit", "1") == [second]
    assert await ids("--state", "cancelled") == []


async def test_no_jobs_says_so_on_stderr(server: str) -> None:
    """An empty listing leaves stdout empty and says "no jobs" on stderr; exit 0."""
    done = await jobwarden(server, "jobs")
    assert (done.code, done.out, done.err.strip()) == (0, "", "no jobs")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--state", "sleeping"), "'sleeping' is not one of"),
        (("--limit", "0"), "0 is not in the range"),
        (("--limit", "501"), "501 is not in the range"),
    ],
)
async def test_bad_jobs_flags_are_usage_errors(
    server: str, args: tuple[str, ...], message: str
) -> None:
    """An unknown state or a limit outside 1..500 exits 2 before asking the server."""
    done = await jobwarden(server, "jobs", *args)
    assert done.code == 2
    assert message in done.err


async def test_cancel_a_running_job_then_again(server: str) -> None:
    """`cancel` of a live job exits 0; of the same, now finished, job exits 1 with the reason."""
    job_id = await _submit(server, "clitest.hang", wait=False)
    first = await jobwarden(server, "cancel", job_id, "--json")
    again = await jobwarden(server, "cancel", job_id)
    assert first.code == 0, first.err
    assert json.loads(first.out)["job"]["state"] == "cancelled"
    assert again.code == 1
    assert again.out == ""
    assert again.err.strip() == (f"jobwarden: job_finished: job {job_id} is already cancelled")


async def test_cancel_of_an_unknown_job_is_a_usage_error(server: str) -> None:
    """An id the server does not know exits 2 with job_not_found."""
    done = await jobwarden(server, "cancel", "0123456789abcdef")
    assert done.code == 2
    assert done.err.strip() == "jobwarden: job_not_found: no job '0123456789abcdef'"


async def test_cancel_of_an_id_with_reserved_characters_asks_for_that_id(server: str) -> None:
    """An id holding ?, /, # or %, or a dot segment, is percent-encoded in the path: the server
    answers job_not_found for that very id (a ? made it method_not_allowed, a / not_found)."""
    for job_id in ["x?y", "x/y", "x#y", "%41", "..", "."]:
        done = await jobwarden(server, "cancel", job_id)
        assert done.code == 2, done.err
        assert done.err == f"jobwarden: job_not_found: no job {job_id!r}\n"
