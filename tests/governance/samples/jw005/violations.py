"""JW005 violations: cancellation swallowed by bare or BaseException handlers."""

import asyncio
import builtins
import contextlib
from contextlib import suppress

import anyio
import trio


def swallow(work, log):
    try:
        work()
    except:  # expect: JW005
        pass
    try:
        work()
    except BaseException:  # expect: JW005
        log("failed")
    try:
        work()
    except (ValueError, BaseException):  # expect: JW005
        log("failed")
    try:
        work()
    except (Exception, BaseException) as exc:  # expect: JW005

        def later():
            raise

        log(exc, later)
    try:
        work()
    except builtins.BaseException as exc:  # expect: JW005
        raise_later = exc
        return raise_later


def forwards_something_else(coro, other):
    try:
        return coro.send(None)
    except BaseException as exc:  # expect: JW005
        return coro.throw(other)


def cancellation(work, log):
    cancelled = anyio.get_cancelled_exc_class()
    try:
        work()
    except asyncio.CancelledError:  # expect: JW005
        log("cancelled")
    try:
        work()
    except trio.Cancelled:  # expect: JW005
        pass
    try:
        work()
    except cancelled:  # expect: JW005
        pass
    try:
        work()
    except anyio.get_cancelled_exc_class():  # expect: JW005
        pass
    with contextlib.suppress(BaseException):  # expect: JW005
        work()
    with suppress(OSError, asyncio.CancelledError):  # expect: JW005
        work()
