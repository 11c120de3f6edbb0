"""JW001 violation: a tool_runner.py outside the jobwarden package is not on the allow-list."""


def run(tool, registry):
    try:
        return tool.func(None)  # expect: JW001
    finally:
        registry.record_execution(tool.name, "ok", 0.0)
