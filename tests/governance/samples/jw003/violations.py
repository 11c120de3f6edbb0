"""JW003 violations: "default" hard-coded as a tool name."""

DEFAULT_TOOL = "default"  # expect: JW003


class Route:
    def __init__(self):
        self.tool_name = "default"  # expect: JW003
        self.Tool: str = "default"  # expect: JW003

    async def submit(self, sup, body):
        return await sup.submit(tool="default", input=body)  # expect: JW003


def pick(plugin, tool_name="default"):  # expect: JW003
    return plugin


def pick_keyword(plugin, *, tool="default"):  # expect: JW003
    return plugin


def from_body(body, req):
    name = body.get("tool", "default")  # expect: JW003
    tool = body.get("tool") or "default"  # expect: JW003
    if body["tool"] == "default":  # expect: JW003
        return name
    if "default" != req.tool_name:  # expect: JW003
        return tool
    if req.tool in ("default", "main"):  # expect: JW003
        return None
    return {"tool": "default", "input": {}}  # expect: JW003


def lookups(plugin, registry, sup, body, name, tool):
    first = plugin.tools["default"]  # expect: JW003
    second = plugin.tools.get("default")  # expect: JW003
    third = registry.tool("default")  # expect: JW003
    body.setdefault("tool", "default")  # expect: JW003
    sup.submit("demo.default", {})  # expect: JW003
    sup.run(f"{name}.default", {})  # expect: JW003
    match tool:
        case "echo" | "default":  # expect: JW003
            return first, second, third
    return None
