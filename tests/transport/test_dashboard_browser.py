"""The dashboard in a real headless Chromium against a real server on a loopback port."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import WSCloseCode, web
from playwright.async_api import Page, Request, WebSocketRoute, expect

from jobwarden.transport.context import WEBSOCKETS
from tests.transport import browser
from tests.transport.browser import artifact, dashboard, row
from tests.transport.conftest import serve

XSS = "<img src=x onerror=window.__pwned=1>"


@pytest.mark.anyio
async def test_page_lists_existing_jobs_newest_first() -> None:
    """Jobs submitted before the page opens are listed newest first with their state and tool."""
    async with serve(keys=None) as server:
        first = await server.submit(None, "builtin.echo", {"text": "one"}, wait=10)
        second = await server.submit(None, "builtin.fail", {"message": "boom"}, wait=10)
        async with dashboard(server) as page:
            rows = page.locator("#jobs tbody tr")
            await expect(rows).to_have_count(2)
            assert await rows.nth(0).get_attribute("data-job-id") == second["id"]
            assert await rows.nth(1).get_attribute("data-job-id") == first["id"]
            done = page.locator(row(first["id"]))
            await expect(done).to_have_attribute("data-state", "succeeded")
            await expect(page.locator(row(second["id"]) + " .tool")).to_have_text("builtin.fail")
            await page.locator(row(second["id"])).click()
            await expect(page.locator("#detail-outcome-title")).to_have_text("Error")
            await expect(page.locator("#detail-outcome")).to_contain_text("boom")


@pytest.mark.anyio
async def test_job_input_with_markup_is_shown_as_text() -> None:
    """An input holding an <img onerror> is shown literally: no element is made, no script runs."""
    async with serve(keys=None) as server:
        job = await server.submit(None, "builtin.echo", {"text": XSS}, wait=10)
        async with dashboard(server) as page:
            await page.locator(row(job["id"])).click()
            await expect(page.locator("#detail-input")).to_contain_text(XSS)
            await expect(page.locator("#detail-outcome")).to_contain_text(XSS)
            assert await page.locator("#detail img").count() == 0
            assert await page.evaluate("window.__pwned") is None


@pytest.mark.anyio
async def test_submit_through_generated_form_shows_the_job() -> None:
    """Filling the form generated from builtin.echo's schema submits a job that appears and runs."""
    async with serve(keys=None) as server, dashboard(server) as page:
        await page.locator("#submit-tool").select_option("builtin.echo")
        await page.locator('#submit-fields input[name="text"]').fill("hello from the form")
        await page.locator("#submit button[type=submit]").click()
        await expect(page.locator("#submit-ok")).to_contain_text("Submitted job")
        job_id = (await page.locator("#submit-ok").inner_text()).rsplit(" ", 1)[-1]
        await expect(page.locator(row(job_id))).to_have_attribute("data-state", "succeeded")
        record = await server.job("admin", job_id)
        assert record["input"] == {"text": "hello from the form"}


@pytest.mark.anyio
async def test_invalid_form_input_shows_the_error_message() -> None:
    """A value the schema refuses shows the 400 envelope's message; bad raw JSON is caught first."""
    async with serve(keys=None) as server, dashboard(server) as page:
        await page.locator("#submit-tool").select_option("builtin.sleep")
        await page.locator('#submit-fields input[name="seconds"]').fill("-1")
        await page.locator("#submit button[type=submit]").click()
        error = page.locator("#submit-error")
        await expect(error).to_contain_text("invalid_input")
        await expect(error).to_contain_text("$.seconds")
        await page.locator("#submit-raw").check()
        await page.locator("#submit-json").fill("{not json")
        await page.locator("#submit button[type=submit]").click()
        await expect(error).to_contain_text("input is not valid JSON")
        assert (await server.get_json("admin", "/v1/jobs"))["jobs"] == []


@pytest.mark.anyio
async def test_job_goes_queued_running_succeeded_live() -> None:
    """With one runner busy, a watched job shows queued, then running, then succeeded, live."""
    async with serve(keys=None, concurrency=1) as server, dashboard(server) as page:
        await server.hold(None, "blocker")
        job = await server.submit(None, "fake.gate", {"key": "watched"})
        line = page.locator(row(job["id"]))
        await expect(line).to_have_attribute("data-state", "queued")
        server.gates.open("blocker")
        await server.gates.wait_entered("watched")
        await expect(line).to_have_attribute("data-state", "running")
        server.gates.open("watched")
        await expect(line).to_have_attribute("data-state", "succeeded")
        await expect(line.locator("progress")).to_have_js_property("value", 1)
        await line.click()
        await expect(page.locator("#detail-events li")).to_have_count(3)
        await expect(page.locator("#detail-outcome")).to_contain_text('"text": "watched"')


@pytest.mark.anyio
async def test_cancel_a_running_job_from_the_page() -> None:
    """The cancel button cancels a running job, and the row turns cancelled."""
    async with serve(keys=None) as server:
        job = await server.hold(None, "held")
        async with dashboard(server) as page:
            await page.locator(row(job["id"])).click()
            state = page.locator('#detail-facts dd[data-fact="state"]')
            await expect(state).to_have_text("running")
            await page.locator("#cancel").click()
            await expect(page.locator(row(job["id"]))).to_have_attribute("data-state", "cancelled")
            await expect(page.locator("#cancel")).to_be_disabled()
        assert (await server.job("admin", job["id"]))["state"] == "cancelled"


@pytest.mark.anyio
async def test_cancel_after_the_job_finished_shows_the_409() -> None:
    """Cancelling a job that finished while updates were paused shows the 409 job_finished;
    resuming then brings the missed event, once."""
    async with serve(keys=None) as server, dashboard(server) as page:
        job = await server.hold(None, "late")
        line = page.locator(row(job["id"]))
        await expect(line).to_have_attribute("data-state", "running")
        await line.click()
        await expect(page.locator("#cancel")).to_be_enabled()
        await page.locator("#pause").click()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "paused")
        server.gates.open("late")
        await server.finished(job["id"])
        await page.locator("#cancel").click()
        message = page.locator("#cancel-error")
        await expect(message).to_contain_text("409 job_finished")
        await expect(message).to_contain_text("already finished")
        await expect(line).to_have_attribute("data-state", "succeeded")
        await page.locator("#pause").click()
        seen = page.locator("#detail-events li")
        await expect(seen).to_have_count(3)
        texts = [text.split(" ", 1)[1] for text in await seen.all_inner_texts()]
        assert texts == ["queued", "running", "succeeded"]


@pytest.mark.anyio
async def test_api_key_prompt_on_a_keyed_server() -> None:
    """A keyed server's 401 opens the key prompt; with alice's key the page lists her jobs live."""
    async with serve() as server:
        mine = await server.submit("alice", "builtin.echo", {"text": "alice's"}, wait=10)
        theirs = await server.submit("bob", "builtin.echo", {"text": "bob's"}, wait=10)
        async with dashboard(server, wait_ready=False) as page:
            dialog = page.locator("#key-dialog")
            await expect(dialog).to_be_visible()
            await page.locator("#key-input").fill("not-a-key-at-all")
            await page.locator("#key-form button").click()
            await expect(page.locator("#key-reason")).to_contain_text("refused")
            await page.locator("#key-input").fill("alice-key-0001")
            await page.locator("#key-form button").click()
            await page.locator("body[data-ready=true]").wait_for()
            await expect(page.locator(row(mine["id"]))).to_be_visible()
            assert await page.locator(row(theirs["id"])).count() == 0
            stored = await page.evaluate("sessionStorage.getItem('jobwarden.api_key')")
            assert stored == "alice-key-0001"
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            held = await server.hold("alice", "keyed")
            await expect(page.locator(row(held["id"]))).to_have_attribute("data-state", "running")
            server.gates.open("keyed")
            await expect(page.locator(row(held["id"]))).to_have_attribute("data-state", "succeeded")


@pytest.mark.anyio
async def test_reconnect_resumes_without_duplicates() -> None:
    """After the server drops the socket, the page resumes with since: each event shows once."""
    async with serve(keys=None) as server, dashboard(server) as page:
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        job = await server.hold(None, "resume")
        line = page.locator(row(job["id"]))
        await expect(line).to_have_attribute("data-state", "running")
        sockets: set[web.WebSocketResponse] = server.runner.app[WEBSOCKETS]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"test drops it")
        server.gates.open("resume")
        await server.finished(job["id"])
        await expect(line).to_have_attribute("data-state", "succeeded")
        await expect(page.locator("#connection")).to_have_attribute("data-reconnects", "1")
        await line.click()
        events = page.locator("#detail-events li")
        await expect(events).to_have_count(3)
        texts = [text.split(" ", 1)[1] for text in await events.all_inner_texts()]
        assert texts == ["queued", "running", "succeeded"]


@pytest.mark.anyio
async def test_a_drop_before_any_event_resumes_where_the_stream_started() -> None:
    """A socket dropped before any event resumes from the offset its subscribed frame gave: a
    job that ran while the page was reconnecting shows each of its events once, without the
    list being loaded again."""

    async def with_clock(page: Page) -> None:
        await page.clock.install()  # the reconnection waits until the test moves the clock

    async with serve(keys=None) as server, dashboard(server, before=with_clock) as page:
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-state", "live")
        sockets: set[web.WebSocketResponse] = server.runner.app[WEBSOCKETS]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"test drops it")
        await expect(connection).to_have_attribute("data-state", "reconnecting")
        job = await server.submit(None, "builtin.echo", {"text": "meanwhile"}, wait=10)
        listings: list[str] = []
        page.on(
            "request", lambda request: listings.append(request.url) if _listing(request) else None
        )
        await page.clock.run_for(1_000)
        line = page.locator(row(job["id"]))
        await expect(line).to_have_attribute("data-state", "succeeded")
        await expect(connection).to_have_attribute("data-state", "live")
        await line.click()
        events = page.locator("#detail-events li")
        await expect(events).to_have_count(3)
        texts = [text.split(" ", 1)[1] for text in await events.all_inner_texts()]
    assert texts == ["queued", "running", "succeeded"]
    assert listings == []


def _listing(request: Request) -> bool:
    return urlsplit(request.url).path == "/v1/jobs"


@pytest.mark.anyio
async def test_filters_health_and_screenshot() -> None:
    """Filters narrow the list, the health table counts calls, and a screenshot is saved."""
    async with serve(keys=None) as server:
        await server.submit(None, "builtin.echo", {"text": "ok"}, wait=10)
        await server.submit(None, "builtin.fail", {}, wait=10)
        held = await server.hold(None, "shot")
        async with dashboard(server) as page:
            await expect(page.locator("#jobs tbody tr")).to_have_count(3)
            await page.locator("#filter-state").select_option("failed")
            await expect(page.locator("#jobs tbody tr")).to_have_count(1)
            await page.locator("#filter-state").select_option("")
            await page.locator("#filter-tool").select_option("fake.gate")
            await expect(page.locator("#jobs tbody tr")).to_have_count(1)
            await page.locator("#filter-tool").select_option("")
            await expect(page.locator("#jobs tbody tr")).to_have_count(3)
            echo = page.locator('#tools tr[data-tool="builtin.echo"] .calls')
            await expect(echo).to_have_text("1")
            gate = page.locator('#tools tr[data-tool="fake.gate"] .in-flight')
            await expect(gate).to_have_text("1")
            # Two health samples make the first point of the calls-per-second line.
            points = re.compile(r"\d+(\.\d+)?,\d+")
            await expect(page.locator("#chart polyline")).to_have_attribute("points", points)
            await page.locator(row(held["id"])).click()
            path = artifact("dashboard.png")
            await page.screenshot(path=str(path), full_page=True)
            print(f"dashboard screenshot: {path}")
            assert path.stat().st_size > 0


def test_missing_chromium_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the chromium binary a browser test skips with a message naming what is missing."""
    monkeypatch.setattr(browser, "CHROMIUM", Path("/nonexistent/chromium"))
    with pytest.raises(pytest.skip.Exception, match=r"needs Debian's chromium at /nonexistent"):
        browser.require_chromium()


@pytest.mark.anyio
async def test_stream_reset_reloads_the_list() -> None:
    """A jobwarden.stream.reset frame makes the page fetch the job list again from the top."""
    sockets: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    async def intercept(page: Page) -> None:
        await page.route_web_socket(re.compile(r".*/v1/events.*"), through)

    async with serve(keys=None) as server, dashboard(server, before=intercept) as page:
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        job = await server.submit(None, "builtin.echo", {"text": "after the reset"}, wait=10)
        reset = {
            "specversion": "1.0",
            "id": "0",
            "source": "jobwarden://test",
            "type": "jobwarden.stream.reset",
            "subject": "*",
            "time": "2026-01-01T00:00:00Z",
            "data": {"requested_since": 7, "first_retained": 1},
        }

        def listing(request: Request) -> bool:
            return urlsplit(request.url).path == "/v1/jobs"

        async with page.expect_request(listing) as reload:
            sockets[0].send(json.dumps(reset))
        assert (await reload.value).method == "GET"
        await expect(page.locator(row(job["id"]))).to_have_attribute("data-state", "succeeded")


@pytest.mark.anyio
async def test_load_more_follows_the_cursor() -> None:
    """Past the first page of 50, "Load more" fetches the next page and the button goes away."""
    async with serve(keys=None) as server:
        jobs = [await server.submit(None, "builtin.echo", {"text": str(n)}) for n in range(51)]
        for job in jobs:
            await server.sup.wait(job["id"], timeout=10)
        async with dashboard(server) as page:
            rows = page.locator("#jobs tbody tr")
            await expect(rows).to_have_count(50)
            await page.locator("#load-more").click()
            await expect(rows).to_have_count(51)
            await expect(page.locator("#load-more")).to_be_hidden()
            assert await rows.nth(50).get_attribute("data-job-id") == jobs[0]["id"]


@pytest.mark.anyio
async def test_a_silent_socket_is_given_up_and_replaced() -> None:
    """When pongs stop coming, the page drops the socket after two ping periods and reconnects."""
    pongs_blocked = False
    sockets: list[WebSocketRoute] = []

    def muffled(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        sockets.append(ws)

        def to_page(message: str | bytes) -> None:
            if not (pongs_blocked and message == '{"type":"pong"}'):
                ws.send(message)

        server.on_message(to_page)

    async def with_clock(page: Page) -> None:
        await page.clock.install()
        await page.route_web_socket(re.compile(r".*/v1/events.*"), muffled)

    async with serve(keys=None) as server, dashboard(server, before=with_clock) as page:
        connection = page.locator("#connection")
        await expect(connection).to_have_attribute("data-state", "live")
        pongs_blocked = True
        await page.clock.run_for(46_000)
        await expect(connection).to_have_attribute("data-reconnects", "1")
        pongs_blocked = False
        await page.clock.run_for(1_000)
        await expect(connection).to_have_attribute("data-state", "live")
        assert len(sockets) == 2
        job = await server.submit(None, "builtin.echo", {"text": "still live"}, wait=10)
        await expect(page.locator(row(job["id"]))).to_have_attribute("data-state", "succeeded")


@pytest.mark.anyio
async def test_a_read_only_key_sees_the_403_on_submit() -> None:
    """A read-only key loads the page without others' jobs; its submit shows 403 forbidden."""
    async with serve() as server:
        theirs = await server.submit("alice", "builtin.echo", {"text": "alice's"}, wait=10)
        async with dashboard(server, who="reader") as page:
            await expect(page.locator("#jobs-empty")).to_be_visible()
            await page.locator("#submit-tool").select_option("builtin.echo")
            await page.locator('#submit-fields input[name="text"]').fill("not allowed")
            await page.locator("#submit button[type=submit]").click()
            error = page.locator("#submit-error")
            await expect(error).to_contain_text("forbidden")
            await expect(error).to_contain_text("jobs:submit")
            assert await page.locator(row(theirs["id"])).count() == 0
