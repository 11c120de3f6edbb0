"""The HTTP, websocket and SSE adapter on aiohttp."""

from jobwarden.transport.app import create_app
from jobwarden.transport.auth import KeyRing, Principal
from jobwarden.transport.context import ServerSettings

__all__ = ["KeyRing", "Principal", "ServerSettings", "create_app"]
