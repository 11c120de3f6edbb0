"""Server-sent events in a real headless Chromium: what its own EventSource does with them."""

from __future__ import annotations

import pytest
from playwright.async_api import Request

from tests.transport.browser import dashboard
from tests.transport.conftest import serve

EVENTS_OPEN = """(url) => {
  window.seen = [];
  window.source = new EventSource(url);
  window.source.onmessage = (message) => window.seen.push(message.data);
}"""


@pytest.mark.anyio
async def test_event_source_resumes_from_the_streams_opening_id() -> None:
    """A stream that ends before any event still hands EventSource its start: the browser
    reconnects with that offset as Last-Event-ID, having dispatched nothing for it."""
    async with serve(keys=None) as server:
        job = await server.submit(None, "builtin.echo", {"text": "x"}, wait=10)
        # Past the newest event (the job's last, 3): the stream starts after 3, replays nothing
        # and ends, as the job has, having said only where it started.
        path = f"/v1/jobs/{job['id']}/events?since=99"
        requests: list[Request] = []

        def second(request: Request) -> bool:
            if request.url.endswith(path):
                requests.append(request)
            return len(requests) == 2

        async with dashboard(server) as page:
            # EventSource waits its reconnection time (about 3 s in Chromium) before trying again.
            async with page.expect_request(second, timeout=30_000) as again:
                await page.evaluate(EVENTS_OPEN, path)
            first_headers = await requests[0].all_headers()
            headers = await (await again.value).all_headers()
            seen = await page.evaluate("window.seen")
            await page.evaluate("window.source.close()")
    assert "last-event-id" not in first_headers
    assert headers["last-event-id"] == "3"
    assert seen == []
