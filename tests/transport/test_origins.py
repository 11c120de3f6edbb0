"""Origins as browsers send them, and the host names an open server answers to."""

from __future__ import annotations

import pytest

from jobwarden.transport.origins import local_host, normalise_origin


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("HTTP://Ops.Example:80", "http://ops.example"),
        ("https://ops.example:8443", "https://ops.example:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_an_origin_is_written_as_a_browser_sends_it(given: str, sent: str) -> None:
    """Scheme and host in lower case, no default port, no trailing slash."""
    assert normalise_origin(given) == sent


@pytest.mark.parametrize(
    "given",
    [
        "ftp://app.example",
        "app.example",
        "https://",
        "https://app.example/path",
        "https://app.example/?",
        "https://app.example?q=1",
        "https://app.example#top",
        "https://user@app.example",
        "http://[::1",
    ],
)
def test_what_is_not_an_origin_is_refused(given: str) -> None:
    """Another scheme, no host, a path, a query, a fragment or user info is a ValueError."""
    with pytest.raises(ValueError, match="is not an origin"):
        normalise_origin(given)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost:8080", True),
        ("LocalHost", True),
        ("localhost.:80", True),
        ("app.localhost:1", True),
        ("127.0.0.1:8080", True),
        ("127.3.2.1", True),
        ("[::1]:8080", True),
        ("[::ffff:127.0.0.1]:8080", True),
        ("attacker.example:8080", False),
        ("127.0.0.1.nip.io", False),
        ("localhost.attacker.example", False),
        ("0.0.0.0:8080", False),
        ("10.0.0.1", False),
        ("", False),
        ("not a host", False),
    ],
)
def test_only_loopback_names_are_local(host: str, local: bool) -> None:
    """localhost, names under .localhost and loopback addresses are local; nothing else."""
    assert local_host(host) is local
