"""JW006 violations: tasks spawned outside any task group."""

import asyncio
import asyncio as aio
from asyncio import create_task
from asyncio import ensure_future as ensure


async def spawn(coro, loop):
    asyncio.create_task(coro())  # expect: JW006
    aio.ensure_future(coro())  # expect: JW006
    create_task(coro())  # expect: JW006
    ensure(coro())  # expect: JW006
    loop.create_task(coro())  # expect: JW006
    asyncio.get_running_loop().create_task(coro())  # expect: JW006
    aio.get_event_loop().create_task(coro())  # expect: JW006


class Service:
    def start(self, coro):
        self._loop.create_task(coro())  # expect: JW006
