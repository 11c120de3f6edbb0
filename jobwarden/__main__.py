"""``python -m jobwarden``: the command line."""

from jobwarden.cli import main

raise SystemExit(main())
