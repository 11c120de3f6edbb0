"""JW001 clean: reading plugin attributes without calling them, outside the allow-list."""


class Tool:
    def __init__(self, func, name):
        self.func = func
        self.name = name


def describe(tool, plugin):
    hooks = (plugin.startup, plugin.shutdown)
    return {"name": tool.func.__qualname__, "doc": tool.func.__doc__, "hooks": hooks}


def build(fn):
    return Tool(func=fn, name=fn.__name__)


async def start(service, tool):
    await service.startup()
    return tool.function(1)


def hooks_declared(plugin):
    return [
        kind
        for kind, hook in (("startup", plugin.startup_hook), ("shutdown", plugin.shutdown_hook))
        if hook is not None
    ]


def label(tool):
    run = tool.func
    if run is None or not tool.func:
        return "none"
    return f"{run.__module__}.{run.__qualname__} {tool.func!r}"
