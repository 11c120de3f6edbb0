"""The ``jobwarden`` command line: ``serve``, ``tools`` and ``scan`` on this machine; ``submit``,
``watch``, ``jobs`` and ``cancel`` against a running server."""

from jobwarden.cli.root import cli, main

__all__ = ["cli", "main"]
