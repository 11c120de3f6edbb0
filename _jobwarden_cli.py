"""The ``jobwarden`` console script's entry point, outside the package on purpose.

Importing ``jobwarden.cli`` takes about a second (the package's public API, click, rich, aiohttp),
and a Ctrl-C in that time raised KeyboardInterrupt from an import in the script that pip
generates, where nothing could catch it: Python printed a traceback. Any entry point inside the
``jobwarden`` package runs the package's ``__init__`` before its own first line, so this one lives
beside it and imports nothing of jobwarden's until it can catch the interrupt.
"""

import sys

INTERRUPTED = 130


def main() -> int:
    """Import the command line and run it; Ctrl-C at any point is one line and exit 130."""
    try:
        from jobwarden.cli.root import main as run

        return run()
    except KeyboardInterrupt:
        sys.stderr.write("jobwarden: interrupted\n")
        return INTERRUPTED
