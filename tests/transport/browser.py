"""Driving the dashboard in Debian's headless Chromium through Playwright's async API.

The browser is the system's ``/usr/bin/chromium`` (``scripts/setup`` installs it when it can),
never one downloaded by ``playwright install``. Without it the browser tests skip and say why.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from tests.transport.conftest import KEYS, Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def require_chromium() -> None:
    """Skip the calling test, naming the cause, when Debian's chromium binary is missing."""
    if not CHROMIUM.exists():
        hint = "apt-get install chromium" if shutil.which("apt-get") else "no apt-get here either"
        pytest.skip(f"browser test needs Debian's chromium at {CHROMIUM} (missing; {hint})")


@asynccontextmanager
async def dashboard(
    server: Server,
    *,
    who: str | None = None,
    wait_ready: bool = True,
    before: Callable[[Page], Awaitable[None]] | None = None,
) -> AsyncIterator[Page]:
    """A fresh headless page showing the server's dashboard; ``who``'s key preset in the session,
    ``before`` run on the page before it loads (to route its websocket, say).

    On exit it fails the test if the page raised an uncaught JavaScript error meanwhile.
    """
    require_chromium()
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            if who is not None:
                await page.add_init_script(
                    f"sessionStorage.setItem('jobwarden.api_key', {KEYS[who]!r})"
                )
            if before is not None:
                await before(page)
            await page.goto(server.url("/"))
            if wait_ready:
                await page.locator("body[data-ready=true]").wait_for()
            yield page
        finally:
            await browser.close()
    assert not errors, f"the page raised: {errors}"


def row(job_id: str) -> str:
    """The CSS selector of a job's row in the list."""
    return f'#jobs tr[data-job-id="{job_id}"]'


def artifact(name: str) -> Path:
    """A path under ``artifacts/`` at the repository root (created if missing)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
