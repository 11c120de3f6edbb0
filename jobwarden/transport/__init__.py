"""The HTTP, websocket and SSE adapter on aiohttp."""

from jobwarden.transport.app import create_app
from jobwarden.transport.auth import KeyRing, Principal
from jobwarden.transport.context import ServerSettings
from jobwarden.transport.server_logger import server_logger

__all__ = ["KeyRing", "Principal", "ServerSettings", "create_app", "server_logger"]
