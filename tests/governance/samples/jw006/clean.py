"""JW006 clean: tasks that live in task groups."""

import asyncio

import anyio


async def supervised(coro):
    async with anyio.create_task_group() as tg:
        tg.start_soon(coro)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(coro())
    async with asyncio.TaskGroup() as task_group:
        task_group.create_task(coro())
    return await asyncio.gather(coro(), coro())
