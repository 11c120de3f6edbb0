"""JW009 clean: an application with the envelope middleware, and a sub-application under it."""

from aiohttp import web

from jobwarden.transport.middleware import request_middleware


def create(settings, handler):
    app = web.Application(middlewares=[request_middleware()], client_max_size=settings.max)
    admin = web.Application()
    admin.router.add_get("/", handler)
    app.add_subapp("/admin", admin)
    return app
