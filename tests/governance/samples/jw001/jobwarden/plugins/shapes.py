"""JW001 clean: a plugin's tools share a plain helper instead of calling one another."""

from jobwarden.plugins.tool import Plugin

shapes = Plugin("shapes")


def _area(width, height):
    return width * height


@shapes.tool(timeout=5.0)
async def area(inp, ctx):
    return _area(inp.width, inp.height)


@shapes.tool()
async def volume(inp, ctx):
    return _area(inp.width, inp.height) * inp.depth


@shapes.on_startup
async def warm_up():
    return None
