"""The task-free mailbox: one message at a time, in arrival order, with a clean stop."""

from __future__ import annotations

from typing import Final

import anyio
import anyio.lowlevel
import pytest
import structlog.testing

from jobwarden.actors.mailbox import DEFAULT_CAPACITY, Mailbox
from jobwarden.errors import ActorStopped, MailboxFull

pytestmark = pytest.mark.anyio

CANCELLED: Final = "<cancelled>"


class Boom(Exception):
    """What the fake handler raises for messages starting with ``fail``."""


class FakeActor:
    """A handler that records what it handles, blocks on per-message gates and fails on request."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.task_of: dict[str, int] = {}
        self.gates: dict[str, anyio.Event] = {}
        self.active = 0
        self.max_active = 0
        self.after: dict[str, list[object]] = {}

    def gate(self, message: str) -> anyio.Event:
        """Make ``message``'s handling block until the returned event is set."""
        self.gates[message] = anyio.Event()
        return self.gates[message]

    async def __call__(self, message: str) -> str:
        self.started.append(message)
        self.task_of[message] = anyio.get_current_task().id
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            gate = self.gates.get(message)
            if gate is not None:
                await gate.wait()
            await anyio.lowlevel.checkpoint()  # give anything concurrent a chance to interleave
            for action in self.after.get(message, ()):
                if isinstance(action, anyio.CancelScope):
                    action.cancel()
                elif isinstance(action, Mailbox):
                    action.stop("stopped by a handler")
            if message.startswith("fail"):
                raise Boom(message)
            return message.upper()
        finally:
            self.active -= 1


class Line:
    """A mailbox plus the outcome of every ask made through it."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.actor = FakeActor()
        self.box: Mailbox[str, str] = Mailbox(self.actor, name="box", capacity=capacity)
        self.outcomes: dict[str, object] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def ask(self, message: str) -> None:
        """Ask ``message`` and record the answer, the exception, or that the ask was cancelled."""
        with anyio.CancelScope() as scope:
            self.scopes[message] = scope
            try:
                self.outcomes[message] = await self.box.ask(message)
            except Exception as exc:
                self.outcomes[message] = exc
        if scope.cancelled_caught:
            self.outcomes[message] = CANCELLED

    async def ask_then_stop(self, message: str) -> None:
        """Ask ``message``, then stop the mailbox without yielding in between."""
        await self.ask(message)
        self.box.stop("stopped right after an ask")

    def start(self, tg: anyio.abc.TaskGroup, message: str) -> None:
        """Start an ask of ``message`` in its own task."""
        tg.start_soon(self.ask, message)


async def test_ask_returns_handler_result() -> None:
    """An ask to an idle mailbox returns what the handler returned."""
    line = Line()
    assert await line.box.ask("hello") == "HELLO"
    assert line.actor.started == ["hello"]
    assert len(line.box) == 0


async def test_ask_runs_inline_in_the_askers_task() -> None:
    """An uncontended ask is handled by the asking task itself: the mailbox has no task."""
    line = Line()
    await line.box.ask("a")
    assert line.actor.task_of["a"] == anyio.get_current_task().id


async def test_exception_propagates_to_the_asker_only() -> None:
    """A handler's exception reaches its own asker; the ask behind it still gets its answer."""
    line = Line()
    release = line.actor.gate("fail-a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "fail-a")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        release.set()
    failure = line.outcomes["fail-a"]
    assert isinstance(failure, Boom)
    assert str(failure) == "fail-a"
    assert line.outcomes["b"] == "B"
    assert await line.box.ask("c") == "C"


async def test_direct_ask_exception_leaves_mailbox_usable() -> None:
    """An uncontended ask whose handler raises re-raises to the caller and frees the mailbox."""
    line = Line()
    with pytest.raises(Boom):
        await line.box.ask("fail")
    assert await line.box.ask("next") == "NEXT"


async def test_one_at_a_time_in_arrival_order_under_contention() -> None:
    """Asks and tells that arrive while the actor is busy are handled singly, in arrival order."""
    line = Line()
    release = line.actor.gate("m0")
    order = ["m0", "m1", "m2", "t3", "m4", "m5", "t6", "m7"]
    async with anyio.create_task_group() as tg:
        for message in order:
            if message.startswith("t"):
                await line.box.tell(message)
            else:
                line.start(tg, message)
                await anyio.wait_all_tasks_blocked()
        assert len(line.box) == len(order) - 1
        assert line.actor.started == ["m0"]
        release.set()
    assert line.actor.started == order
    assert line.actor.max_active == 1
    assert line.outcomes == {m: m.upper() for m in order if m.startswith("m")}
    assert len(line.box) == 0


async def test_tell_while_idle_runs_inline() -> None:
    """A tell to an idle mailbox is handled before tell() returns, in the telling task."""
    line = Line()
    await line.box.tell("t")
    assert line.actor.started == ["t"]
    assert line.actor.task_of["t"] == anyio.get_current_task().id
    assert len(line.box) == 0


async def test_failing_tell_while_idle_raises_to_the_teller() -> None:
    """A tell handled inline re-raises the handler's exception and leaves the mailbox usable."""
    line = Line()
    with pytest.raises(Boom):
        await line.box.tell("fail-t")
    assert await line.box.ask("a") == "A"


async def test_tell_while_busy_is_queued_and_handled_by_the_baton_holder() -> None:
    """A tell to a busy mailbox returns at once; the task holding the turn handles it later."""
    line = Line()
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        await line.box.tell("t")
        assert line.actor.started == ["a"]
        assert len(line.box) == 1
        release.set()
    assert line.actor.started == ["a", "t"]
    assert line.actor.task_of["t"] == line.actor.task_of["a"]
    assert line.actor.task_of["t"] != anyio.get_current_task().id
    assert len(line.box) == 0


async def test_failing_queued_tell_is_logged_and_the_line_keeps_moving() -> None:
    """A queued tell that raises is logged with its traceback; later messages are still handled."""
    line = Line()
    release = line.actor.gate("a")
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            line.start(tg, "a")
            await anyio.wait_all_tasks_blocked()
            await line.box.tell("fail-t")
            await line.box.tell("t2")
            line.start(tg, "b")
            await anyio.wait_all_tasks_blocked()
            release.set()
    assert line.actor.started == ["a", "fail-t", "t2", "b"]
    assert line.outcomes == {"a": "A", "b": "B"}
    failures = [entry for entry in logs if entry["event"] == "queued message failed"]
    assert len(failures) == 1
    assert failures[0]["actor"] == "box"
    assert failures[0]["log_level"] == "error"
    assert failures[0]["exc_info"]


async def test_mailbox_full_when_the_queue_is_at_capacity() -> None:
    """With ``capacity`` messages waiting, a further tell or ask raises MailboxFull at once."""
    line = Line(capacity=2)
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        await line.box.tell("t1")
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        assert len(line.box) == 2
        with pytest.raises(MailboxFull, match="box"):
            await line.box.tell("t2")
        with pytest.raises(MailboxFull):
            await line.box.ask("c")
        assert len(line.box) == 2
        release.set()
    assert line.actor.started == ["a", "t1", "b"]
    assert await line.box.ask("d") == "D"


async def test_capacity_frees_up_as_messages_are_handled() -> None:
    """Once the queue drains, a full mailbox accepts messages again."""
    line = Line(capacity=1)
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        await line.box.tell("t1")
        with pytest.raises(MailboxFull):
            await line.box.tell("t2")
        release.set()
    await line.box.tell("t3")
    assert line.actor.started == ["a", "t1", "t3"]


async def test_stop_refuses_new_messages() -> None:
    """After stop(), ask and tell raise ActorStopped at once, naming the mailbox and reason."""
    line = Line()
    assert not line.box.stopped
    line.box.stop("finished")
    assert line.box.stopped
    with pytest.raises(ActorStopped, match=r"box stopped \(finished\)"):
        await line.box.ask("a")
    with pytest.raises(ActorStopped):
        await line.box.tell("t")
    assert line.actor.started == []


async def test_stop_twice_keeps_the_first_reason() -> None:
    """A second stop() is a no-op: the first reason is the one reported."""
    line = Line()
    line.box.stop("first")
    line.box.stop("second")
    with pytest.raises(ActorStopped, match="first"):
        await line.box.ask("a")


async def test_stop_fails_waiting_asks_and_drops_queued_tells() -> None:
    """stop() fails every waiting ask with ActorStopped (no hang) and drops queued tells."""
    line = Line()
    release = line.actor.gate("a")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            line.start(tg, "a")
            await anyio.wait_all_tasks_blocked()
            line.start(tg, "b")
            await anyio.wait_all_tasks_blocked()
            await line.box.tell("t")
            line.start(tg, "c")
            await anyio.wait_all_tasks_blocked()
            assert len(line.box) == 3
            line.box.stop("shutting down")
            assert len(line.box) == 0
            await anyio.wait_all_tasks_blocked()
            for waiting in ("b", "c"):
                outcome = line.outcomes[waiting]
                assert isinstance(outcome, ActorStopped)
                assert "shutting down" in str(outcome)
            assert "a" not in line.outcomes
            release.set()
    assert line.outcomes["a"] == "A"
    assert line.actor.started == ["a"]
    assert line.box.stopped


async def test_ask_cancelled_as_the_mailbox_stops_ends_cancelled() -> None:
    """A waiting ask cancelled just before stop() ends cancelled; nothing else is handled."""
    line = Line()
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        line.scopes["b"].cancel()
        line.box.stop("going away")
        await anyio.wait_all_tasks_blocked()
        assert line.outcomes == {"b": CANCELLED}
        release.set()
    assert line.outcomes == {"a": "A", "b": CANCELLED}
    assert line.actor.started == ["a"]


async def test_stop_inside_a_queued_tell_drops_the_tells_behind_it() -> None:
    """A queued tell whose handler stops the mailbox: the tells queued behind it never run."""
    line = Line()
    release = line.actor.gate("a")
    line.actor.after["t1"] = [line.box]
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        await line.box.tell("t1")
        await line.box.tell("t2")
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert line.box.stopped
    assert line.actor.started == ["a", "t1"]
    assert isinstance(line.outcomes["b"], ActorStopped)


async def test_stop_after_the_baton_was_handed_on_fails_the_next_ask() -> None:
    """An ask handed the turn but not yet resumed when stop() is called fails, unhandled."""
    line = Line()
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(line.ask_then_stop, "a")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert line.outcomes["a"] == "A"
    assert line.box.stopped
    assert line.actor.started == ["a"]
    assert isinstance(line.outcomes["b"], ActorStopped)


async def test_cancelled_waiting_asker_is_removed_and_the_line_moves() -> None:
    """An ask cancelled while waiting leaves the queue; the asks behind it are still handled."""
    line = Line()
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "c")
        await anyio.wait_all_tasks_blocked()
        assert len(line.box) == 2
        line.scopes["b"].cancel()
        await anyio.wait_all_tasks_blocked()
        assert len(line.box) == 1
        assert line.outcomes == {"b": CANCELLED}
        release.set()
    assert line.actor.started == ["a", "c"]
    assert line.outcomes == {"a": "A", "b": CANCELLED, "c": "C"}
    assert await line.box.ask("d") == "D"


async def test_asker_cancelled_as_the_baton_reaches_it_hands_it_on() -> None:
    """An ask whose cancellation lands just before its turn is handed over passes the turn on."""
    line = Line()
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "c")
        await anyio.wait_all_tasks_blocked()
        # a's handler cancels b's wait and then returns, handing the turn to b in the same step:
        # b wakes up both cancelled and holding the turn.
        line.actor.after["a"] = [line.scopes["b"]]
        release.set()
    assert line.outcomes == {"a": "A", "b": CANCELLED, "c": "C"}
    assert line.actor.started == ["a", "c"]
    assert len(line.box) == 0
    assert await line.box.ask("d") == "D"


async def test_asker_cancelled_just_after_the_baton_reached_it_hands_it_on() -> None:
    """An ask cancelled after its turn was handed over (before it resumed) still frees the line."""
    line = Line()
    release = line.actor.gate("a")

    async def ask_a_then_cancel_b() -> None:
        await line.ask("a")
        line.scopes["b"].cancel()  # b has been handed the turn, but has not run yet

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask_a_then_cancel_b)
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        line.start(tg, "c")
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert line.outcomes == {"a": "A", "b": CANCELLED, "c": "C"}
    assert line.actor.started[-1] == "c"
    assert await line.box.ask("d") == "D"


async def test_holder_cancelled_mid_handler_still_passes_the_baton() -> None:
    """Cancelling the task whose message is being handled still hands the turn to the next ask."""
    line = Line()
    line.actor.gate("a")  # never released: only cancellation ends a's handling
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        await line.box.tell("t")
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        line.scopes["a"].cancel()
    assert line.outcomes == {"a": CANCELLED, "b": "B"}
    assert line.actor.started == ["a", "t", "b"]


async def test_len_counts_waiting_asks_and_queued_tells() -> None:
    """len() is zero when idle and counts every waiting ask and queued tell while busy."""
    line = Line()
    assert len(line.box) == 0
    release = line.actor.gate("a")
    async with anyio.create_task_group() as tg:
        line.start(tg, "a")
        await anyio.wait_all_tasks_blocked()
        assert len(line.box) == 0  # the message being handled is not waiting
        await line.box.tell("t")
        assert len(line.box) == 1
        line.start(tg, "b")
        await anyio.wait_all_tasks_blocked()
        assert len(line.box) == 2
        release.set()
    assert len(line.box) == 0
