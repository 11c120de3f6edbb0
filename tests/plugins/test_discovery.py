"""Plugin discovery: entry points, module:attr names, config files, and every way one fails."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jobwarden import PluginLifecycle, builtin, errors
from jobwarden.plugins.discovery import (
    ENTRY_POINT_GROUP,
    Discovered,
    PluginLoadError,
    build_registry,
    discover,
    entry_point_specs,
    load_spec,
)
from tests.plugins.test_registry import make_plugin

GOOD = """
import msgspec
from jobwarden import Plugin, ToolContext

class Text(msgspec.Struct):
    text: str

plugin = Plugin("{name}", version="3.0.0", description="Installed from a package.")

@plugin.tool(timeout=2)
async def shout(inp: Text, ctx: ToolContext) -> Text:
    return Text(text=inp.text.upper())
"""
RAISING = "raise RuntimeError('cannot configure the plugin')\n"


@dataclass
class Installed:
    """A tiny distribution on ``sys.path``: its modules' names and its plugin's name."""

    good: str
    raising: str
    plugin: str


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installed]:
    """A dist-info with ``jobwarden.plugins`` entry points: a good one, one that raises, and the
    good one again with extras and with a space after the colon."""
    tag = uuid.uuid4().hex[:8]
    found = Installed(good=f"jw_good_{tag}", raising=f"jw_raising_{tag}", plugin=f"shop{tag}")
    (tmp_path / f"{found.good}.py").write_text(GOOD.format(name=found.plugin))
    (tmp_path / f"{found.raising}.py").write_text(RAISING)
    dist = tmp_path / f"jw_shop_{tag}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: jw-shop-{tag}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{ENTRY_POINT_GROUP}]
            shop = {found.good}:plugin
            broken = {found.raising}:plugin
            extras = {found.good}:plugin [extra]
            spaced = {found.good}: plugin
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield found
    for module in (found.good, found.raising):
        sys.modules.pop(module, None)


def test_installed_entry_points_are_discovered(installed: Installed) -> None:
    """Every entry point is found; the good one loads (in every form), the raising one fails."""
    specs = entry_point_specs()
    assert ("shop", f"{installed.good}:plugin") in specs
    assert ("broken", f"{installed.raising}:plugin") in specs
    assert ("extras", f"{installed.good}:plugin") in specs
    assert ("spaced", f"{installed.good}:plugin") in specs
    found = discover()
    assert [(source, p.name) for source, p in found.plugins] == [
        (f"{installed.good}:plugin", installed.plugin)
    ]
    assert found.failures == [
        (
            f"{installed.raising}:plugin",
            f"importing {installed.raising} raised RuntimeError: cannot configure the plugin",
        )
    ]


def test_entry_points_can_be_left_out(installed: Installed) -> None:
    """discover(entry_points=False) loads only the names it is given."""
    found = discover([f"{installed.good}:plugin"], entry_points=False)
    assert [p.name for _, p in found.plugins] == [installed.plugin]
    assert found.failures == []


def test_a_broken_entry_point_never_stops_the_registry(installed: Installed) -> None:
    """The registry holds builtin, the good plugin, and the broken one as failed, logged."""
    with capture_logs() as logs:
        registry = build_registry([builtin], discover())
    assert registry.plugin_names()[:2] == ["builtin", installed.plugin]
    assert registry.tool(f"{installed.plugin}.shout").timeout_s == 2
    status = registry.status(f"{installed.raising}:plugin")
    assert status.state is PluginLifecycle.FAILED
    assert status.reason is not None
    assert "RuntimeError: cannot configure the plugin" in status.reason
    [entry] = [e for e in logs if e["event"] == "plugin failed to load"]
    assert entry["log_level"] == "error"
    assert entry["source"] == f"{installed.raising}:plugin"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no_colon_here", "'no_colon_here' is not of the form module:attr"),
        (":attr", "':attr' is not of the form module:attr"),
        ("json:", "'json:' is not of the form module:attr"),
        ("jw_no_such_module_xyz:plugin", "importing jw_no_such_module_xyz raised ModuleNotFound"),
        ("json:no_such_attr", "module json has no attribute 'no_such_attr'"),
        ("json:dumps", "'json:dumps' is a function, not a jobwarden Plugin"),
        ("jobwarden:builtin.tools", "'jobwarden:builtin.tools' is a dict, not a jobwarden Plugin"),
    ],
)
def test_a_bad_module_attr_says_why(spec: str, reason: str) -> None:
    """Each way a module:attr can fail gives a PluginLoadError with the reason."""
    with pytest.raises(PluginLoadError) as caught:
        load_spec(spec)
    assert str(caught.value).startswith(reason)


def test_a_dotted_attribute_is_followed() -> None:
    """module:a.b reads attribute b of attribute a."""
    assert load_spec("jobwarden.plugins.builtin:builtin") is builtin
    assert load_spec("jobwarden:builtin") is builtin


def test_a_name_clash_marks_the_later_plugin_failed() -> None:
    """A discovered plugin whose name is taken is failed under its source; explicit ones raise."""
    first, twin = make_plugin("alpha", "one"), make_plugin("alpha", "two")
    registry = build_registry([first], Discovered(plugins=[("pkg:twin", twin)]))
    assert registry.plugins() == [first]
    assert registry.status("pkg:twin").reason == "plugin 'alpha' is already registered"
    with pytest.raises(errors.RegistrationError):
        build_registry([first, twin], Discovered())


def test_the_same_plugin_reached_twice_is_registered_once() -> None:
    """builtin given as an object and found again by name is one plugin, not a clash."""
    found = discover(["jobwarden:builtin", "jobwarden:builtin"], entry_points=False)
    assert len(found.plugins) == 1
    registry = build_registry([builtin], found)
    assert registry.plugin_names() == ["builtin"]


def test_a_module_that_exits_while_imported_is_a_load_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin module that calls sys.exit() at import (a script, say) fails to load with the
    reason; it does not end the program loading it."""
    name = f"jw_exits_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import sys\nsys.exit(2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(PluginLoadError, match=f"^importing {name} raised SystemExit: 2$"):
            load_spec(f"{name}:plugin")
    finally:
        sys.modules.pop(name, None)


def test_an_import_error_with_a_lone_surrogate_is_reported_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin module whose import raises with a lone surrogate in the text fails to load with
    that text escaped, so the failed plugin's reason can be sent as JSON."""
    name = f"jw_bad_name_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "raise FileNotFoundError(b'caf\\xff'.decode('utf-8', 'surrogateescape'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(PluginLoadError) as caught:
            load_spec(f"{name}:plugin")
    finally:
        sys.modules.pop(name, None)
    assert str(caught.value) == f"importing {name} raised FileNotFoundError: caf\\udcff"


def test_a_failed_spec_spelled_like_a_loaded_plugin_is_listed_failed_beside_it() -> None:
    """A spec without :attr that equals a loaded plugin's name is a failure, quoted, not a clash."""
    registry = build_registry([builtin], discover(["builtin"], entry_points=False))
    assert registry.plugin_names() == ["builtin", "'builtin'"]
    assert registry.status("builtin").state is PluginLifecycle.LOADED
    failed = registry.status("'builtin'")
    assert failed.state is PluginLifecycle.FAILED
    assert failed.reason == "'builtin' is not of the form module:attr"


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        ("ValueError('lazy attr broke')", "ValueError: lazy attr broke"),
        ("ImportError('no module named heavy')", "ImportError: no module named heavy"),
        ("SystemExit(3)", "SystemExit: 3"),
    ],
)
def test_an_attribute_lookup_that_raises_is_a_load_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: str, reason: str
) -> None:
    """A module __getattr__ raising anything but AttributeError fails the load with the reason."""
    name = f"jw_getattr_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"def __getattr__(name):\n    raise {raised}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(PluginLoadError) as caught:
            load_spec(f"{name}:plugin")
        monkeypatch.setattr(sys.modules[name], "__getattr__", _interrupted)
        with pytest.raises(KeyboardInterrupt):
            load_spec(f"{name}:plugin")
    finally:
        sys.modules.pop(name, None)
    assert str(caught.value) == f"reading 'plugin' of {name} raised {reason}"


def _interrupted(name: str) -> object:
    """A module __getattr__ that a Ctrl-C interrupts."""
    raise KeyboardInterrupt
