"""JW001 clean: the ToolRunner calls plugin code, under a try whose finally records metrics."""

import anyio


class ToolRunner:
    async def run(self, tool, inp, registry):
        try:
            if tool.mode == "thread":
                return await anyio.to_thread.run_sync(tool.func, inp)
            return await tool.func(inp)
        finally:
            registry.record_execution(tool.name, "ok", 0.0)
