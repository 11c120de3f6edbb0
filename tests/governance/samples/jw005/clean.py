"""JW005 clean: broad handlers that re-raise, and handlers that are not broad."""

import contextlib

import anyio


def careful(work, cleanup, lock, log):
    try:
        work()
    except BaseException:
        cleanup()
        raise
    try:
        work()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            log("interrupted")
        raise RuntimeError("work failed") from exc
    try:
        work()
    except (OSError, BaseException):
        with lock:
            try:
                cleanup()
            finally:
                raise
    try:
        work()
    except:
        cleanup()
        raise
    try:
        work()
    except Exception:
        log("failed")
    try:
        work()
    except BaseExceptionGroup:
        log("group")


def forward_into(coro, value):
    try:
        return coro.send(value)
    except BaseException as exc:
        return coro.throw(exc)


def cancellation(work, log):
    cancelled = anyio.get_cancelled_exc_class()
    try:
        work()
    except cancelled:
        log("cancelled")
        raise
    with contextlib.suppress(ProcessLookupError, Exception):
        work()
    try:
        work()
    except KeyboardInterrupt:
        return 130
    return None
