"""JW002 violations: plugin calls in the ToolRunner that can escape metrics recording."""


class ToolRunner:
    async def never_called(self, tool, inp):
        return await tool.func(inp)  # expect: JW002

    async def finally_without_metrics(self, tool, metrics):
        try:
            return await tool.func(None)  # expect: JW002
        finally:
            metrics.flush()

    def call_in_finally(self, tool, metrics):
        try:
            pass
        finally:
            metrics.record_execution(tool.name, "ok", 0.0)
            tool.func(None)  # expect: JW002

    def _call(self, tool):
        return tool.func(1)  # expect: JW002

    def guarded(self, tool, metrics):
        try:
            return self._call(tool)
        finally:
            metrics.record_execution(tool.name, "ok", 0.0)

    def unguarded(self, tool):
        return self._call(tool)

    def _spawned(self, tool):
        return getattr(tool, "func")(2)  # expect: JW002

    async def spawn(self, tg, tool, metrics):
        try:
            tg.start_soon(self._spawned, tool)
        finally:
            metrics.record_execution(tool.name, "ok", 0.0)


class Hooks:
    async def aliased(self, plugin, registry):
        hook = plugin.startup_hook
        await hook()  # expect: JW002
        try:
            pass
        finally:
            registry.record_hook(plugin.name, "startup", None)

    def handed_back(self, tool, metrics):
        try:
            return tool.func  # expect: JW002
        finally:
            metrics.record_execution(tool.name, "ok", 0.0)


class Deferred:
    def handed_back(self, plugin, registry):
        try:
            stop = lambda: plugin.shutdown_hook()  # expect: JW002

            def later():
                return plugin.shutdown_hook()  # expect: JW002

            return stop, later
        finally:
            registry.record_hook(plugin.name, "shutdown", None)

    def recorded_sometimes(self, tool, registry):
        try:
            return tool.func(None)  # expect: JW002
        finally:
            if tool.counted:
                registry.record_execution(tool.name, "ok", 0.0)

    def recorded_in_a_loop(self, tool, registry, names):
        try:
            return tool.func(None)  # expect: JW002
        finally:
            for name in names:
                registry.record_execution(name, "ok", 0.0)

    def recorded_only_on_error(self, tool, registry, log):
        try:
            return tool.func(None)  # expect: JW002
        finally:
            try:
                log("done")
            except Exception:
                registry.record_execution(tool.name, "ok", 0.0)


class Counting:
    def counted_twice_on_success(self, tool, registry):
        try:
            value = tool.func(None)
            registry.record_execution(tool.name, "ok", 0.0)  # expect: JW002
            return value
        finally:
            registry.record_execution(tool.name, "done", 0.0)


def _only_recursive(tool, n):
    return _only_recursive(tool, n - 1) if n else tool.func(n)  # expect: JW002


startup = plugin.startup_hook()  # expect: JW002
