"""JW001 violations: plugin code called, or handed to a call, outside the allow-list."""

import functools

import anyio


async def direct(tool, inp):
    return await tool.func(inp)  # expect: JW001


class Supervisor:
    async def through_self(self, inp):
        return await self._tool.func(inp)  # expect: JW001

    def by_getattr(self, tool):
        return getattr(tool, "func")(None)  # expect: JW001

    async def hooks(self, plugin):
        await plugin.startup_hook()  # expect: JW001
        await plugin.shutdown_hook()  # expect: JW001

    async def in_thread(self, tool, inp):
        return await anyio.to_thread.run_sync(tool.func, inp)  # expect: JW001

    def bound(self, tool):
        return functools.partial(tool.func, 1)  # expect: JW001

    def as_keyword(self, tool, pool):
        return pool.submit(fn=tool.func)  # expect: JW001
