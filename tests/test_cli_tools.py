"""`jobwarden tools` and the plugin config file: what the server would load, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobwarden.cli import main
from jobwarden.server import ConfigError, ServeOptions, config_plugins, load_registry


def test_tools_prints_each_plugin_and_its_tools(capsys: pytest.CaptureFixture[str]) -> None:
    """The text listing names each plugin with its version and each tool with mode and timeout."""
    assert main(["tools", "--no-entry-points"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("builtin 1.0.0: Reference tools shipped with jobwarden.\n")
    assert "  builtin.sha256 [thread, timeout 60s] Hash the given bytes" in out
    assert "  imaging.inspect [process, timeout 30s] Format, size, mode" in out


def test_no_builtin_leaves_out_both_shipped_plugins() -> None:
    """--no-builtin (builtin=False) loads neither builtin nor imaging."""
    registry = load_registry(ServeOptions(builtin=False, entry_points=False))
    assert registry.plugin_names() == []


def test_tools_json_lists_manifests_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one document; a plugin that fails is listed with its reason and exits 1."""
    code = main(["tools", "--no-entry-points", "--plugin", "json:dumps", "--json"])
    captured = capsys.readouterr()
    listing = json.loads(captured.out)
    assert code == 1
    assert [p["name"] for p in listing["plugins"]] == ["builtin", "imaging"]
    echo = listing["plugins"][0]["tools"][0]
    assert echo["name"] == "builtin.echo"
    assert echo["input_schema"]["$defs"]["EchoIn"]["required"] == ["text"]
    assert listing["failed"] == [
        {"source": "json:dumps", "reason": "'json:dumps' is a function, not a jobwarden Plugin"}
    ]
    assert "plugin failed to load" in captured.err


def test_tools_text_marks_failures_and_hooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file's plugins are listed too; failures end the text listing."""
    config = tmp_path / "jobwarden.toml"
    config.write_text('plugins = ["tests.actors.test_circuit_breaker:flaky_plugin", "nope_x:p"]\n')
    code = main(["tools", "--no-entry-points", "--no-builtin", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines() == [
        "FAILED tests.actors.test_circuit_breaker:flaky_plugin:"
        " 'tests.actors.test_circuit_breaker:flaky_plugin' is a function, not a jobwarden Plugin",
        "FAILED nope_x:p: importing nope_x raised ModuleNotFoundError: No module named 'nope_x'",
    ]


def test_tools_lists_a_bare_loaded_plugin_name_as_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--plugin builtin, with builtin loaded, is listed FAILED (exit 1) instead of crashing."""
    code = main(["tools", "--no-entry-points", "--plugin", "builtin"])
    assert code == 1
    out = capsys.readouterr().out
    assert out.startswith("builtin 1.0.0: ")
    assert out.splitlines()[-1] == "FAILED 'builtin': 'builtin' is not of the form module:attr"


def test_a_plugin_with_hooks_and_a_breaker_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    """Hooks and the breaker show in the text listing."""
    code = main(["tools", "--no-entry-points", "--no-builtin", "--plugin", "tests.cli_plugin:demo"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "demo 0.2.0 (hooks: startup, shutdown)",
        "  demo.ping [async, no timeout, breaker after 3] Answer pong.",
    ]


def test_tools_prints_seconds_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """Whole seconds list as ints (5, not the 5.0 registration stores), others in full."""
    args = ["tools", "--no-entry-points", "--no-builtin", "--plugin", "tests.cli_plugin:timed"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    slow, slower = json.loads(capsys.readouterr().out)["plugins"][0]["tools"]
    assert text.splitlines()[1:] == [
        "  timed.slow [async, timeout 5s, breaker after 2] Answer late.",
        "  timed.slower [async, timeout 1234567.5s] Answer later.",
    ]
    seconds = [
        slow["timeout_s"],
        slow["total_timeout_s"],
        slow["queue_timeout_s"],
        slow["retry"]["backoff_s"],
        slow["retry"]["max_backoff_s"],
        slow["circuit"]["window_s"],
        slow["circuit"]["cooldown_s"],
    ]
    # Compared as JSON text: 5 and 5.0 are equal numbers, but only the first is as written.
    assert json.dumps(seconds) == "[5, 2.5, 1234567, 1, 30, 90, 30]"
    assert json.dumps(slower["timeout_s"]) == "1234567.5"


def test_a_bad_config_file_stops_tools_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable config file is a configuration error: exit 2 and the reason on stderr."""
    assert main(["tools", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_a_config_file_that_is_not_utf8_stops_tools_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file holding bytes that are not UTF-8 is refused as TOML with one line naming
    the file and the line (exit 2), instead of a UnicodeDecodeError traceback."""
    config = tmp_path / "c.toml"
    data = b'# plugins\nplugins = ["caf\xe9:p"]\n'
    config.write_bytes(data)
    byte = data.index(b"\xe9")
    assert main(["tools", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"jobwarden tools: config file {config} is not valid TOML:"
        f" invalid UTF-8 at line 2 (byte {byte})\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plugins = [", "is not valid TOML"),
        ('plugin = ["a:b"]', "unknown keys plugin"),
        ('plugins = "a:b"', 'plugins must be a list of "module:attr" strings'),
        ("plugins = [1]", 'plugins must be a list of "module:attr" strings'),
    ],
)
def test_config_file_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    """Invalid TOML, an unknown key or a wrong plugins value is a ConfigError naming the file."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config_plugins(str(config))


def test_the_registry_merges_flags_config_and_builtin(tmp_path: Path) -> None:
    """load_registry takes builtin and imaging, the --plugin names, then the config file's."""
    config = tmp_path / "c.toml"
    config.write_text('plugins = ["tests.cli_plugin:demo"]\n')
    assert config_plugins(str(config)) == ["tests.cli_plugin:demo"]
    options = ServeOptions(plugins=("nope_y:p",), config=str(config), entry_points=False)
    registry = load_registry(options)
    assert registry.plugin_names() == ["builtin", "imaging", "demo", "nope_y:p"]
    assert config_plugins(None) == []
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert config_plugins(str(empty)) == []


def test_plugins_and_switches_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """JOBWARDEN_PLUGINS is comma-separated (empty items skipped); the switches read 1/true."""
    monkeypatch.setenv("JOBWARDEN_PLUGINS", "tests.cli_plugin:demo,,json:dumps")
    monkeypatch.setenv("JOBWARDEN_NO_BUILTIN", "1")
    monkeypatch.setenv("JOBWARDEN_NO_ENTRY_POINTS", "true")
    assert main(["tools"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "demo 0.2.0 (hooks: startup, shutdown)",
        "  demo.ping [async, no timeout, breaker after 3] Answer pong.",
        "FAILED json:dumps: 'json:dumps' is a function, not a jobwarden Plugin",
    ]


def test_a_switch_with_a_value_that_is_not_boolean_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """JOBWARDEN_NO_BUILTIN=maybe stops with exit 2 naming the variable's flag."""
    monkeypatch.setenv("JOBWARDEN_NO_BUILTIN", "maybe")
    with pytest.raises(SystemExit) as caught:
        main(["tools"])
    assert caught.value.code == 2
    assert "--no-builtin" in capsys.readouterr().err


def test_tools_json_escapes_a_plugin_argument_that_is_not_utf8(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A --plugin byte that is not UTF-8 (a lone surrogate once decoded) is listed escaped."""
    spec = b"bad\xff:x".decode("utf-8", "surrogateescape")
    code = main(["tools", "--no-entry-points", "--no-builtin", "--json", "--plugin", spec])
    assert code == 1
    [failed] = json.loads(capsys.readouterr().out)["failed"]
    assert failed["source"] == "bad\\udcff:x"
    assert failed["reason"].startswith("importing bad\\udcff raised ModuleNotFoundError")
