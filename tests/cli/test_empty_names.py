"""An empty job id or tool name is refused by name before connecting: it names nothing, and sent
as it is it reached another route (``cancel ''`` posted to ``/v1/jobs//cancel``)."""

from __future__ import annotations

import pytest

from tests.cli.conftest import jobwarden
from tests.server_process import free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("submit", ""), "'TOOL'"),
        (("cancel", ""), "'ID'"),
        (("jobs", "--tool", ""), "'--tool'"),
        (("watch", "--job", ""), "'--job'"),
        (("watch", "--tool", ""), "'--tool'"),
    ],
    ids=["submit tool", "cancel id", "jobs tool", "watch job", "watch tool"],
)
async def test_an_empty_name_is_a_usage_error(args: tuple[str, ...], name: str) -> None:
    """Each client command exits 2 saying the argument must not be empty, without a traceback
    and without trying the server (none listens on the URL given)."""
    done = await jobwarden(f"http://127.0.0.1:{free_port()}", *args)
    assert done.code == 2, done.err
    assert f"Invalid value for {name}: must not be empty" in done.err
    assert "Traceback" not in done.err
    assert done.out == ""
