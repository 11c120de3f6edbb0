"""JW007 violations: time.sleep blocking the event loop inside coroutines."""

import time
import time as clock
from time import sleep
from time import sleep as nap


async def poll():
    time.sleep(1)  # expect: JW007
    clock.sleep(1)  # expect: JW007
    sleep(1)  # expect: JW007
    nap(1)  # expect: JW007


async def outer():
    async def inner():
        time.sleep(1)  # expect: JW007

    return inner


class Worker:
    async def run(self):
        if self.slow:
            time.sleep(0.1)  # expect: JW007
