"""`python -m jobwarden.governance [paths...] [--json]`: run the governance scanner."""

from jobwarden.governance.scanner import main

raise SystemExit(main())
