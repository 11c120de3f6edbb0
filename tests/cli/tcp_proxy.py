"""A TCP relay in front of a server, whose test cuts the connections and holds new ones.

What a flaky network does to a client, on cue: the test sees what the server sent through it,
drops every connection at a chosen moment, and keeps the client's reconnection waiting while the
server goes on without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream


class TcpProxy:
    """Relays each connection to ``upstream``; ``url`` is where clients connect instead."""

    def __init__(self, upstream: tuple[str, int], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._upstream = upstream
        self._admit = anyio.Event()
        self._admit.set()
        self._relays: list[anyio.CancelScope] = []
        self._sent = bytearray()  # what the server sent to clients, every connection's
        self._more = anyio.Event()

    def hold(self) -> None:
        """Keep the connections that arrive from now on waiting, unrelayed, until ``release``."""
        if self._admit.is_set():
            self._admit = anyio.Event()

    def release(self) -> None:
        """Relay the held connections, and the next ones at once."""
        self._admit.set()

    def cut(self) -> None:
        """End every relayed connection, after what it already forwarded."""
        relays, self._relays = self._relays, []
        for scope in relays:
            scope.cancel()

    async def wait_sent(self, marker: bytes) -> None:
        """Return once the server has sent ``marker`` through the proxy (and it was relayed)."""
        while marker not in self._sent:
            more = self._more = anyio.Event()
            await more.wait()

    async def relay(self, client: SocketStream) -> None:
        """Relay one client connection once admitted, until either side ends it or ``cut``."""
        async with client:
            await self._admit.wait()
            async with (
                await anyio.connect_tcp(*self._upstream) as server,
                anyio.create_task_group() as tg,
            ):
                self._relays.append(tg.cancel_scope)
                tg.start_soon(self._pump, client, server, tg.cancel_scope, False)
                tg.start_soon(self._pump, server, client, tg.cancel_scope, True)

    async def _pump(
        self, source: ByteStream, sink: ByteStream, scope: anyio.CancelScope, seen: bool
    ) -> None:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in source:
                await sink.send(chunk)
                if seen:
                    self._sent += chunk
                    self._more.set()
        # One side's end ends the connection: neither an HTTP client nor a server half-closes.
        scope.cancel()


@asynccontextmanager
async def tcp_proxy(upstream: tuple[str, int]) -> AsyncIterator[TcpProxy]:
    """A ``TcpProxy`` to ``upstream`` listening on a free loopback port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        port = listener.extra(SocketAttribute.local_port)
        proxy = TcpProxy(upstream, port)
        tg.start_soon(listener.serve, proxy.relay)
        yield proxy
        tg.cancel_scope.cancel()
