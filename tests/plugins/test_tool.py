"""Plugin and tool definitions: what registration reads from a function, and what it refuses."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from typing import Annotated, Any, cast

import msgspec
import pytest

from jobwarden import errors
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import MODES, Plugin, Tool


class In(msgspec.Struct, forbid_unknown_fields=True):
    """An input with one constrained field."""

    text: str
    count: Annotated[int, msgspec.Meta(ge=0)] = 1


class Out(msgspec.Struct):
    """An output."""

    text: str


class OutChild(Out):
    """A subclass of the output type: not the declared type."""


class Stamped(msgspec.Struct):
    """An output whose builtin form differs from its Python form."""

    data: bytes
    score: Annotated[float, msgspec.Meta(ge=0)]


class NotAStruct:
    """A plain class: not usable as an input type."""


def only_tool(plugin: Plugin) -> Tool:
    """The single tool registered on ``plugin``."""
    (tool,) = plugin.tools.values()
    return tool


def test_types_and_metadata_read_from_the_function() -> None:
    """A decorated function becomes a Tool with types from its annotations and its settings."""
    demo = Plugin("demo", version="1.2.3", description="Demo tools.")

    @demo.tool(timeout=5.0, max_concurrency=3)
    async def echo(inp: In, ctx: ToolContext) -> Out:
        """Echo the text back.

        A second paragraph that is not part of the description.
        """
        return Out(text=inp.text)

    tool = demo.tools["echo"]
    assert tool.name == "demo.echo"
    assert tool.plugin == "demo"
    assert tool.func is echo
    assert tool.input_type is In
    assert tool.output_type is Out
    assert tool.output_is_struct
    assert tool.mode == "async"
    assert tool.timeout_s == 5.0
    assert tool.max_concurrency == 3
    assert tool.description == "Echo the text back."
    assert (demo.name, demo.version, demo.description) == ("demo", "1.2.3", "Demo tools.")
    assert "demo" in repr(demo)
    assert "echo" in repr(demo)


def test_decorator_returns_the_function_unchanged() -> None:
    """The decorator hands back the original function, still callable directly."""
    demo = Plugin("demo")

    async def echo(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    assert demo.tool()(echo) is echo


def test_defaults_without_options() -> None:
    """Without options a tool is async, has no timeout, no concurrency cap, and an empty doc."""
    demo = Plugin("demo")

    @demo.tool()
    async def bare(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    tool = only_tool(demo)
    assert (tool.mode, tool.timeout_s, tool.max_concurrency) == ("async", None, None)
    assert tool.description == ""
    assert Plugin("p").version == "0.0.0"


def test_explicit_name_and_description_win() -> None:
    """``name=`` and ``description=`` override the function's name and docstring."""
    demo = Plugin("demo")

    @demo.tool(name="renamed-tool_2", description="Given description.")
    async def original(inp: In, ctx: ToolContext) -> Out:
        """Docstring."""
        return Out(text=inp.text)

    assert list(demo.tools) == ["renamed-tool_2"]
    assert demo.tools["renamed-tool_2"].name == "demo.renamed-tool_2"
    assert demo.tools["renamed-tool_2"].description == "Given description."


def test_empty_description_is_kept_even_with_a_docstring() -> None:
    """``description=""`` is an explicit choice and is not replaced by the docstring."""
    demo = Plugin("demo")

    @demo.tool(description="")
    async def quiet(inp: In, ctx: ToolContext) -> Out:
        """Docstring."""
        return Out(text=inp.text)

    assert only_tool(demo).description == ""


def test_thread_mode_takes_a_plain_function() -> None:
    """mode="thread" registers a plain def."""
    demo = Plugin("demo")

    @demo.tool(mode="thread")
    def blocking(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    assert only_tool(demo).mode == "thread"


def test_json_schemas_of_input_and_output() -> None:
    """input_schema()/output_schema() are msgspec's JSON Schemas of the annotated types."""
    demo = Plugin("demo")

    @demo.tool()
    async def echo(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    tool = only_tool(demo)
    assert tool.input_schema() == msgspec.json.schema(In)
    assert tool.output_schema() == msgspec.json.schema(Out)
    schema = tool.input_schema()
    body = schema["$defs"]["In"]
    assert body["required"] == ["text"]
    assert body["properties"]["count"] == {"type": "integer", "minimum": 0, "default": 1}
    json.dumps(schema)  # JSON-ready


def test_builtin_output_type_schema() -> None:
    """A builtin return annotation is kept as is and has a schema too."""
    demo = Plugin("demo")

    @demo.tool()
    async def counts(inp: In, ctx: ToolContext) -> dict[str, int]:
        return {inp.text: inp.count}

    tool = only_tool(demo)
    assert tool.output_type == dict[str, int]
    assert not tool.output_is_struct
    assert tool.output_schema() == {"type": "object", "additionalProperties": {"type": "integer"}}


def test_duplicate_tool_name_raises() -> None:
    """Registering a second tool under the same name in a plugin raises RegistrationError."""
    demo = Plugin("demo")

    @demo.tool()
    async def echo(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    async def other(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    with pytest.raises(errors.RegistrationError, match="already registered"):
        demo.tool(name="echo")(other)
    assert demo.tools["echo"].func is echo


def test_unannotated_input_raises() -> None:
    """An input parameter without annotation is refused, saying it needs a Struct annotation."""
    demo = Plugin("demo")

    async def tool(inp, ctx: ToolContext) -> Out:  # type: ignore[no-untyped-def]
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match=r"demo\.tool: the input parameter needs"):
        demo.tool()(tool)
    assert demo.tools == {}


@pytest.mark.parametrize("annotation", [dict[str, Any], NotAStruct, int, In | None])
def test_non_struct_input_raises(annotation: Any) -> None:
    """An input annotated with anything but a msgspec.Struct subclass is refused."""
    demo = Plugin("demo")

    async def tool(inp: Any, ctx: ToolContext) -> Out:
        return Out(text="")

    tool.__annotations__["inp"] = annotation
    with pytest.raises(errors.RegistrationError, match=r"must be a msgspec\.Struct subclass"):
        demo.tool()(tool)


def test_missing_return_annotation_raises() -> None:
    """A tool without a return annotation is refused."""
    demo = Plugin("demo")

    async def tool(inp: In, ctx: ToolContext):  # type: ignore[no-untyped-def]
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="return type must be annotated"):
        demo.tool()(tool)


def test_unsupported_output_type_raises() -> None:
    """A return type msgspec cannot describe is refused with the reason."""
    demo = Plugin("demo")

    async def tool(inp: In, ctx: ToolContext) -> NotAStruct:
        return NotAStruct()

    with pytest.raises(errors.RegistrationError, match="unsupported type in annotations"):
        demo.tool()(tool)


async def _no_params() -> Out:
    return Out(text="")


async def _one_param(inp: In) -> Out:
    return Out(text=inp.text)


async def _three_params(inp: In, ctx: ToolContext, extra: int) -> Out:
    return Out(text=inp.text)


@pytest.mark.parametrize(("fn", "count"), [(_no_params, 0), (_one_param, 1), (_three_params, 3)])
def test_wrong_parameter_count_raises(fn: Any, count: int) -> None:
    """A tool must take exactly (inp, ctx); other arities are refused, naming the count."""
    with pytest.raises(errors.RegistrationError, match=rf"expected \(inp, ctx\).*got {count}"):
        Plugin("demo").tool(name="t")(fn)


async def _keyword_only_ctx(inp: In, *, ctx: ToolContext) -> Out:
    return Out(text=inp.text)


def test_keyword_only_context_parameter_raises() -> None:
    """The ToolRunner passes (inp, ctx) positionally, so a keyword-only ctx is refused."""
    with pytest.raises(errors.RegistrationError, match=r"\(inp, ctx\)"):
        Plugin("demo").tool(name="t")(_keyword_only_ctx)


@pytest.mark.parametrize(
    "name", ["1abc", "has.dot", "has space", "ünïcode", "-lead", "a/b", "echo\n", "echo\r\n"]
)
def test_bad_tool_names_raise(name: str) -> None:
    """Tool names must start with a letter and hold only letters, digits, _ and -."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="letters, digits, _ and -"):
        Plugin("demo").tool(name=name)(tool)


@pytest.mark.parametrize("name", ["", "9lives", "a.b", "with space", "x!", "demo\n"])
def test_bad_plugin_names_raise(name: str) -> None:
    """Plugin names follow the same rule as tool names."""
    with pytest.raises(errors.RegistrationError, match="invalid plugin name"):
        Plugin(name)


def test_bad_mode_raises() -> None:
    """A mode outside MODES is refused, listing the valid modes."""
    assert MODES == ("async", "thread", "process")

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match=r"mode must be one of .*'fork'"):
        Plugin("demo").tool(mode=cast(Any, "fork"))(tool)


def test_async_function_in_thread_mode_raises() -> None:
    """An async def registered with mode="thread" is refused: it needs a plain def."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="mode 'thread' needs a plain def"):
        Plugin("demo").tool(mode="thread")(tool)


def test_plain_function_in_async_mode_raises() -> None:
    """A plain def registered with the default async mode is refused: it needs an async def."""

    def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="mode 'async' needs an async def"):
        Plugin("demo").tool()(tool)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
def test_non_positive_timeout_raises(timeout: float) -> None:
    """A timeout that is not a positive number is refused."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="timeout must be > 0"):
        Plugin("demo").tool(timeout=timeout)(tool)


def test_a_retry_that_is_not_a_retry_policy_raises() -> None:
    """retry takes a RetryPolicy: anything else is refused at registration rather than failing
    the first job that needs it."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    settings: Any = {"max_attempts": 3}
    says = r"demo\.tool: retry must be a RetryPolicy, got dict"
    with pytest.raises(errors.RegistrationError, match=says):
        Plugin("demo").tool(retry=settings)(tool)


@pytest.mark.parametrize("limit", [0, -3])
def test_max_concurrency_below_one_raises(limit: int) -> None:
    """max_concurrency must be at least 1."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="max_concurrency must be >= 1"):
        Plugin("demo").tool(max_concurrency=limit)(tool)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": "5"}, "timeout must be > 0 seconds, got '5'"),
        ({"timeout": True}, "timeout must be > 0 seconds, got True"),
        ({"timeout": 10**400}, "timeout must be > 0 seconds, got 1000"),
        ({"timeout": float("inf")}, "timeout must be > 0 seconds, got inf"),
        ({"total_timeout": "5"}, "total_timeout must be > 0 seconds"),
        ({"queue_timeout": False}, "queue_timeout must be > 0 seconds"),
        ({"max_concurrency": "2"}, "max_concurrency must be >= 1 \\(an int\\), got '2'"),
        ({"max_concurrency": 1.5}, "max_concurrency must be >= 1 \\(an int\\), got 1.5"),
        ({"max_concurrency": True}, "max_concurrency must be >= 1 \\(an int\\), got True"),
        ({"retry_on_interrupt": 1}, "retry_on_interrupt must be True or False, got 1"),
        ({"circuit_failures": "3"}, "circuit_failures must be >= 1 \\(an int\\)"),
        ({"circuit_failures": 3, "circuit_window_s": "60"}, "circuit_window_s must be > 0"),
        ({"circuit_failures": 3, "circuit_cooldown_s": None}, "circuit_cooldown_s must be > 0"),
        ({"circuit_window_s": 0}, "circuit_window_s must be > 0"),
        ({"circuit_cooldown_s": "30"}, "circuit_cooldown_s must be > 0"),
        ({"name": 7}, "letters, digits, _ and - only"),
    ],
)
def test_options_of_the_wrong_type_raise_registration_error(
    options: dict[str, Any], message: str
) -> None:
    """Each option of the decorator given a value of the wrong type (a str or a bool for a
    number, a float for an int, an int too large for a float) is refused as RegistrationError
    naming it, where a plain TypeError escaped or the value was silently taken."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match=message):
        Plugin("demo").tool(**options)(tool)


@pytest.mark.parametrize(
    ("mode", "limits"),
    [("process", {"memory_mb": "64"}), ("process", {"cpu_s": 1.5}), ("process", {"cpu_s": True})],
)
def test_resource_limits_of_the_wrong_type_raise(mode: str, limits: dict[str, Any]) -> None:
    """memory_mb and cpu_s take an int: a str, a float or a bool is RegistrationError."""
    with pytest.raises(errors.RegistrationError, match=r"must be >= 1 \(an int\)"):
        Plugin("demo").tool(mode=cast(Any, mode), **limits)(process_tool)


def test_int_timeouts_are_taken_as_float_seconds() -> None:
    """An int timeout is taken as that many seconds (a float); int limits stay ints."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    demo = Plugin("demo")
    demo.tool(timeout=5, total_timeout=10, queue_timeout=2, max_concurrency=3)(tool)
    spec = only_tool(demo)
    assert (spec.timeout_s, spec.total_timeout_s, spec.queue_timeout_s) == (5.0, 10.0, 2.0)
    assert type(spec.timeout_s) is float
    assert spec.max_concurrency == 3


def test_a_plugin_name_that_is_no_str_raises() -> None:
    """Plugin(None) is RegistrationError, where a plain TypeError escaped."""
    with pytest.raises(errors.RegistrationError, match="invalid plugin name None"):
        Plugin(None)  # type: ignore[arg-type]


def test_unresolvable_annotation_raises() -> None:
    """An annotation naming something that does not exist is refused, naming it."""

    async def tool(inp: NoSuchType, ctx: ToolContext) -> Out:  # type: ignore[name-defined]  # noqa: F821
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match=r"cannot resolve annotations.*NoSuchType"):
        Plugin("demo").tool()(tool)


def test_unresolvable_dotted_annotation_raises() -> None:
    """An annotation naming a missing attribute of a module is refused like any unresolvable one."""

    async def tool(inp: msgspec.NoSuchStruct, ctx: ToolContext) -> Out:  # type: ignore[name-defined]
        return Out(text="")

    with pytest.raises(errors.RegistrationError, match="cannot resolve annotations"):
        Plugin("demo").tool()(tool)


def test_registration_error_is_a_type_error() -> None:
    """Registration failures can be caught as TypeError, like other definition errors."""

    def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text="")

    with pytest.raises(TypeError):
        Plugin("demo").tool()(tool)


def _echo_tool() -> Tool:
    demo = Plugin("demo")

    @demo.tool()
    async def echo(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    return only_tool(demo)


def test_validate_input_converts_to_the_input_type() -> None:
    """Valid input (a dict) is converted to the input Struct, defaults applied."""
    args = _echo_tool().validate_input({"text": "hi"})
    assert args == In(text="hi", count=1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": 1}, "Expected `str`, got `int` - at `$.text`"),
        ({}, "Object missing required field `text`"),
        ({"text": "x", "count": -1}, "Expected `int` >= 0 - at `$.count`"),
        ({"text": "x", "bogus": 1}, "Object contains unknown field `bogus`"),
        ("text", "Expected `object`, got `str`"),
    ],
)
def test_validate_input_raises_invalid_input(data: Any, message: str) -> None:
    """Invalid input raises InvalidInput carrying msgspec's message, the plugin and the tool."""
    with pytest.raises(errors.InvalidInput) as info:
        _echo_tool().validate_input(data)
    exc = info.value
    assert exc.message == message
    assert str(exc) == message
    assert (exc.plugin, exc.tool, exc.job_id) == ("demo", "demo.echo", None)
    assert (exc.type, exc.status) == ("invalid_input", 400)
    assert isinstance(exc.__cause__, msgspec.ValidationError)


def _tool_returning(annotation: Any) -> Tool:
    demo = Plugin("demo")

    async def tool(inp: In, ctx: ToolContext) -> Any:
        return None

    tool.__annotations__["return"] = annotation
    demo.tool()(tool)
    return only_tool(demo)


def test_output_to_builtins_for_a_struct() -> None:
    """A Struct output becomes a dict of JSON-ready builtins."""
    assert _echo_tool().output_to_builtins(Out(text="hi")) == {"text": "hi"}


def test_output_to_builtins_converts_nested_values() -> None:
    """bytes become base64 text, so the stored result is JSON-ready."""
    tool = _tool_returning(Stamped)
    assert tool.output_to_builtins(Stamped(data=b"hi", score=0.5)) == {
        "data": "aGk=",
        "score": 0.5,
    }


def test_output_struct_constraints_are_checked() -> None:
    """A Struct built in Python with a value its constraints forbid is rejected."""
    tool = _tool_returning(Stamped)
    with pytest.raises(msgspec.ValidationError, match=r"\$\.score"):
        tool.output_to_builtins(Stamped(data=b"", score=-1.0))


@pytest.mark.parametrize("value", [{"text": "hi"}, OutChild(text="hi"), Stamped(b"", 1.0), None])
def test_output_of_the_wrong_type_for_a_struct_raises(value: Any) -> None:
    """A Struct tool must return exactly its declared Struct type."""
    with pytest.raises(msgspec.ValidationError, match="Expected `Out`"):
        _echo_tool().output_to_builtins(value)


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (dict[str, int], {"a": 1, "b": 2}, {"a": 1, "b": 2}),
        (list[int], [1, 2, 3], [1, 2, 3]),
        (int, 7, 7),
        (str, "x", "x"),
        (list[Out], [Out(text="a")], [{"text": "a"}]),
        (None, None, None),
    ],
)
def test_output_to_builtins_for_builtin_types(annotation: Any, value: Any, expected: Any) -> None:
    """Builtin return annotations are checked and returned as builtins."""
    assert _tool_returning(annotation).output_to_builtins(value) == expected


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (dict[str, int], {"a": "1"}),
        (list[int], [1, "2"]),
        (list[int], (1.5,)),
        (int, "7"),
        (int, True),
        (int, None),
        (None, 0),
    ],
)
def test_builtin_output_of_the_wrong_type_raises(annotation: Any, value: Any) -> None:
    """A builtin return value that does not match its annotation raises ValidationError."""
    with pytest.raises(msgspec.ValidationError):
        _tool_returning(annotation).output_to_builtins(value)


def test_unserialisable_output_raises_type_error() -> None:
    """A value msgspec cannot turn into builtins raises TypeError."""
    with pytest.raises(TypeError):
        _tool_returning(Any).output_to_builtins(object())


def process_tool(inp: In, ctx: ToolContext) -> Out:
    """A module-level plain def, as process mode needs."""
    return Out(text=inp.text)


def test_process_mode_takes_a_module_level_function_with_limits() -> None:
    """mode="process" registers a module-level plain def with its memory and CPU limits."""
    demo = Plugin("demo")
    demo.tool(mode="process", memory_mb=64, cpu_s=2)(process_tool)
    tool = only_tool(demo)
    assert (tool.mode, tool.memory_mb, tool.cpu_s) == ("process", 64, 2)


def test_process_mode_refuses_a_nested_function() -> None:
    """A function defined inside another cannot be imported by a worker, so it is refused."""

    def nested(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    with pytest.raises(errors.RegistrationError, match="defined at module level"):
        Plugin("demo").tool(mode="process")(nested)


@pytest.mark.parametrize(
    ("mode", "limits", "message"),
    [
        ("thread", {"memory_mb": 64}, "apply to mode 'process' only"),
        ("process", {"cpu_s": 0}, "must be >= 1"),
        ("process", {"memory_mb": 0}, "must be >= 1"),
    ],
)
def test_resource_limits_are_checked(mode: str, limits: dict[str, Any], message: str) -> None:
    """Limits are refused outside process mode and when below one."""
    with pytest.raises(errors.RegistrationError, match=message):
        Plugin("demo").tool(mode=cast(Any, mode), **limits)(process_tool)


class Keyed(msgspec.Struct):
    """An input with a dict keyed by ints and a float."""

    ints: dict[int, str] = {}
    ratio: float = 0.0


class Scored(msgspec.Struct):
    """A Struct with an optional float."""

    score: float | None = None


class Loose(msgspec.Struct):
    """An input with an untyped field and Structs holding an optional float."""

    anything: Any = None
    nested: list[Scored] = []


def _tool_taking(input_type: type[msgspec.Struct]) -> Tool:
    demo = Plugin("demo")

    async def tool(inp: Any, ctx: ToolContext) -> None:
        return None

    tool.__annotations__["inp"] = input_type
    demo.tool()(tool)
    return only_tool(demo)


@pytest.mark.parametrize("ints", [{"1": "a"}, {1: "a"}])
def test_int_keys_are_read_from_json_strings(ints: dict[Any, str]) -> None:
    """A dict[int, str] input takes the string keys JSON gives (over HTTP, from a stored job) as
    it takes int keys."""
    assert _tool_taking(Keyed).validate_input({"ints": ints}) == Keyed(ints={1: "a"})


@pytest.mark.parametrize(
    ("input_type", "data", "at"),
    [
        (Keyed, {"ratio": math.nan}, "$.ratio"),
        (Keyed, {"ratio": math.inf}, "$.ratio"),
        (Loose, {"anything": {"a": [1.0, -math.inf]}}, "$.anything.a[1]"),
        (Loose, {"nested": [{"score": math.nan}]}, "$.nested[0].score"),
        (Loose, {"anything": Scored(score=math.inf)}, "$.anything.score"),
        (Loose, Loose(anything=[1e308, 1e308, math.nan]), "$.anything[2]"),
    ],
)
def test_nan_or_infinity_in_an_input_is_invalid_input(
    input_type: type[msgspec.Struct], data: Any, at: str
) -> None:
    """An input holding NaN or infinity, which JSON (so a stored job) would hold as null, is
    refused at submit naming where, not run with a number that a restart would read as null."""
    with pytest.raises(errors.InvalidInput) as info:
        _tool_taking(input_type).validate_input(data)
    assert info.value.message == (
        f"the job's input holds NaN or infinity at `{at}` (JSON has none: the job stored would"
        " read null there, not the number run)"
    )


@pytest.mark.parametrize("data", [{"ratio": 1e308}, {"anything": [1e308, 1e308]}, {}])
def test_large_finite_numbers_are_valid_input(data: dict[str, Any]) -> None:
    """Finite floats are accepted, even ones whose sum overflows to infinity."""
    input_type = Keyed if "ratio" in data else Loose
    assert _tool_taking(input_type).validate_input(data) == msgspec.convert(data, input_type)


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_inputs_and_outputs_nested_near_the_recursion_limit_never_raise_recursion_error() -> None:
    """At every depth around the recursion limit, an input is accepted (the store's encode
    judges its depth) or InvalidInput, and an output valid or a ValueError: the NaN walk never
    raises RecursionError."""
    loose = _tool_taking(Loose)
    untyped = _tool_returning(Any)
    limit = sys.getrecursionlimit()
    for depth in range(limit - 100, limit + 10):
        with contextlib.suppress(errors.InvalidInput):
            loose.validate_input({"anything": _nested(depth, 1.0)})
        with contextlib.suppress(ValueError):
            untyped.output_to_builtins(_nested(depth, None))


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (float | None, math.inf),
        (Scored, Scored(score=math.nan)),
        (Any, {"x": [1.0, -math.inf]}),
        (dict[str, float | None], {"a": None, "b": math.nan}),
    ],
)
def test_nan_or_infinity_where_null_fits_is_not_a_json_number(annotation: Any, value: Any) -> None:
    """NaN or infinity in a place whose type allows null raises ValueError saying so, instead
    of passing as the null JSON writes for it."""
    with pytest.raises(ValueError, match="it holds NaN or infinity where a number must be"):
        _tool_returning(annotation).output_to_builtins(value)


def test_a_nan_against_a_type_without_numbers_is_a_type_mismatch() -> None:
    """A NaN where only null or an int fits is reported as not fitting the type."""
    with pytest.raises(
        msgspec.ValidationError, match=re.escape("Expected `int | null`, got `float`")
    ):
        _tool_returning(int | None).output_to_builtins(math.nan)


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        (float | None, None, None),
        (Scored, Scored(), {"score": None}),
        (
            Any,
            {"x": [1e308, 1e308], "y": None, "z": "null"},
            {"x": [1e308, 1e308], "y": None, "z": "null"},
        ),
    ],
)
def test_real_nulls_and_finite_numbers_pass(annotation: Any, value: Any, expected: Any) -> None:
    """None, and finite floats beside it, are a valid output as JSON's null and numbers."""
    assert _tool_returning(annotation).output_to_builtins(value) == expected


@pytest.mark.parametrize("field", ["version", "description"])
def test_plugin_text_that_is_not_utf8_raises(field: str) -> None:
    """A plugin version or description holding a lone surrogate is refused naming the field,
    instead of failing every route that lists the plugin."""
    with pytest.raises(errors.RegistrationError, match=f"plugin demo: {field} .*not UTF-8"):
        Plugin("demo", **{field: "caf\udce9"})


def test_a_tool_docstring_that_is_not_utf8_raises() -> None:
    """A tool whose description comes from a docstring holding a lone surrogate is refused."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    tool.__doc__ = "Reads caf\udce9.txt."
    with pytest.raises(errors.RegistrationError, match=r"tool demo\.tool: description"):
        Plugin("demo").tool()(tool)


def test_a_tool_description_that_is_not_utf8_raises() -> None:
    """An explicit tool description holding a lone surrogate is refused."""

    async def tool(inp: In, ctx: ToolContext) -> Out:
        return Out(text=inp.text)

    with pytest.raises(errors.RegistrationError, match=r"tool demo\.tool: description"):
        Plugin("demo").tool(description="caf\udce9")(tool)


def test_a_schema_holding_text_that_is_not_utf8_raises() -> None:
    """An input type whose JSON Schema (here its docstring) holds a lone surrogate is refused:
    the schema is served on every tool route."""
    surrogate = msgspec.defstruct("Surrogate", [("text", str)])
    surrogate.__doc__ = "Names like caf\udce9."

    async def tool(inp: Any, ctx: ToolContext) -> Out:
        return Out(text="x")

    tool.__annotations__["inp"] = surrogate
    with pytest.raises(errors.RegistrationError, match=r"input type's JSON Schema .*not UTF-8"):
        Plugin("demo").tool()(tool)


def test_a_non_str_version_raises() -> None:
    """A version that is not a str is refused at declaration."""
    with pytest.raises(errors.RegistrationError, match="version must be a str, got int"):
        Plugin("demo", version=1)  # type: ignore[arg-type]
