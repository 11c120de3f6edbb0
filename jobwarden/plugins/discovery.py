"""Finding plugins: the ``jobwarden.plugins`` entry-point group, ``module:attr`` names given on
the command line or in a config file, and plugin objects handed over by an embedding program.

A plugin that cannot be imported, is not a ``Plugin``, or clashes with one already registered
never stops the others: it is registered as failed under its ``module:attr``, with the reason,
and logged.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from jobwarden.errors import RegistrationError, describe, plugin_failure, printable
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Plugin

log = structlog.get_logger("jobwarden.plugins")

ENTRY_POINT_GROUP = "jobwarden.plugins"


class PluginLoadError(Exception):
    """A ``module:attr`` does not name a loadable ``Plugin``; the message says why."""


@dataclass
class Discovered:
    """Plugins found, each with where it came from, and the sources that failed, with why."""

    plugins: list[tuple[str, Plugin]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def load_spec(spec: str) -> Plugin:
    """The ``Plugin`` named by ``module:attr`` (``attr`` may be dotted), or ``PluginLoadError``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PluginLoadError(f"{spec!r} is not of the form module:attr")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # whatever the module raised while importing
        if not plugin_failure(exc):
            raise
        raise PluginLoadError(f"importing {module_name} raised {describe(exc)}") from exc
    try:
        found = functools.reduce(getattr, attr.split("."), module)
    except AttributeError as exc:
        raise PluginLoadError(f"module {module_name} has no attribute {attr!r}") from exc
    except BaseException as exc:  # a module __getattr__ or lazy import is plugin code too
        if not plugin_failure(exc):
            raise
        raise PluginLoadError(f"reading {attr!r} of {module_name} raised {describe(exc)}") from exc
    if not isinstance(found, Plugin):
        raise PluginLoadError(f"{spec!r} is a {type(found).__name__}, not a jobwarden Plugin")
    return found


def entry_point_specs() -> list[tuple[str, str]]:
    """(entry-point name, ``module:attr``) of each installed ``jobwarden.plugins`` entry point.

    Read from the parsed ``module`` and ``attr``: the raw value may also hold extras
    (``mod:attr [extra]``) or spaces (``mod: attr``), which entry points allow. One without an
    ``attr`` keeps its raw value, and fails to load saying it is not ``module:attr``.
    """
    return [
        (ep.name, ep.value if ep.attr is None else f"{ep.module}:{ep.attr}")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    ]


def discover(specs: Iterable[str] = (), *, entry_points: bool = True) -> Discovered:
    """Load the installed entry points (unless ``entry_points=False``), then each spec."""
    sources = [value for _, value in entry_point_specs()] if entry_points else []
    found = Discovered()
    for spec in dict.fromkeys([*sources, *specs]):
        try:
            found.plugins.append((spec, load_spec(spec)))
        except PluginLoadError as exc:
            found.failures.append((spec, str(exc)))
    return found


def build_registry(plugins: Iterable[Plugin], discovered: Discovered) -> PluginRegistry:
    """A registry of ``plugins`` (objects: a clash raises ``RegistrationError``, as it is the
    caller's own code), then of the discovered ones, where a clash and every load failure are
    registered as failed with the reason and logged, never raised."""
    registry = PluginRegistry(plugins)
    failures = list(discovered.failures)
    for source, plugin in discovered.plugins:
        if any(plugin is seen for seen in registry.plugins()):
            continue  # the same object reached through two sources
        try:
            registry.add(plugin)
        except RegistrationError as exc:
            failures.append((source, str(exc)))
    for source, reason in failures:
        log.error("plugin failed to load", source=printable(source), reason=printable(reason))
        registry.add_failed(source, reason)
    return registry
