"""JW001 violations: plugin code called, or handed to a call, outside the allow-list."""

import functools
import operator

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

    def alias(self, tool, inp):
        run = tool.func
        return run(inp)  # expect: JW001

    def in_a_dict(self, tool, inp):
        table = {"run": tool.func}
        return table["run"](inp)  # expect: JW001

    def through_dunder(self, tool, inp):
        return tool.func.__call__(inp)  # expect: JW001

    def by_attrgetter(self, tool, inp):
        return operator.attrgetter("func")(tool)(inp)  # expect: JW001

    def by_methodcaller(self, tool, inp):
        return operator.methodcaller("func", inp)(tool)  # expect: JW001

    def by_key(self, tool, inp):
        return vars(tool)["func"](inp)  # expect: JW001

    def either_hook(self, plugin):
        hook = plugin.startup_hook or plugin.shutdown_hook
        return hook()  # expect: JW001

    def unpacked(self, tool, inp):
        _, run = "name", tool.func
        return run(inp)  # expect: JW001

    def from_a_loop(self, plugin):
        for _kind, hook in (("startup", plugin.startup_hook),):
            hook()  # expect: JW001

    def in_a_closure(self, tool):
        run = tool.func

        def later(inp):
            return run(inp)  # expect: JW001

        return later

    def handed_out(self, tool):
        return tool.func  # expect: JW001

    def kept(self, tool):
        self._run = tool.func  # expect: JW001
