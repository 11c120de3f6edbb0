"""``python -m jobwarden``: the command line."""

import sys

try:
    from jobwarden.cli import main
except KeyboardInterrupt:
    # runpy imported the package before this line, and a Ctrl-C then is Python's to report; this
    # covers the command line's own imports, the larger part (the console script covers both).
    sys.stderr.write("jobwarden: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
