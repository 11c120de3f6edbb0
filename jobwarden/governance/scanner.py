"""Find the Python files, run every governance rule on each, and report: the `scan` command."""

from __future__ import annotations

import argparse
import ast
import errno
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import msgspec

from jobwarden.governance.findings import Finding, shown_path
from jobwarden.governance.rules import CHECKS, Source, ToolIndex

PACKAGE_DIR = Path(__file__).resolve().parent.parent


# Importable, but with no source to check: bytecode beside the sources (not in __pycache__),
# which Python imports when the .py is missing, and extension modules.
_SOURCELESS = (".pyc", ".so", ".pyd")


def _raise(error: OSError) -> None:
    raise error


def python_files(paths: Sequence[str | Path]) -> list[Path]:
    """The .py files under the given directories, plus the given files, each listed once.

    Directories linked into the tree are walked (each real directory once): their modules
    import like any other. Importable files with no source (`_SOURCELESS`) are listed too, for
    `scan_file` to report. Raises FileNotFoundError for a path that does not exist, and the
    OSError of a directory that cannot be listed: a typo or an unreadable directory must not
    read as "clean".
    """
    found: dict[Path, Path] = {}
    for given in map(Path, paths):
        if given.is_dir():
            walked: set[str] = set()
            for root, dirs, names in os.walk(given, onerror=_raise, followlinks=True):
                real = os.path.realpath(root)
                if real in walked:  # a link back up the tree
                    dirs[:] = []
                    continue
                walked.add(real)
                # Hidden directories cover .venv, .git and the tool caches.
                dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
                for name in sorted(names):
                    if name.endswith((".py", *_SOURCELESS)):
                        file = Path(root, name)
                        found.setdefault(file.resolve(), file)
        elif given.exists():
            found.setdefault(given.resolve(), given)
        else:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(given))
    return list(found.values())


def scan_file(path: Path, tools: ToolIndex | None = None) -> list[Finding]:
    """Every finding in one file; a file that cannot be parsed is a single JW000 finding, and a
    check that cannot follow its nesting adds one. `tools` caches what the modules it imports
    declare plugin code, across the files of one scan."""
    shown = shown_path(path)
    if path.name.endswith(_SOURCELESS):
        return [Finding(shown, 1, 1, "JW000", "importable module without source to check")]
    try:
        with warnings.catch_warnings():
            # Warnings about the scanned code (invalid escapes, ...) are not the scanner's to show.
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        # An unknown coding cookie reports line 0, column -1: findings are 1-based.
        line, col = max(exc.lineno or 1, 1), max(exc.offset or 1, 1)
        return [Finding(shown, line, col, "JW000", f"cannot parse: {exc.msg}")]
    except ValueError as exc:  # null bytes in the source
        return [Finding(shown, 1, 1, "JW000", f"cannot parse: {exc}")]
    except (RecursionError, MemoryError):
        # CPython's parser gives up on deeply nested expressions with one or the other.
        return [Finding(shown, 1, 1, "JW000", "cannot parse: nested too deeply")]
    source = Source(path, tree, ToolIndex() if tools is None else tools)
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings.extend(check(source))
        except RecursionError:
            # Parsed, yet nested past what a check can follow: say the file went unchecked
            # rather than pass it, or stop the scan with a traceback.
            findings.append(
                Finding(shown, 1, 1, "JW000", f"nested too deeply to check: {check.__name__}")
            )
    return findings


def _scan(files: list[Path]) -> list[Finding]:
    tools = ToolIndex()
    return sorted(finding for file in files for finding in scan_file(file, tools))


def scan_paths(paths: Sequence[str | Path]) -> list[Finding]:
    """The sorted findings in the .py files under `paths` (files or directories)."""
    return _scan(python_files(paths))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary(findings: list[Finding], scanned: int) -> str:
    if not findings:
        return f"no violations in {_count(scanned, 'file')}"
    files = len({finding.path for finding in findings})
    return f"{_count(len(findings), 'violation')} in {_count(files, 'file')}"


def main(argv: Sequence[str] | None = None) -> int:
    """`scan [paths...] [--json]`: exit 0 when clean, 1 on any finding, 2 for a missing path."""
    parser = argparse.ArgumentParser(
        prog="jobwarden scan", description="Check code against jobwarden's governance rules."
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        default=[PACKAGE_DIR],
        metavar="PATH",
        help="files or directories to scan (default: the installed jobwarden package)",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON array")
    args = parser.parse_args(argv)
    try:
        files = python_files(args.paths)
        findings = _scan(files)
    except OSError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(findings).decode() + "\n")
    else:
        sys.stdout.writelines(f"{finding}\n" for finding in findings)
    sys.stderr.write(_summary(findings, len(files)) + "\n")
    return 1 if findings else 0
