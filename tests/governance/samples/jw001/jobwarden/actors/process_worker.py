"""JW001 clean: the process worker's child-side entry is allowed to call plugin code."""


def child_main(tool, inp, registry):
    try:
        return tool.func(inp)
    finally:
        registry.record_execution(tool.name, "ok", 0.0)
