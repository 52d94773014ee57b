"""The console in a real browser, as an operator uses it: signing in, watching the list fill by
itself, opening a watch, redelivering, cancelling, recovering, and what it refuses."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.conftest import API_KEY, RelayClient, Upstream
from tests.console.conftest import ADMIN_TOKEN
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
#: The list refreshes every 5 s: a new watch shows within that, and a little more.
REFRESH_MS = 8_000


async def sign_in(page: Page, key: str = API_KEY) -> None:
    await page.goto("/console")
    await page.get_by_label(re.compile("API key")).fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_new_watch_appears_without_a_reload_and_its_redelivery_reaches_the_receiver(
    page: Page, console_relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, url = receiver
    complaints: list[str] = []  # the page's policy refusing something, a script failing
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text) if message.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda error: complaints.append(str(error)))
    await sign_in(page)
    await expect(page.get_by_role("heading", name="Watches")).to_be_visible()
    await page.evaluate("window.notReloaded = true")

    watch = await console_relay.watch_to_the_end(upstream, url)
    link = page.get_by_role("link", name=watch["id"])
    await expect(link).to_be_visible(timeout=REFRESH_MS)
    assert await page.evaluate("window.notReloaded") is True

    await link.click()
    attempts = page.get_by_role("table", name=re.compile("Every attempt")).locator("tbody tr")
    await expect(attempts).to_have_count(1)
    await expect(attempts.first).to_contain_text("HTTP 204")
    await page.get_by_role("button", name="Redeliver the webhook").click()
    await expect(page.get_by_role("status")).to_contain_text("queued to be sent again")
    [first, again] = await hooks.wait_for(2)
    assert again.body == first.body
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    await console_relay.wait_for_state(watch["id"], "completed")
    await page.reload()
    await expect(attempts).to_have_count(2)
    await expect(page.get_by_text(again.headers["webhook-signature"])).to_be_visible()
    assert complaints == []


async def test_cancel_asks_for_a_confirmation_then_stops_the_watch(
    page: Page, console_relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    _, url = receiver
    watch = await console_relay.register(await upstream.submit(polls=1000), url)
    await sign_in(page)
    await page.get_by_role("link", name=watch["id"]).click()

    confirm = page.get_by_role("button", name="Yes, cancel this watch")
    await expect(confirm).to_be_hidden()
    await page.get_by_text("Cancel the watch…").click()
    await confirm.click()

    await expect(page.get_by_role("status")).to_contain_text("The watch is cancelled")
    assert (await console_relay.get(watch["id"]))["state"] == "cancelled"
    await expect(page.get_by_role("button", name="Yes, cancel this watch")).to_have_count(0)


async def test_recover_sends_again_what_was_given_up_on_and_the_receiver_gets_it(
    page: Page, console_relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, url = receiver
    hooks.answer_next(500, 500, 500, 500)  # every attempt of the schedule: given up on
    watch = await console_relay.watch_to_the_end(upstream, url, state="failed")
    await sign_in(page)

    await page.get_by_role("link", name="Recover").click()
    await page.get_by_label("Given up on webhooks made since (UTC)").fill("2000-01-01T00:00")
    await page.get_by_role("button", name="Send them again").click()

    await expect(page.get_by_role("status")).to_have_text("1 webhook queued to be sent again now.")
    await hooks.wait_for(5)
    await console_relay.wait_for_state(watch["id"], "completed")


async def test_the_console_refuses_a_wrong_key_a_form_without_its_token_and_another_apps_watch(
    page: Page, console_relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    _, url = receiver
    await sign_in(page, "rk_not-a-key-of-this-relay")
    await expect(page.get_by_role("alert")).to_contain_text("This key was not accepted")

    other = await console_relay.http.post(
        "/v1/admin/clients",
        json={"name": "other"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    theirs = await console_relay.http.post(
        "/v1/watches",
        json={"task_id": await upstream.submit(polls=1000), "callback_url": url},
        headers={"Authorization": f"Bearer {other.json()['api_key']}"},
    )
    mine = await console_relay.register(await upstream.submit(polls=1000), url)
    await sign_in(page)
    await expect(page.get_by_role("link", name=mine["id"])).to_be_visible()
    await expect(page.get_by_role("link", name=theirs.json()["id"])).to_have_count(0)
    answer = await page.goto(f"/console/watches/{theirs.json()['id']}")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    await page.goto(f"/console/watches/{mine['id']}")
    await page.locator("form[action$='/cancel'] input[name=csrf]").evaluate(
        "field => field.remove()"
    )
    await page.get_by_text("Cancel the watch…").click()
    await page.get_by_role("button", name="Yes, cancel this watch").click()
    await expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("security token")
    assert (await console_relay.get(mine["id"]))["state"] == "active"
