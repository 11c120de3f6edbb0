"""Reaching the server: a missing one, a bad URL, and API keys from the flag or environment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.cli.conftest import SERVER_ARGS, jobwarden, server_env
from tests.server_process import free_port, running_server
from tests.transport.conftest import KEYS, KEYS_TOML

pytestmark = pytest.mark.anyio


@pytest.fixture
async def keyed_server(tmp_path: Path) -> AsyncIterator[str]:
    """A real server that requires API keys (alice, bob, reader, admin)."""
    keys = tmp_path / "keys.toml"
    await anyio.Path(keys).write_text(KEYS_TOML)
    args = (*SERVER_ARGS, "--keys-file", str(keys))
    async with running_server(tmp_path, *args, env=server_env()) as (_, base, _log):
        yield base


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "clitest.echo", "--wait"),
        ("jobs",),
        ("cancel", "0123"),
        ("watch",),
        ("watch", "--job", "0123", "--json"),
    ],
)
async def test_no_server_exits_1_naming_the_url(args: tuple[str, ...]) -> None:
    """Every client command fails with exit 1 and one line naming the URL it could not reach."""
    url = f"http://127.0.0.1:{free_port()}"
    done = await jobwarden(url, *args)
    assert done.code == 1
    assert done.out == ""
    assert done.err == f"jobwarden: cannot connect to {url}: Connection refused\n"


async def test_the_url_flag_wins_over_the_environment(server: str) -> None:
    """--url overrides JOBWARDEN_URL; a URL that is not http(s) is a usage error."""
    elsewhere = f"http://127.0.0.1:{free_port()}"
    done = await jobwarden(elsewhere, "jobs", "--json", "--url", server)
    bad = await jobwarden(server, "jobs", "--url", "ftp://example.org")
    assert done.code == 0, done.err
    assert json.loads(done.out) == {"jobs": [], "next_cursor": None}
    assert bad.code == 2
    assert "is not an http:// or https:// URL" in bad.err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://127.0.0.1:99999",
            "'http://127.0.0.1:99999' is not a valid URL: Port out of range",
        ),
        ("http://127.0.0.1:-1", "'http://127.0.0.1:-1' is not a valid URL: Port out of range"),
        ("http://[::1", "'http://[::1' is not a valid URL: Invalid IPv6 URL"),
        ("http://:8080", "'http://:8080' is not a valid URL: Invalid URL: host is required"),
        ("http://jobs..example", "is not a valid URL: 'jobs..example' is not a host name"),
        ("http://127.0.0.1:8080/?x=1", "has a query or fragment; give the server's base URL"),
        ("http://127.0.0.1:8080/base#top", "has a query or fragment"),
        ("http://127.0.0.1:8080/?", "has a query or fragment"),
    ],
)
async def test_a_url_that_cannot_be_one_is_a_usage_error(url: str, message: str) -> None:
    """A port outside 0..65535, a malformed address, no or an empty host name, or a query or
    fragment, from --url or JOBWARDEN_URL, exits 2 naming the URL and what is wrong, without a
    traceback."""
    by_flag = await jobwarden(f"http://127.0.0.1:{free_port()}", "jobs", "--url", url)
    by_env = await jobwarden(url, "cancel", "0123")
    for done in (by_flag, by_env):
        assert done.code == 2, done.err
        assert "Invalid value for '--url'" in done.err
        assert message in done.err
        assert "Traceback" not in done.err


@pytest.mark.parametrize("key", ["alice-key\n0001", "alice-key-0001\r", "alice\x1bkey-0001"])
async def test_a_key_a_header_cannot_carry_is_a_usage_error(key: str) -> None:
    """An API key holding a control character (a newline, a stray carriage return) from
    --api-key or JOBWARDEN_API_KEY exits 2 saying so, without a traceback or the key."""
    url = f"http://127.0.0.1:{free_port()}"
    by_flag = await jobwarden(url, "jobs", "--api-key", key)
    by_env = await jobwarden(url, "watch", env={"JOBWARDEN_API_KEY": key})
    for done in (by_flag, by_env):
        assert done.code == 2, done.err
        assert "Invalid value for '--api-key'" in done.err
        assert "the key holds a control character (U+00" in done.err
        assert "an HTTP header cannot carry it" in done.err
        assert "Traceback" not in done.err
        assert "0001" not in done.err


async def test_a_missing_key_says_how_to_give_one(keyed_server: str) -> None:
    """Without a key the server's 401 becomes exit 1 and a line pointing at --api-key."""
    done = await jobwarden(keyed_server, "submit", "clitest.echo", "--input", '{"text": "x"}')
    assert done.code == 1
    assert done.err.startswith(f"jobwarden: {keyed_server} refused the request: unauthorized: ")
    assert "--api-key or JOBWARDEN_API_KEY" in done.err


async def test_the_key_from_the_flag_or_the_environment_is_used(keyed_server: str) -> None:
    """--api-key and JOBWARDEN_API_KEY are both sent as a Bearer token."""
    by_flag = await jobwarden(
        keyed_server,
        "submit",
        "clitest.echo",
        "--input",
        '{"text": "x"}',
        "--wait",
        "--api-key",
        KEYS["alice"],
    )
    by_env = await jobwarden(
        keyed_server, "jobs", "--json", env={"JOBWARDEN_API_KEY": KEYS["alice"]}
    )
    watched = await jobwarden(
        keyed_server,
        "watch",
        "--job",
        json.loads(by_env.out)["jobs"][0]["id"],
        "--json",
        env={"JOBWARDEN_API_KEY": KEYS["alice"]},
    )
    assert by_flag.code == 0, by_flag.err
    assert by_env.code == 0, by_env.err
    assert [job["owner"] for job in json.loads(by_env.out)["jobs"]] == ["alice"]
    assert watched.code == 0, watched.err
    assert json.loads(watched.out.splitlines()[-1])["type"] == "jobwarden.job.succeeded"


async def test_a_key_without_the_scope_is_forbidden(keyed_server: str) -> None:
    """A read-only key cannot submit: exit 1 and a line saying the scope is missing."""
    done = await jobwarden(
        keyed_server, "submit", "clitest.echo", "--api-key", KEYS["reader"], "--input", "{}"
    )
    assert done.code == 1
    assert "refused the request: forbidden: " in done.err
    assert "lacks the scope" in done.err
