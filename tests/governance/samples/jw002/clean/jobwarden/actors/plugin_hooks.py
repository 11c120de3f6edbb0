"""JW002 clean: a plugin hook runs under a try whose finally records it with record_hook."""


async def start_plugin(registry, plugin):
    error = "was interrupted"
    try:
        await plugin.startup_hook()
        error = None
    finally:
        registry.record_hook(plugin.name, "startup", error)
