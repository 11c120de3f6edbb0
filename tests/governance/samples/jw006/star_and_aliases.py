"""JW006 violations: tasks spawned through a star import, an alias, a loop's name, asyncio.Task."""

import asyncio
from asyncio import *


async def spawn(coro):
    create_task(coro())  # expect: JW006
    asyncio.Task(coro())  # expect: JW006
    start = asyncio.create_task
    start(coro())  # expect: JW006
    ev = asyncio.get_running_loop()
    ev.create_task(coro())  # expect: JW006
    asyncio.run_coroutine_threadsafe(coro(), ev)  # expect: JW006
