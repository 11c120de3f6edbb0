"""TurnBufferedOutput: JSON log lines written once per event-loop turn, in order, never lost."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

import pytest

from jobwarden.log_output import MAX_PENDING, FlushingHandler, LineLogger, TurnBufferedOutput

pytestmark = pytest.mark.anyio
on_asyncio = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Counting(io.BytesIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def _logging() -> tuple[Counting, LineLogger]:
    stream = Counting()
    return stream, LineLogger(TurnBufferedOutput(stream))


@on_asyncio
async def test_a_turns_lines_are_written_together_when_the_turn_is_over() -> None:
    """Lines logged in one turn wait for its end, then go out in one write, in order."""
    stream, logger = _logging()
    logger.info(b"one")
    logger.error(b"two")
    assert stream.getvalue() == b""
    await asyncio.sleep(0)
    assert (stream.getvalue(), stream.writes) == (b"one\ntwo\n", 1)
    logger.info(b"three")
    await asyncio.sleep(0)
    assert (stream.getvalue(), stream.writes) == (b"one\ntwo\nthree\n", 2)


@on_asyncio
async def test_a_line_from_another_thread_goes_out_at_once_after_the_gathered_ones() -> None:
    """Another thread's line is written now, behind the lines the loop gathered before it."""
    stream, logger = _logging()
    logger.info(b"loop")
    thread = threading.Thread(target=logger.info, args=(b"thread",))
    thread.start()
    thread.join()
    assert stream.getvalue() == b"loop\nthread\n"


@on_asyncio
async def test_a_long_turn_writes_every_max_pending_lines() -> None:
    """A turn that logs more than MAX_PENDING lines does not hold them all until its end."""
    stream, logger = _logging()
    for index in range(MAX_PENDING):
        logger.info(str(index).encode())
    assert stream.writes == 1
    assert stream.getvalue().count(b"\n") == MAX_PENDING


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_without_an_asyncio_loop_each_line_is_written_at_once() -> None:
    """On trio (no asyncio loop running) a line is written as soon as it is logged."""
    stream = Counting()
    LineLogger(TurnBufferedOutput(stream)).info(b"now")
    assert stream.getvalue() == b"now\n"


@on_asyncio
async def test_a_stdlib_record_follows_the_lines_logged_before_it() -> None:
    """The stdlib handler writes what was gathered first, so the order on stderr is kept."""
    stream = io.BytesIO()
    text = io.TextIOWrapper(stream, write_through=True)
    output = TurnBufferedOutput(stream)
    handler = FlushingHandler(output, text)
    LineLogger(output).info(b"structlog")
    handler.emit(logging.LogRecord("aiohttp", logging.WARNING, __file__, 1, "stdlib", None, None))
    assert stream.getvalue() == b"structlog\nstdlib\n"


@on_asyncio
async def test_flush_writes_what_is_gathered_and_a_closed_stream_is_left_alone() -> None:
    """flush() writes the gathered lines now; at exit, a stream already closed raises nothing."""
    stream = Counting()
    output = TurnBufferedOutput(stream)
    output.flush()
    assert stream.writes == 0
    LineLogger(output).info(b"line")
    output.flush()
    assert stream.getvalue() == b"line\n"
    LineLogger(output).info(b"lost with the stream")
    stream.close()
    output._flush_at_exit()
