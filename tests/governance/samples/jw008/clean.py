"""JW008 clean: explicit streams, loggers and methods that happen to be called print."""

import pprint
import sys


def report(value, console, logger):
    sys.stdout.write(f"{value}\n")
    console.print(value)
    pprint.pprint(value, stream=sys.stderr)
    logger.info("reported", value=value)
