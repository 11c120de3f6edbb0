"""The governance scanner: mechanical checks that keep jobwarden's architecture honest.

`scan_paths` returns the `Finding`s for files or directories; `RULES` names every code it emits.
`python -m jobwarden.governance` (or `scripts/scan`, `jobwarden scan`) is the command line.
"""

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules import RULES
from jobwarden.governance.scanner import scan_paths

__all__ = ["RULES", "Finding", "scan_paths"]
