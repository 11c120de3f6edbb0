"""Recording the CloudEvents a server's websocket sends, and waiting on them: what the acceptance
tests watch real servers with."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

import aiohttp
import anyio

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


@contextmanager
def plain_errors() -> Iterator[None]:
    """Raise a task group's lone error as itself: a failing test then reads as its assertion
    or timeout, not as nested exception groups."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if error is group:
            raise
        raise error from None


def kind(event: dict[str, Any]) -> str:
    """``running`` for ``jobwarden.job.running``."""
    return str(event["type"]).rsplit(".", 1)[1]


class Recorder:
    """Events seen on one websocket, in arrival order, and a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self._changed = anyio.Event()

    def add(self, event: dict[str, Any]) -> None:
        """Record one event and wake the waiters."""
        self.events.append(event)
        self._wake()

    def close(self) -> None:
        """The websocket ended: nothing more will come."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, job_id: str) -> list[dict[str, Any]]:
        """The events of one job."""
        return [e for e in self.events if e["subject"] == job_id]

    def kinds(self, job_id: str) -> list[str]:
        """The kinds of one job's events, in order."""
        return [kind(e) for e in self.of(job_id)]

    def states(self) -> dict[str, str]:
        """Each job's latest state as seen so far."""
        return {e["subject"]: e["data"]["state"] for e in self.events if "data" in e}

    def finished(self, job_ids: Any) -> bool:
        """True once each of ``job_ids`` has had its terminal event."""
        done = {e["subject"] for e in self.events if kind(e) in TERMINAL}
        return done >= set(job_ids)

    def offsets(self) -> list[int]:
        """The offsets seen, in arrival order."""
        return [int(e["id"]) for e in self.events]

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; fail if the websocket ends before it does."""
        while not condition():
            assert not self.closed, "the event stream ended before the condition held"
            await self._changed.wait()


@asynccontextmanager
async def recording(base: str, path: str = "/v1/events?since=0") -> AsyncIterator[Recorder]:
    """A websocket on ``path`` recording every CloudEvent until the context ends."""
    recorder = Recorder()
    async with aiohttp.ClientSession() as http, http.ws_connect(base + path) as ws:

        async def pump() -> None:
            with suppress(aiohttp.ClientError):
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        frame = message.json()
                        if "specversion" in frame:
                            recorder.add(frame)
            recorder.close()

        with plain_errors():
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                yield recorder
                tg.cancel_scope.cancel()
