"""JW009 violations: applications and servers whose errors would answer without the envelope."""

import aiohttp
from aiohttp import web
from aiohttp.web import Application

from jobwarden.transport.middleware import request_middleware


def health_app(handler):
    app = web.Application()  # expect: JW009
    app.router.add_get("/health", handler)
    return app


def others(options, extra):
    first = Application(middlewares=[extra])  # expect: JW009
    second = aiohttp.web.Application(**options)  # expect: JW009
    chain = [request_middleware()]
    third = web.Application(middlewares=chain)  # expect: JW009
    raw = web.Server(options.handler)  # expect: JW009
    return first, second, third, raw
