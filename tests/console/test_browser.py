"""The browser the console's tests drive: Debian's Chromium, headless, pointed at a relay."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect


async def test_a_page_of_the_relay_opens_in_the_headless_browser(page: Page) -> None:
    response = await page.goto("/docs")

    assert response is not None and response.ok
    await expect(page).to_have_title(re.compile("Swagger UI"))
