"""Plugin and tool definitions: what a plugin author writes, read into validated ``Tool``s."""

from __future__ import annotations

import inspect
import math
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec
import structlog

from jobwarden.errors import (
    NESTED_TOO_DEEP,
    InvalidInput,
    RegistrationError,
    describe,
    plugin_failure,
    unencodable,
)
from jobwarden.plugins.circuit import CircuitPolicy
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.plugins.schema import type_schema

Mode = Literal["async", "thread", "process"]
MODES: tuple[str, ...] = typing.get_args(Mode)
F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], Awaitable[None]]
H = TypeVar("H", bound=Hook)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
NOT_A_JSON_NUMBER = (
    "it holds NaN or infinity where a number must be (JSON has none: it reads as null)"
)
INPUT_NOT_A_JSON_NUMBER = (
    "the job's input holds NaN or infinity {at} (JSON has none: the job stored would read"
    " null there, not the number run)"
)
log = structlog.get_logger("jobwarden.plugins")


@dataclass(frozen=True, slots=True, eq=False)
class Tool:
    """One callable tool, ``plugin.tool``, with its input and output types read from annotations."""

    name: str
    plugin: str
    func: Callable[..., Any]
    input_type: type[msgspec.Struct]
    output_type: Any
    mode: Mode
    timeout_s: float | None
    max_concurrency: int | None
    description: str
    retry_on_interrupt: bool = False
    memory_mb: int | None = None
    cpu_s: int | None = None
    retry: RetryPolicy | None = None
    total_timeout_s: float | None = None
    queue_timeout_s: float | None = None
    circuit: CircuitPolicy | None = None
    output_is_struct: bool = field(init=False)
    _read_output: Callable[[bytes], Any] = field(init=False, repr=False)
    _input_takes_floats: bool = field(init=False, repr=False)
    _input_str_keys: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        out = self.output_type
        struct = isinstance(out, type) and issubclass(out, msgspec.Struct)
        object.__setattr__(self, "output_is_struct", struct)
        # Reading the result as a client will is the check that it fits its type.
        object.__setattr__(self, "_read_output", msgspec.json.Decoder(out).decode)
        # Only an input type with a place for a float can let a NaN through its conversion:
        # the others skip the walk looking for one.
        info = msgspec.inspect.type_info(self.input_type)
        object.__setattr__(self, "_input_takes_floats", _takes_floats(info))
        # Any keyword to convert costs it more than converting a small input does: only the
        # input types with dicts keyed by other than str pay for reading keys from strings.
        object.__setattr__(self, "_input_str_keys", _keyed_by_other_than_str(info))

    def validate_input(self, data: Any) -> msgspec.Struct:
        """The input converted to the tool's input type, or ``InvalidInput``.

        The input type's own checks (a ``__post_init__``) are plugin code: whatever they raise
        (``sys.exit()`` included) refuses this input as ``InvalidInput``, never the server.

        The input is read as JSON gives it, since that is how a durable store gives it back
        after a restart: dict keys may be strings for a type keyed by numbers (``{"1": "a"}``
        for ``dict[int, str]``), and NaN or infinity, which JSON has no number for, is refused.
        """
        try:
            if self._input_str_keys:
                # JSON's object keys are strings, over HTTP and in a stored job: a dict[int, ...]
                # reads them as it reads the int keys an embedder passes.
                args = msgspec.convert(data, self.input_type, str_keys=True)
            else:
                args = msgspec.convert(data, self.input_type)
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc), plugin=self.plugin, tool=self.name) from exc
        except RecursionError as exc:
            if _plugin_frames(exc):
                raise self._check_raised(exc) from exc
            # msgspec's own depth limit, with no plugin frame in between: the input's fault.
            raise InvalidInput(
                f"the job's input is {NESTED_TOO_DEEP}", plugin=self.plugin, tool=self.name
            ) from exc
        except BaseException as exc:
            if not plugin_failure(exc):
                raise
            raise self._check_raised(exc) from exc
        if self._input_takes_floats:
            try:
                at = _non_finite_at(data)
            except RecursionError:
                # Nested about as deeply as JSON allows, or holding itself (an Any field
                # takes it as it is): the store's encode tells which, and refuses the latter.
                at = None
            if at is not None:
                message = INPUT_NOT_A_JSON_NUMBER.format(at=f"at `${at}`")
                raise InvalidInput(message, plugin=self.plugin, tool=self.name)
        return args

    def _check_raised(self, exc: BaseException) -> InvalidInput:
        """The refusal of an input whose type's own check (plugin code) raised ``exc``."""
        log.warning("a tool's input check raised", tool=self.name, exc_info=exc)
        return InvalidInput(
            f"the tool's input check raised {describe(exc)}", plugin=self.plugin, tool=self.name
        )

    def output_to_builtins(self, value: Any) -> Any:
        """The tool's return value as JSON-ready builtins, checked against its return type.

        The builtins are what the value reads as once through JSON, as every store and route
        gives it back: a tuple a list, a number key a string. Raises ``msgspec.ValidationError``
        (or ``TypeError``) when the value does not fit, and ``ValueError`` when it fits but no
        JSON can hold it (a lone surrogate, a value nested past the recursion limit or holding
        itself, a NaN or infinity where its type wants a number).
        """
        if self.output_is_struct and type(value) is not self.output_type:
            raise msgspec.ValidationError(
                f"Expected `{self.output_type.__name__}`, got `{type(value).__name__}`"
            )
        try:
            encoded = _encode(value)
        except (UnicodeEncodeError, RecursionError) as exc:
            raise ValueError(unencodable(exc)) from exc
        try:
            self._read_output(encoded)
        except msgspec.ValidationError:
            # Fitting before JSON, not after: JSON writes NaN and infinity as null.
            msgspec.convert(msgspec.to_builtins(value), self.output_type)
            raise ValueError(NOT_A_JSON_NUMBER) from None
        # A null where the type allows one may be a NaN or infinity JSON wrote so; only then
        # (the search for "null" is a byte scan) is the value walked to tell them apart.
        if encoded.find(b"null") != -1:
            try:
                non_finite = _non_finite_at(value) is not None
            except RecursionError as exc:
                raise ValueError(unencodable(exc)) from exc
            if non_finite:
                msgspec.convert(msgspec.to_builtins(value), self.output_type)
                raise ValueError(NOT_A_JSON_NUMBER)
        return _decode(encoded)

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the input the tool accepts (its input type's, as it reads JSON)."""
        return type_schema(self.input_type, accepted=True)

    def output_schema(self) -> dict[str, Any]:
        """JSON Schema of the return type."""
        return type_schema(self.output_type)


class Plugin:
    """A named, versioned group of tools, declared with ``@plugin.tool(...)``.

    ``@plugin.on_startup`` and ``@plugin.on_shutdown`` register an optional ``async def()`` each,
    run by the supervisor when it starts and stops.
    """

    def __init__(self, name: str, *, version: str = "0.0.0", description: str = "") -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RegistrationError(f"invalid plugin name {name!r}: letters, digits, _ and -")
        self.name = name
        self.version = _text(f"plugin {name}", "version", version)
        self.description = _text(f"plugin {name}", "description", description)
        self.tools: dict[str, Tool] = {}
        self.startup_hook: Hook | None = None
        self.shutdown_hook: Hook | None = None
        # A registry copies the tools when it registers the plugin: one declared later would be
        # listed in the plugin's status but never found to run.
        self._registered = False

    def on_startup(self, fn: H) -> H:
        """Decorator: ``fn`` runs once as the supervisor starts; if it raises, the plugin is
        failed and its tools refuse jobs."""
        if self.startup_hook is not None:
            raise RegistrationError(f"plugin {self.name}: a startup hook is already registered")
        self.startup_hook = _checked_hook(f"plugin {self.name}: on_startup", fn)
        return fn

    def on_shutdown(self, fn: H) -> H:
        """Decorator: ``fn`` runs once as the supervisor stops (not after a failed startup)."""
        if self.shutdown_hook is not None:
            raise RegistrationError(f"plugin {self.name}: a shutdown hook is already registered")
        self.shutdown_hook = _checked_hook(f"plugin {self.name}: on_shutdown", fn)
        return fn

    def registered(self) -> None:
        """A registry took the plugin's tools: ``tool`` refuses to declare more from now on."""
        self._registered = True

    def __repr__(self) -> str:
        return f"Plugin({self.name!r}, version={self.version!r}, tools={list(self.tools)})"

    def tool(
        self,
        *,
        name: str | None = None,
        timeout: float | None = None,
        mode: Mode = "async",
        max_concurrency: int | None = None,
        description: str | None = None,
        retry_on_interrupt: bool = False,
        memory_mb: int | None = None,
        cpu_s: int | None = None,
        retry: RetryPolicy | None = None,
        total_timeout: float | None = None,
        queue_timeout: float | None = None,
        circuit_failures: int | None = None,
        circuit_window_s: float = 60.0,
        circuit_cooldown_s: float = 30.0,
    ) -> Callable[[F], F]:
        """Decorator registering ``(inp: <Struct>, ctx: ToolContext) -> <output type>`` as a tool.

        ``name`` defaults to the function's name and ``description`` to its docstring's first
        paragraph; ``timeout`` (seconds) applies per call unless a submit gives its own.
        ``retry_on_interrupt``: a call found running after a crash is run again (attempt + 1)
        instead of failing as ``interrupted``; say so only for tools that are safe to repeat.
        A durable store that writes behind (SQLite) then also starts such a tool without waiting
        for its running state to be committed, so after a crash it may run again as the same
        attempt (found queued) rather than the next.
        ``mode="process"`` runs a module-level plain def in a worker process; ``memory_mb`` (the
        worker's address space) and ``cpu_s`` (CPU seconds per call) limit it there.
        Timeouts in Temporal's sense: ``timeout`` bounds each attempt (start to close),
        ``total_timeout`` all attempts together from submit (schedule to close) and
        ``queue_timeout`` the wait in the queue before an attempt starts (schedule to start).
        ``retry`` runs failed calls again (see ``RetryPolicy``).
        ``circuit_failures``: open the tool's circuit breaker after that many consecutive
        failures within ``circuit_window_s``, refusing calls for ``circuit_cooldown_s``
        (None, the default: no breaker).
        """

        def register(fn: F) -> F:
            tool_name = fn.__name__ if name is None else name
            where = f"tool {self.name}.{tool_name}"
            self._add(
                fn,
                name=tool_name,
                timeout=timeout,
                mode=mode,
                max_concurrency=max_concurrency,
                description=description,
                retry_on_interrupt=retry_on_interrupt,
                limits=(memory_mb, cpu_s),
                retry=retry,
                total_timeout=total_timeout,
                queue_timeout=queue_timeout,
                circuit=_circuit(
                    where,
                    circuit_failures,
                    circuit_window_s,
                    circuit_cooldown_s,
                ),
            )
            return fn

        return register

    def _add(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        timeout: float | None,
        mode: str,
        max_concurrency: int | None,
        description: str | None,
        retry_on_interrupt: bool,
        limits: tuple[int | None, int | None],
        retry: RetryPolicy | None,
        total_timeout: float | None,
        queue_timeout: float | None,
        circuit: CircuitPolicy | None,
    ) -> None:
        where = f"tool {self.name}.{name}"
        if self._registered:
            raise RegistrationError(
                f"{where} cannot be declared: plugin {self.name!r} is registered already;"
                " declare every tool before registering the plugin"
            )
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RegistrationError(f"invalid {where}: letters, digits, _ and - only")
        full = f"{self.name}.{name}"
        if full in {t.name for t in self.tools.values()}:
            raise RegistrationError(f"{where} is already registered")
        if mode not in MODES:
            raise RegistrationError(f"{where}: mode must be one of {MODES}, got {mode!r}")
        if inspect.iscoroutinefunction(fn) != (mode == "async"):
            kind = "an async def" if mode == "async" else "a plain def"
            raise RegistrationError(f"{where}: mode {mode!r} needs {kind} function")
        memory_mb, cpu_s = limits
        if mode != "process" and limits != (None, None):
            raise RegistrationError(f"{where}: memory_mb and cpu_s apply to mode 'process' only")
        _count(where, "memory_mb", memory_mb)
        _count(where, "cpu_s", cpu_s)
        _count(where, "max_concurrency", max_concurrency)
        timeout = _optional_seconds(where, "timeout", timeout)
        total_timeout = _optional_seconds(where, "total_timeout", total_timeout)
        queue_timeout = _optional_seconds(where, "queue_timeout", queue_timeout)
        if not isinstance(retry_on_interrupt, bool):
            raise RegistrationError(
                f"{where}: retry_on_interrupt must be True or False, got {retry_on_interrupt!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise RegistrationError(
                f"{where}: retry must be a RetryPolicy, got {type(retry).__name__}"
            )
        input_type, output_type = _signature_types(fn, where)
        if mode == "process":
            _check_importable(fn, where)
            _check_importable(input_type, where)
        doc = inspect.getdoc(fn) or ""
        self.tools[name] = Tool(
            name=full,
            plugin=self.name,
            func=fn,
            input_type=input_type,
            output_type=output_type,
            mode=typing.cast(Mode, mode),
            timeout_s=timeout,
            max_concurrency=max_concurrency,
            description=_text(
                where, "description", doc.split("\n\n")[0] if description is None else description
            ),
            retry_on_interrupt=retry_on_interrupt,
            memory_mb=memory_mb,
            cpu_s=cpu_s,
            retry=retry,
            total_timeout_s=total_timeout,
            queue_timeout_s=queue_timeout,
            circuit=circuit,
        )


def _text(where: str, what: str, value: object) -> str:
    """``value`` if it is text JSON can hold, else ``RegistrationError`` naming ``what``.

    A lone surrogate (as bytes decoded with ``surrogateescape`` give) has no UTF-8 form: in a
    description or version it would make every route that lists the plugin fail.
    """
    if not isinstance(value, str):
        raise RegistrationError(f"{where}: {what} must be a str, got {type(value).__name__}")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise RegistrationError(
            f"{where}: {what} {value!r} is not UTF-8 text"
            f" ({value[exc.start : exc.end]!r} at {exc.start}: {exc.reason})"
        ) from exc
    return value


def _count(where: str, option: str, value: object) -> None:
    """``RegistrationError`` unless ``value`` is None or an int (not a bool) of at least 1."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise RegistrationError(f"{where}: {option} must be >= 1 (an int), got {value!r}")


def _optional_seconds(where: str, option: str, value: object) -> float | None:
    """None for None, else ``_seconds``."""
    return None if value is None else _seconds(where, option, value)


def _seconds(where: str, option: str, value: object) -> float:
    """``value`` as a float of seconds; ``RegistrationError`` unless it is a positive, finite
    int or float (a bool is no number of seconds here, nor is an int too large for a float:
    either would fail every call it times, at its first deadline)."""
    try:
        seconds = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        seconds = math.inf
    if isinstance(value, bool) or not 0 < seconds < math.inf:
        raise RegistrationError(f"{where}: {option} must be > 0 seconds, got {value!r}")
    return seconds


def _checked_hook(where: str, fn: Hook) -> Hook:
    """``fn`` if it is an ``async def`` that needs no arguments, else ``RegistrationError``."""
    if not inspect.iscoroutinefunction(fn):
        raise RegistrationError(f"{where} needs an async def")
    required = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise RegistrationError(f"{where}: the hook takes no arguments")
    return fn


def _circuit(
    where: str, failures: int | None, window_s: float, cooldown_s: float
) -> CircuitPolicy | None:
    """The breaker policy the decorator's options describe, or None when it has none."""
    _count(where, "circuit_failures", failures)
    # Checked with no breaker too: a bad window or cooldown would otherwise pass unnoticed until
    # someone turns the breaker on.
    window = _seconds(where, "circuit_window_s", window_s)
    cooldown = _seconds(where, "circuit_cooldown_s", cooldown_s)
    if failures is None:
        return None
    return CircuitPolicy(failures=failures, window_s=window, cooldown_s=cooldown)


def reference(obj: Any) -> str:
    """``module:qualname``, under which a worker process imports ``obj``."""
    return f"{obj.__module__}:{obj.__qualname__}"


def _check_importable(obj: Any, where: str) -> None:
    """A worker process imports a process tool's function and input type by ``reference``.

    Only the shape can be checked here: a decorator runs before its module binds the name.
    """
    if "<locals>" in obj.__qualname__:
        raise RegistrationError(
            f"{where}: mode 'process' needs {obj.__qualname__} defined at module level,"
            " importable as module:name by a worker process"
        )


def _signature_types(fn: Callable[..., Any], where: str) -> tuple[type[msgspec.Struct], Any]:
    """Read (input type, output type) from ``fn``'s annotations, or explain what is wrong."""
    params = list(inspect.signature(fn).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if len(params) != 2 or any(p.kind not in positional for p in params):
        raise RegistrationError(
            f"{where}: expected (inp, ctx) as two positional parameters, got {len(params)}"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError, AttributeError, TypeError: whatever resolving raised
        raise RegistrationError(f"{where}: cannot resolve annotations: {exc}") from exc
    input_type = hints.get(params[0].name)
    if input_type is None:
        raise RegistrationError(f"{where}: the input parameter needs a msgspec.Struct annotation")
    if not (isinstance(input_type, type) and issubclass(input_type, msgspec.Struct)):
        raise RegistrationError(f"{where}: input annotation must be a msgspec.Struct subclass")
    if "return" not in hints:
        raise RegistrationError(f"{where}: the return type must be annotated")
    output_type = hints["return"]
    for role, tp in (("input", input_type), ("return", output_type)):
        try:
            schema = msgspec.json.schema(tp)
        except TypeError as exc:
            raise RegistrationError(f"{where}: unsupported type in annotations: {exc}") from exc
        try:
            # The schemas are served on every tool route: text in them (a docstring, a
            # description, a literal) that is not UTF-8 would make each of those routes fail.
            _encode(schema)
        except UnicodeEncodeError as exc:
            raise RegistrationError(
                f"{where}: the {role} type's JSON Schema holds text that is not UTF-8"
                f" ({exc.object[exc.start : exc.end]!r}: {exc.reason})"
            ) from exc
    return input_type, output_type


_NO_FLOATS = (
    msgspec.inspect.IntType,
    msgspec.inspect.StrType,
    msgspec.inspect.BoolType,
    msgspec.inspect.NoneType,
    msgspec.inspect.BytesType,
    msgspec.inspect.ByteArrayType,
    msgspec.inspect.MemoryViewType,
    msgspec.inspect.DateTimeType,
    msgspec.inspect.DateType,
    msgspec.inspect.TimeType,
    msgspec.inspect.TimeDeltaType,
    msgspec.inspect.UUIDType,
    msgspec.inspect.EnumType,
    msgspec.inspect.LiteralType,
)
_PARTS = ("type", "item_type", "key_type", "value_type")
_LEAVES = frozenset({str, int, bool, type(None), bytes})


def _takes_floats(info: msgspec.inspect.Type) -> bool:
    """Whether a value of the type ``info`` describes can hold a float read from its input (a
    float, a Decimal, ``Any``, a type unknown here), so that NaN or infinity could pass."""
    return _holds(info, lambda part: not isinstance(part, _NO_FLOATS) and not _inner(part))


def _keyed_by_other_than_str(info: msgspec.inspect.Type) -> bool:
    """Whether the type ``info`` describes holds a dict (a mapping) whose keys are not str."""
    return _holds(info, lambda part: hasattr(part, "key_type") and not _is_str(part.key_type))


def _is_str(info: msgspec.inspect.Type) -> bool:
    """Whether ``info`` is ``str``, constrained or not."""
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    return isinstance(info, msgspec.inspect.StrType)


def _holds(
    info: msgspec.inspect.Type,
    found: Callable[[msgspec.inspect.Type], bool],
    seen: set[int] | None = None,
) -> bool:
    """Whether ``found`` is true of ``info`` or of a type anywhere inside it."""
    seen = set() if seen is None else seen
    if id(info) in seen:  # a recursive type, already being looked at
        return False
    seen.add(id(info))
    return found(info) or any(_holds(part, found, seen) for part in _inner(info))


def _inner(info: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    """The types directly inside ``info``: its fields', items', keys' and values' types."""
    inner = [getattr(info, part) for part in _PARTS if hasattr(info, part)]
    inner.extend(getattr(info, "item_types", ()))
    inner.extend(getattr(info, "types", ()))
    inner.extend(f.type for f in getattr(info, "fields", ()))
    return inner


def _non_finite_at(value: Any) -> str | None:
    """The path (``.a[2]``, ``""`` for ``value`` itself) of a float NaN or infinity in
    ``value``, which JSON writes as null, or None when it holds none."""
    kind = type(value)
    if kind in _LEAVES:
        return None
    if kind is float or isinstance(value, float):
        return None if math.isfinite(value) else ""
    if isinstance(value, dict):
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is float:
                if math.isfinite(item):
                    continue
                return f".{key}"
            if item_kind in _LEAVES:
                continue
            at = _non_finite_at(item)
            if at is not None:
                return f".{key}{at}"
        return None
    if isinstance(value, list | tuple | set | frozenset):
        try:
            # Numbers only: a NaN or infinity among them makes their sum one, so a finite sum
            # clears them all at C speed (an overflowing one is walked, as are other items).
            if math.isfinite(sum(value, 0.0)):
                return None
        except (TypeError, OverflowError):
            pass
        for index, item in enumerate(value):
            at = _non_finite_at(item)
            if at is not None:
                return f"[{index}]{at}"
        return None
    try:
        # A Struct, a dataclass, ...: its fields, as JSON will name them.
        built = msgspec.to_builtins(value)
    except (TypeError, ValueError, RecursionError):
        return None  # not something JSON holds: the encode that stores it says so
    return None if type(built) is kind else _non_finite_at(built)


def _plugin_frames(exc: BaseException) -> bool:
    """Whether ``exc`` passed through Python code below the frame that caught it (an input
    type's ``__post_init__``), rather than coming from msgspec's C code alone."""
    tb = exc.__traceback__
    return tb is not None and tb.tb_next is not None
