"""JW001 violation (JW002 for its record): a tool_runner.py outside the jobwarden package."""


def run(tool, registry):
    try:
        return tool.func(None)  # expect: JW001
    finally:
        registry.record_execution(tool.name, "ok", 0.0)  # expect: JW002
