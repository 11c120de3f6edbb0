"""Process tools logging what MessagePack cannot carry as is: logging never fails the tool."""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, Supervisor
from jobwarden.log_output import MALFORMED
from tests.process_fakes import procs

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # generous: only turns a hang into a failure


async def test_unencodable_log_values_arrive_escaped_or_as_their_repr() -> None:
    """Lone surrogates in a message or field arrive escaped, ints past 64 bits and other odd
    values as their repr (or a note when that raises), a stdlib call whose arguments do not fit
    its template as an error line naming both, and the job succeeds."""
    with anyio.fail_after(HANG_GUARD_S), capture_logs() as logs:
        async with Supervisor(plugins=[procs]) as sup:
            rec = await sup.submit("procs.awkward_logs", {"n": 1})
            done = await sup.wait(rec.id, timeout=HANG_GUARD_S)
    assert (done.state, done.error) == (JobState.SUCCEEDED, None)
    lines = {entry["event"]: entry for entry in logs if entry.get("job_id") == done.id}
    assert "file caf\\udcff.txt" in lines
    big = lines["big"]
    assert (big["n"], big["m"]) == (repr(2**70), repr(-(2**64)))
    assert big["odd"] == "<a Unshowable that could not be shown: RuntimeError: no repr>"
    assert "std file caf\\udcff" in lines
    assert lines["ctx field"]["path"] == "caf\\udcff"
    malformed = lines[MALFORMED]
    assert malformed["log_level"] == "error"
    assert malformed["template"] == "value %d"
    assert malformed["error"].startswith("TypeError: %d format")
