"""JW003 clean: "default" in places that do not name a tool, and tools chosen properly."""


def first_tool(plugin, body, settings, tool=None):
    tool_name = tool or body.get("tool") or plugin.tools[0].name
    mode = "default"
    timeout = settings.get("timeout", "default")
    if tool_name == "echo" or mode == "default":
        return {"profile": "default", "tool": tool_name, "timeout": timeout}
    return configure(level="default", tool=tool_name)


def configure(level, tool):
    return level, tool


def lookups(plugin, sup, settings, styles, mode):
    settings.setdefault("mode", "default")
    sup.submit(plugin.tools[0].name, {"file": "default.json"})
    match mode:
        case "default":
            return styles["default"]
    return None
