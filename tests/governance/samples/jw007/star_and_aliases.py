"""JW007 violations: time.sleep reached through a star import and an alias."""

import time
from time import *


async def poll():
    sleep(1)  # expect: JW007
    nap = time.sleep
    nap(1)  # expect: JW007
