"""Which browsers' pages may talk to the server: configured origins, and the loopback host names
an open server (no API keys) answers to.

An open server binds a loopback address only, yet a page of any site can still reach it through
DNS rebinding: its own name, resolved to 127.0.0.1, makes the browser send that name as the
``Host`` and treat the answers as the page's own. So an open server also checks the ``Host``.
"""

from __future__ import annotations

import functools
import ipaddress

import yarl

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(text: str) -> str:
    """``text`` as a browser serialises an origin (``scheme://host[:port]``: lower case, no
    default port), or ValueError saying why it is not one (another scheme, no host, a path, a
    query, a fragment, user info)."""
    try:
        url = yarl.URL(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an origin: {exc}") from exc
    scheme = url.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url.raw_host:
        raise ValueError(f"{text!r} is not an origin: give scheme://host[:port], http or https")
    if url.raw_path not in {"", "/"} or url.raw_query_string or url.raw_fragment or url.raw_user:
        raise ValueError(f"{text!r} is not an origin: no path, query, fragment or user info")
    if "?" in text or "#" in text:
        raise ValueError(f"{text!r} is not an origin: no path, query, fragment or user info")
    host = url.raw_host.lower()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = url.explicit_port
    if port in (None, DEFAULT_PORTS[scheme]):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_host(origin: str) -> str:
    """A normalised origin's ``host[:port]``, as a request to it carries in ``Host``."""
    return origin.split("://", 1)[1]


@functools.lru_cache(maxsize=256)
def local_host(host: str) -> bool:
    """Whether a request's ``Host`` (``name[:port]``) names this machine's loopback: localhost,
    a name under ``.localhost`` (RFC 6761), or a loopback address. Cached: an open server asks
    this of every request, which names the same few hosts."""
    try:
        name = yarl.URL(f"http://{host}").raw_host
    except ValueError:
        return False
    if not name:
        return False
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
