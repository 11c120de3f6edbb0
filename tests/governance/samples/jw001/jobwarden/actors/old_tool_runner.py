"""JW001 violation (JW002 for its record): the allow-list matches whole names, not endings."""


def run(tool, registry):
    try:
        return tool.func(None)  # expect: JW001
    finally:
        registry.record_execution(tool.name, "ok", 0.0)  # expect: JW002
