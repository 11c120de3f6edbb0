"""JW002 clean: each plugin call only runs under a try whose finally records metrics."""

import anyio


class ToolRunner:
    def __init__(self, registry):
        self._registry = registry

    async def run(self, tool, inp):
        try:
            return await self._invoke(tool, inp)
        except Exception as exc:
            return self._fallback(tool, exc)
        finally:
            self._registry.record_execution(tool.name, "ok", 0.0)

    async def _invoke(self, tool, inp):
        if tool.mode == "thread":
            return await anyio.to_thread.run_sync(tool.func, inp)
        return await tool.func(inp)

    def _fallback(self, tool, exc):
        return getattr(tool, "func")(exc)

    async def hooks(self, plugin, lock):
        try:
            await plugin.startup_hook()
            await anyio.to_thread.run_sync(lambda: plugin.shutdown_hook())
            stop = lambda: plugin.shutdown_hook()

            def later():
                return plugin.shutdown_hook()

            return stop(), later()
        finally:
            with lock:
                self._registry.record_execution(plugin.name, "ok", 0.0)

    def record_guarded(self, tool, log):
        try:
            return tool.func(None)
        finally:
            try:
                self._registry.record_execution(tool.name, "ok", 0.0)
            except Exception:
                log("metrics failed")

    async def aliased(self, plugin):
        hook = plugin.startup_hook if plugin.first else plugin.shutdown_hook
        try:
            if hook is not None:
                await hook()
        finally:
            self._registry.record_hook(plugin.name, "startup", None)

    def in_else(self, tool):
        try:
            ready = tool.ready
        except LookupError:
            ready = False
        else:
            return tool.func(ready)
        finally:
            self._registry.record_execution(tool.name, "ok", 0.0)


def _retry(tool, attempts):
    if attempts:
        return _retry(tool, attempts - 1)
    return tool.func(attempts)


def entry(tool, registry):
    try:
        return _retry(tool, 3)
    finally:
        registry.record_execution(tool.name, "ok", 0.0)



def _attempt(tool, registry):
    try:
        return _call_once(tool, 3)
    finally:
        registry.record_execution(tool.name, "ok", 0.0)


def _call_once(tool, attempts):
    value = tool.func(attempts)
    return _again(tool, attempts - 1) if value is None and attempts else value


def _again(tool, attempts):
    # Called only from _call_once, whose one way in from outside is guarded.
    return _call_once(tool, attempts)
