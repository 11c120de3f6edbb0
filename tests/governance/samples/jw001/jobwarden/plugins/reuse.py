"""JW001 violations: tools, declared here or imported, called directly instead of run as jobs."""

import jobwarden.plugins.shapes
from jobwarden.plugins import shapes as shapes_module
from jobwarden.plugins.shapes import area
from jobwarden.plugins.tool import Plugin

from . import shapes
from .shapes import volume as vol

reuse = Plugin("reuse")


@reuse.tool()
async def twice(inp, ctx):
    return 2 * await area(inp, ctx)  # expect: JW001


@reuse.tool()
async def thrice(inp, ctx):
    return await twice(inp, ctx) + await area(inp, ctx)  # expect: JW001, JW001


async def helper(inp, ctx):
    first = await shapes.volume(inp, ctx)  # expect: JW001
    second = await vol(inp, ctx)  # expect: JW001
    third = await shapes_module.area(inp, ctx)  # expect: JW001
    fourth = await jobwarden.plugins.shapes.area(inp, ctx)  # expect: JW001
    return first + second + third + fourth


def start_again():
    return shapes.warm_up()  # expect: JW001


def plain(inp):
    return shapes._area(inp.width, inp.height), shapes.shapes.name, area.__name__
