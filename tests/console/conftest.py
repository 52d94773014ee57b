"""The console's browser tests: headless Chromium from Debian's `chromium` package, driven by
Playwright, against a relay served as in the other tests.

One browser per test worker, a fresh context (cookies, storage) per test. The browser runs in
a Playwright browser server of its own, started once; each test connects to it from its own
event loop, since the suite's async fixtures (the relay, the upstream, the receiver) live on the
test's loop and Playwright's objects belong to the loop that made them. pytest-playwright's
options still apply: `--headed` and `--slowmo 500` to watch a test run.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import RelayClient, RelayFactory

ADMIN_TOKEN = "console-admin-4f1c9a7e2b6d8053"
#: Long enough for a slow page on a busy machine, short enough that Playwright, not the test's
#: timeout, says which step hung.
ACTION_TIMEOUT_MS = 10_000
#: How long the browser server has to say where it listens.
SERVER_START_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class BrowserServer:
    ws_endpoint: str
    slow_mo: float


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, with the system's Chromium: a browser build of
    Playwright's own is never downloaded."""
    chromium = shutil.which("chromium")
    if chromium is None:
        reason = "no chromium installed (apt-get install chromium); the browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": chromium}


@pytest.fixture(scope="session")
def browser_server(
    browser_type_launch_args: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserServer]:
    """Chromium, launched once per worker by Playwright's browser server."""
    options = dict(browser_type_launch_args)
    slow_mo = float(options.pop("slow_mo", 0))
    options.pop("channel", None)  # the executable is given
    config = tmp_path_factory.mktemp("browser") / "launch.json"
    config.write_text(json.dumps({_camel(name): value for name, value in options.items()}))
    command = ["playwright", "launch-server", "--browser", "chromium", "--config", str(config)]
    with subprocess.Popen(
        [sys.executable, "-m", *command],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # `python -m playwright` runs the server as a child: stop both
    ) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], SERVER_START_SECONDS)
            endpoint = process.stdout.readline().strip() if ready else ""
            if not endpoint.startswith("ws://"):
                raise RuntimeError(f"the browser server did not start: {endpoint!r}")
            yield BrowserServer(endpoint, slow_mo)
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the server closes the browser as it goes


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


@pytest.fixture
async def browser(browser_server: BrowserServer) -> AsyncIterator[Browser]:
    """The worker's browser, connected to from this test's event loop."""
    async with async_playwright() as driver:
        connected = await driver.chromium.connect(
            browser_server.ws_endpoint, slow_mo=browser_server.slow_mo
        )
        yield connected
        await connected.close()


@pytest.fixture
async def relay(start_relay: RelayFactory) -> AsyncIterator[RelayClient]:
    """The relay the HTTP tests sign in to. Polls seldom: these tests look at watches, and a
    quiet relay keeps them quick."""
    async with start_relay(admin_token=ADMIN_TOKEN, poll_interval=30) as client:
        yield client


@pytest.fixture
async def console_relay(start_relay: RelayFactory) -> AsyncIterator[RelayClient]:
    """A relay that the app's key (`tests.conftest.API_KEY`) and the admin token sign in to."""
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        yield relay


@pytest.fixture
async def context(browser: Browser, console_relay: RelayClient) -> AsyncIterator[BrowserContext]:
    """A new browser profile whose relative URLs go to `console_relay`."""
    fresh = await browser.new_context(base_url=str(console_relay.http.base_url))
    fresh.set_default_timeout(ACTION_TIMEOUT_MS)
    yield fresh
    await fresh.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


def resigned(cookie: str) -> str:
    """The cookie with the first character of its signature changed: its last may carry bits
    that decode to nothing, so changing it alone may change nothing."""
    at = cookie.rindex(".") + 1
    return cookie[:at] + ("A" if cookie[at] != "A" else "B") + cookie[at + 1 :]
