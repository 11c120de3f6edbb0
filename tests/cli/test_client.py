"""The client's own error messages, for failures a test cannot easily provoke for real."""

from __future__ import annotations

import pytest

from jobwarden.cli.client import ApiClient, path_segment
from jobwarden.cli.outcomes import CommandError, ExitCode


def test_a_server_that_never_answers_is_unreachable() -> None:
    """A request timeout reads as "no answer in time", exit 1, naming the URL."""
    error = ApiClient("http://10.1.2.3:8080/", None).unreachable(TimeoutError())
    assert error.code == ExitCode.FAILED
    assert error.message == "cannot connect to http://10.1.2.3:8080: no answer in time"


@pytest.mark.parametrize(
    ("text", "segment"),
    [
        ("0123abc", "0123abc"),
        ("x?y", "x%3Fy"),
        ("a/b#c", "a%2Fb%23c"),
        ("%41", "%2541"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a.b", "a.b"),
        ("café", "caf%C3%A9"),
    ],
)
def test_a_path_segment_is_sent_as_it_is_encoded(text: str, segment: str) -> None:
    """Reserved characters and dot segments are percent-encoded, and the request's URL keeps
    them so (no normalising a %2E%2E back into "..", under the base URL's own path too)."""
    assert path_segment(text) == segment
    url = ApiClient("http://127.0.0.1:8080/base/", None).url(f"/v1/jobs/{segment}/cancel")
    assert url.raw_path == f"/base/v1/jobs/{segment}/cancel"


def test_a_base_url_that_cannot_be_one_is_a_usage_error() -> None:
    """An ApiClient given a URL aiohttp cannot use (port 99999) fails its first request with a
    usage error naming the URL, not an InvalidUrlClientError."""
    with pytest.raises(CommandError) as caught:
        ApiClient("http://127.0.0.1:99999", None).url("/v1/jobs")
    assert caught.value.code == ExitCode.USAGE
    assert caught.value.message == (
        "'http://127.0.0.1:99999' is not a valid URL: Port out of range 0-65535"
    )
