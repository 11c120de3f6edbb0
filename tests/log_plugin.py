"""A plugin whose tools log, named by ``tests.log_plugin:chatty``: structlog and stdlib loggers,
on the event loop and in a worker thread, none of them passing the job's ids themselves."""

from __future__ import annotations

import logging

import msgspec
import structlog

from jobwarden import Plugin, ToolContext

chatty = Plugin("chatty", version="1.0.0")


class Say(msgspec.Struct):
    """What to log."""

    text: str = "hello"


class Said(msgspec.Struct):
    """What was logged."""

    text: str


@chatty.tool()
async def say(inp: Say, ctx: ToolContext) -> Said:
    """Log ``text`` through structlog, ctx.log and a stdlib logger, on the event loop."""
    structlog.get_logger("chatty").info("structlog line", text=inp.text)
    ctx.log.info("ctx line", text=inp.text)
    logging.getLogger("chatty.stdlib").warning("stdlib line %s", inp.text)
    return Said(text=inp.text)


@chatty.tool(mode="thread")
def say_in_thread(inp: Say, ctx: ToolContext) -> Said:
    """Log ``text`` through structlog and a stdlib logger, from a worker thread."""
    structlog.get_logger("chatty").info("thread line", text=inp.text)
    logging.getLogger("chatty.stdlib").warning("thread stdlib line %s", inp.text)
    return Said(text=inp.text)
