"""JW007 clean: blocking sleeps that run off the event loop, and async sleeps."""

import time

import anyio


async def work():
    await anyio.sleep(0.1)

    def blocking():
        time.sleep(0.1)

    await anyio.to_thread.run_sync(blocking)
    await anyio.to_thread.run_sync(lambda: time.sleep(0.1))
    await anyio.to_thread.run_sync(time.sleep, 0.1)


def synchronous():
    time.sleep(0.1)
