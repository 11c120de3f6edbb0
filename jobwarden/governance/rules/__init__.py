"""The governance rules: what jobwarden's code must never do, each checked on one module's AST.

Every check takes a parsed `Source` and yields `Finding`s. The checks are syntactic on purpose:
they read names, not types, so they stay fast, dependency-free and predictable. Code that trips
a rule legitimately is renamed or restructured; there is no suppression comment.

The checks read AST nodes through `match` patterns rather than `call.func`: this package is
scanned too, and JW001 treats any `x.func` read as plugin code.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobwarden.governance.rules.blocking_sleep import blocking_sleep_in_async
from jobwarden.governance.rules.cancellation import swallowed_base_exception
from jobwarden.governance.rules.default_tool import hard_coded_default_tool
from jobwarden.governance.rules.error_envelope import application_without_envelope
from jobwarden.governance.rules.lifecycle_states import outcome_as_lifecycle_state
from jobwarden.governance.rules.plugin_callers import plugin_code_outside_allow_list
from jobwarden.governance.rules.plugin_metrics import plugin_call_without_metrics
from jobwarden.governance.rules.print_calls import print_call
from jobwarden.governance.rules.source import ALLOWED_PLUGIN_CALLERS, Check, Source
from jobwarden.governance.rules.tool_index import ToolIndex
from jobwarden.governance.rules.unstructured_tasks import unstructured_task

__all__ = [
    "ALLOWED_PLUGIN_CALLERS",
    "CHECKS",
    "RULES",
    "Check",
    "Source",
    "ToolIndex",
    "application_without_envelope",
    "blocking_sleep_in_async",
    "hard_coded_default_tool",
    "outcome_as_lifecycle_state",
    "plugin_call_without_metrics",
    "plugin_code_outside_allow_list",
    "print_call",
    "swallowed_base_exception",
    "unstructured_task",
]

RULES: Mapping[str, str] = {
    "JW000": "file cannot be parsed, or is nested too deeply to check",
    "JW001": "plugin code called outside the allow-list",
    "JW002": "plugin call not reached only under a try whose finally records its outcome",
    "JW003": 'hard-coded "default" tool name',
    "JW004": "success/error used as a plugin lifecycle state",
    "JW005": "bare except, or except BaseException or cancellation, without re-raise",
    "JW006": "task spawned outside a task group",
    "JW007": "time.sleep inside async def",
    "JW008": "print() call",
    "JW009": "aiohttp application or server without the error-envelope middleware",
}

CHECKS: tuple[Check, ...] = (
    plugin_code_outside_allow_list,
    plugin_call_without_metrics,
    hard_coded_default_tool,
    outcome_as_lifecycle_state,
    swallowed_base_exception,
    unstructured_task,
    blocking_sleep_in_async,
    print_call,
    application_without_envelope,
)
