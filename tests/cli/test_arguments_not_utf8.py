"""Arguments that are not UTF-8 (bytes a shell passes as they are) are refused by name.

On POSIX such bytes reach Python as lone surrogates (PEP 383), which neither JSON nor a URL can
carry: each client command refuses them before connecting, naming the argument.
"""

from __future__ import annotations

import os

import pytest

from tests.cli.conftest import jobwarden
from tests.server_process import free_port

pytestmark = pytest.mark.anyio

NOT_UTF8 = os.fsdecode(b"\xff")


@pytest.mark.parametrize(
    ("args", "name", "shown"),
    [
        (("submit", f"builtin.echo{NOT_UTF8}"), "'TOOL'", r"'builtin.echo\xff'"),
        (
            ("submit", "builtin.echo", "--input", f'{{"text": "{NOT_UTF8}"}}'),
            "'--input'",
            r"""'{"text": "\xff"}'""",
        ),
        (
            ("submit", "builtin.echo", "--idempotency-key", NOT_UTF8),
            "'--idempotency-key'",
            r"'\xff'",
        ),
        (("jobs", "--tool", NOT_UTF8), "'--tool'", r"'\xff'"),
        (("cancel", f"0123{NOT_UTF8}"), "'ID'", r"'0123\xff'"),
        (("watch", "--job", NOT_UTF8), "'--job'", r"'\xff'"),
        (("watch", "--tool", NOT_UTF8), "'--tool'", r"'\xff'"),
        (("jobs", "--url", f"http://127.0.0.1:8080/{NOT_UTF8}"), "'--url'", r"8080/\xff'"),
    ],
    ids=[
        "tool",
        "input",
        "idempotency key",
        "jobs tool",
        "cancel id",
        "watch job",
        "watch tool",
        "url",
    ],
)
async def test_an_argument_that_is_not_utf8_is_a_usage_error(
    args: tuple[str, ...], name: str, shown: str
) -> None:
    """Each client command exits 2 naming the argument and showing its bytes as typed, where it
    ended in a UnicodeEncodeError traceback (or, for jobs --tool, listed every job)."""
    done = await jobwarden(f"http://127.0.0.1:{free_port()}", *args)
    assert done.code == 2, done.err
    assert f"Invalid value for {name}" in done.err
    assert f"{shown} is not valid UTF-8" in done.err
    assert "Traceback" not in done.err
    assert done.out == ""
