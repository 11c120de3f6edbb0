"""JW005 violations: cancellation swallowed by bare or BaseException handlers."""

import builtins


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
