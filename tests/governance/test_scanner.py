"""The governance scanner: each rule against its samples, the file walk, and the command line.

Each sample under samples/ marks the lines it breaks with `# expect: JWnnn`; a sample without
markers must come out clean.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from jobwarden.governance import RULES, Finding, scan_paths
from jobwarden.governance.scanner import PACKAGE_DIR, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE_FILES = sorted(SAMPLES.rglob("*.py"))
RULE_CODES = [f"JW00{n}" for n in range(1, 10)]
_EXPECT = re.compile(r"#\s*expect:\s*(JW\d{3}(?:\s*,\s*JW\d{3})*)")


def _expected(path: Path) -> list[tuple[str, int]]:
    marked = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if match := _EXPECT.search(line):
            marked += [(code.strip(), number) for code in match.group(1).split(",")]
    return sorted(marked)


def _found(path: Path) -> list[tuple[str, int]]:
    return [(finding.code, finding.line) for finding in scan_paths([path])]


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: str(p.relative_to(SAMPLES)))
def test_sample_findings_match_its_expect_markers(sample: Path) -> None:
    """Every sample yields exactly the codes and lines its `# expect:` markers name, no more."""
    assert _found(sample) == _expected(sample)


@pytest.mark.parametrize("code", RULE_CODES)
def test_every_rule_has_a_violating_and_a_clean_sample(code: str) -> None:
    """Each rule's sample directory holds a file that breaks the rule and one that is clean."""
    files = sorted((SAMPLES / code.lower()).rglob("*.py"))
    assert any(code in {marked for marked, _ in _expected(file)} for file in files)
    assert any(not _expected(file) for file in files)


def test_rules_name_every_code_the_scanner_emits() -> None:
    """RULES describes exactly JW000 to JW009, the codes the code and docs refer to."""
    assert sorted(RULES) == ["JW000", *RULE_CODES]


def test_finding_prints_as_path_line_col_code_message() -> None:
    """A finding renders as `path:line:col: CODE message`, the format editors jump to."""
    finding = Finding("pkg/mod.py", 3, 5, "JW008", "print() call")
    assert str(finding) == "pkg/mod.py:3:5: JW008 print() call"


def test_columns_are_one_based() -> None:
    """A finding at the start of a line reports column 1, as compilers and ruff do."""
    [finding] = scan_paths([SAMPLES / "jw008" / "violations.py"])[:1]
    assert (finding.line, finding.col) == (7, 1)


def test_unparsable_files_become_jw000_findings_and_the_scan_goes_on(tmp_path: Path) -> None:
    """A syntax error or a null byte is a JW000 finding, and the other files are still scanned."""
    (tmp_path / "broken.py").write_text("def broken(:\n    pass\n")
    (tmp_path / "nul.py").write_bytes(b"x = 1\x00\n")
    (tmp_path / "noisy.py").write_text("print('hi')\n")
    findings = scan_paths([tmp_path])
    assert [(Path(f.path).name, f.code, f.line) for f in findings] == [
        ("broken.py", "JW000", 1),
        ("noisy.py", "JW008", 1),
        ("nul.py", "JW000", 1),
    ]


def test_source_too_deep_for_the_parser_is_a_jw000_finding(tmp_path: Path) -> None:
    """Nesting that makes the parser raise MemoryError or RecursionError is a JW000 finding."""
    (tmp_path / "minus.py").write_text("x = " + "-" * 50_000 + "1\n")
    (tmp_path / "ifs.py").write_text("x = " + " if c else ".join(["1"] * 5_000) + "\n")
    findings = scan_paths([tmp_path])
    assert [(Path(f.path).name, f.code, f.line, f.col) for f in findings] == [
        ("ifs.py", "JW000", 1, 1),
        ("minus.py", "JW000", 1, 1),
    ]


def test_unknown_source_encoding_is_reported_at_line_1_column_1(tmp_path: Path) -> None:
    """An unknown coding cookie (reported by Python at line 0, column -1) is JW000 at 1:1."""
    (tmp_path / "cookie.py").write_bytes(b"# coding: no-such-codec\nx = 1\n")
    [finding] = scan_paths([tmp_path])
    assert (finding.code, finding.line, finding.col) == ("JW000", 1, 1)
    assert "unknown encoding" in finding.message


def test_a_thousand_conditionals_deep_are_still_checked(tmp_path: Path) -> None:
    """A tool name chosen through a chain of a thousand conditionals is read, not a crash."""
    chain = " if c else ".join(['"echo"'] * 1_000 + ['"default"'])
    (tmp_path / "chain.py").write_text(f"tool_name = {chain}\n")
    assert [f.code for f in scan_paths([tmp_path])] == ["JW003"]


def test_a_check_that_cannot_follow_the_nesting_reports_jw000(tmp_path: Path) -> None:
    """A file nested past what a check can follow gets a JW000 finding naming the check."""
    receiver = " if c else ".join(["x"] * 1_000)
    (tmp_path / "deep.py").write_text(f"({receiver}).loop.create_task(job())\n")
    [finding] = scan_paths([tmp_path])
    assert (finding.code, finding.message) == (
        "JW000",
        "nested too deeply to check: unstructured_task",
    )


def test_a_file_name_that_is_not_utf8_is_reported_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with bytes that are not UTF-8 is reported escaped, in text and in JSON."""
    (tmp_path / os.fsdecode(b"bad\xff.py")).write_text("print(1)\n")
    assert main([str(tmp_path)]) == 1
    assert (
        capsys.readouterr().out
        == f"{tmp_path}/bad\\xff.py:1:1: JW008 print() call; log, or write to a stream\n"
    )
    assert main([str(tmp_path), "--json"]) == 1
    [finding] = msgspec.json.decode(capsys.readouterr().out, type=list[Finding])
    assert finding.path == f"{tmp_path}/bad\\xff.py"


@pytest.mark.timeout(30)
def test_jw002_judges_a_deep_chain_of_helpers_in_linear_time(tmp_path: Path) -> None:
    """Forty helpers each calling the next twice are judged once each, not once per path (2**40)."""
    helpers = ["def helper0(tool):\n    return tool.func(1)\n"]
    helpers += [
        f"def helper{n}(tool):\n    helper{n - 1}(tool)\n    return helper{n - 1}(tool)\n"
        for n in range(1, 40)
    ]
    entry = (
        "def entry(tool, registry):\n    try:\n        return helper39(tool)\n"
        "    finally:\n        registry.record_execution(tool.name, 'ok', 0.0)\n"
    )
    runner = tmp_path / "jobwarden" / "actors" / "tool_runner.py"
    runner.parent.mkdir(parents=True)
    runner.write_text("\n".join([*helpers, entry]))
    assert scan_paths([runner]) == []


_RUNNER = """\
def run(tool, registry):
    try:
        return tool.func(None)
    finally:
        registry.record_execution(tool.name, "ok", 0.0)
"""


def test_allow_list_needs_jobwarden_to_be_a_top_level_package(tmp_path: Path) -> None:
    """A tool_runner.py in a jobwarden package nested inside another package is not allowed."""
    for package in ["jobwarden", "jobwarden/plugins"]:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    nested = tmp_path / "jobwarden/plugins/jobwarden/actors/tool_runner.py"
    nested.parent.mkdir(parents=True)
    nested.write_text(_RUNNER)
    real = tmp_path / "jobwarden/actors/tool_runner.py"
    real.parent.mkdir()
    real.write_text(_RUNNER)
    assert [(f.path, f.code) for f in scan_paths([tmp_path])] == [
        (str(nested), "JW001"),
        (str(nested), "JW002"),  # its record_execution, outside the ToolRunner
    ]


def test_allow_list_does_not_follow_symbolic_links(tmp_path: Path) -> None:
    """A module linked to a tool_runner.py elsewhere is judged by its own, importable name."""
    target = tmp_path / "elsewhere/jobwarden/actors/tool_runner.py"
    target.parent.mkdir(parents=True)
    target.write_text(_RUNNER)
    link = tmp_path / "project/jobwarden/plugins/runner.py"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    assert [(f.path, f.code) for f in scan_paths([link])] == [
        (str(link), "JW001"),
        (str(link), "JW002"),  # its record_execution, outside the ToolRunner
    ]


def test_walk_skips_hidden_venv_and_pycache_directories(tmp_path: Path) -> None:
    """Only .py files outside hidden, .venv and __pycache__ directories are scanned."""
    for relative in [
        "a.py",
        "sub/b.py",
        ".venv/lib/c.py",
        "__pycache__/d.py",
        ".hidden/e.py",
        "notes.txt",
    ]:
        file = tmp_path / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("print(1)\n")
    scanned = {Path(f.path).relative_to(tmp_path).as_posix() for f in scan_paths([tmp_path])}
    assert scanned == {"a.py", "sub/b.py"}


def test_walk_enters_linked_directories_once(tmp_path: Path) -> None:
    """A directory linked into the tree is scanned, and a link back up the tree only once."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "noisy.py").write_text("print(1)\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "linked").symlink_to(tmp_path / "outside")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path / "pkg")
    findings = scan_paths([tmp_path / "pkg"])
    assert [(f.path, f.code) for f in findings] == [
        (str(tmp_path / "pkg" / "linked" / "noisy.py"), "JW008")
    ]


def test_a_directory_that_cannot_be_listed_fails_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable directory is an error (exit 2), not a part of the tree left out as clean."""
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path)

    # A chmod does not lock a directory for root (these tests may run as root): the listing fails.
    monkeypatch.setattr(os, "scandir", scandir)
    assert main([str(tmp_path)]) == 2
    assert "Permission denied" in capsys.readouterr().err


def test_importable_modules_without_source_are_jw000_findings(tmp_path: Path) -> None:
    """Bytecode beside the sources and extension modules import, but cannot be checked."""
    for name in ["stale.pyc", "native.cpython-311-x86_64-linux-gnu.so", "__pycache__/m.pyc"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"\x00")
    findings = scan_paths([tmp_path])
    assert [(Path(f.path).name, f.code) for f in findings] == [
        ("native.cpython-311-x86_64-linux-gnu.so", "JW000"),
        ("stale.pyc", "JW000"),
    ]


def test_findings_are_sorted_and_listed_once_for_overlapping_paths() -> None:
    """Findings come back sorted, and a file named twice (directly and by directory) counts once."""
    directory = SAMPLES / "jw008"
    findings = scan_paths([directory / "violations.py", directory])
    assert findings == sorted(findings)
    assert len(findings) == len(_expected(directory / "violations.py"))


def test_main_exits_0_and_reports_no_violations_on_clean_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A clean scan exits 0, prints nothing on stdout and the file count on stderr."""
    assert main([str(SAMPLES / "jw008" / "clean.py"), str(SAMPLES / "jw007" / "clean.py")]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "no violations in 2 files\n"


def test_main_exits_1_and_prints_one_line_per_finding(capsys: pytest.CaptureFixture[str]) -> None:
    """A scan with violations exits 1, prints each finding on its own line and a summary."""
    path = SAMPLES / "jw008"
    assert main([str(path)]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(finding) for finding in scan_paths([path])]
    assert err == "7 violations in 1 file\n"


def test_main_json_output_parses_back_to_the_findings(capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints one JSON array that decodes back to the same findings."""
    path = SAMPLES / "jw006"
    assert main([str(path), "--json"]) == 1
    out, _ = capsys.readouterr()
    assert msgspec.json.decode(out, type=list[Finding]) == scan_paths([path])
    assert set(json.loads(out)[0]) == {"path", "line", "col", "code", "message"}


def test_main_exits_2_for_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is an error (exit 2), never a clean scan."""
    assert main([str(SAMPLES / "no-such-dir")]) == 2
    assert "no-such-dir" in capsys.readouterr().err


def test_main_scans_the_jobwarden_package_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Without paths, main scans the package directory: same output as naming it explicitly."""
    default_code = main([])
    default_output = capsys.readouterr()
    assert main([str(PACKAGE_DIR)]) == default_code
    assert capsys.readouterr() == default_output


def test_package_breaks_none_of_the_general_rules() -> None:
    """The jobwarden package, as far as it is written, has no JW003-JW008 findings."""
    general = {"JW003", "JW004", "JW005", "JW006", "JW007", "JW008"}
    assert [str(f) for f in scan_paths([PACKAGE_DIR]) if f.code in general] == []


def test_scan_script_runs_the_scanner() -> None:
    """scripts/scan runs the scanner from the project virtualenv and passes its exit code on."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "scan"), str(SAMPLES / "jw008"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert len(json.loads(result.stdout)) == 7
