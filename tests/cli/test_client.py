"""The client's own error messages, for failures a test cannot easily provoke for real."""

from __future__ import annotations

from jobwarden.cli.client import ApiClient
from jobwarden.cli.outcomes import ExitCode


def test_a_server_that_never_answers_is_unreachable() -> None:
    """A request timeout reads as "no answer in time", exit 1, naming the URL."""
    error = ApiClient("http://10.1.2.3:8080/", None).unreachable(TimeoutError())
    assert error.code == ExitCode.FAILED
    assert error.message == "cannot connect to http://10.1.2.3:8080: no answer in time"
