"""JW002 violations: a plugin hook in the hooks module whose outcome nothing records."""


async def stop_plugin(registry, plugin):
    try:
        await plugin.shutdown_hook()  # expect: JW002
    finally:
        registry.set_lifecycle(plugin.name, "unavailable")
