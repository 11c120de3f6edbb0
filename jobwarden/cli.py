"""The ``jobwarden`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jobwarden.governance import scanner


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jobwarden <command> ...`` and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="jobwarden", description=__doc__)
    parser.add_argument("command", choices=["scan"], help="scan: run the governance scanner")
    if not args or args[0] in {"-h", "--help"}:
        parser.print_help(sys.stdout)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "scan":
        return scanner.main(rest)
    parser.error(f"unknown command {command!r}")
    return 2
