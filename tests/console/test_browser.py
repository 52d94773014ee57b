"""The browser the console's tests drive: Debian's Chromium, headless, pointed at a relay."""

from __future__ import annotations

from playwright.async_api import Page, expect


async def test_the_sign_in_page_opens_in_the_headless_browser(page: Page) -> None:
    response = await page.goto("/console/sign-in")

    assert response is not None and response.status == 200
    await expect(page).to_have_title("Sign in · Relay console")
    await expect(page.get_by_label("API key or admin token")).to_have_attribute("type", "password")
