"""JW001 violation: the allow-list matches whole file names, not a name's ending."""


def run(tool, registry):
    try:
        return tool.func(None)  # expect: JW001
    finally:
        registry.record_execution(tool.name, "ok", 0.0)
