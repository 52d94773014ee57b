"""The console over HTTP, as a browser without JavaScript uses it: signing in and out, what each
session may see and do, the forms' CSRF tokens, the list's filters and pages, and a clear 4xx
page for whatever is wrong with a request."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.conftest import API_KEY, RelayClient, RelayFactory, Upstream
from tests.console.conftest import ADMIN_TOKEN, resigned
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Nothing listens there: deliveries fail at once, and soon for good (dead-lettered).
DEAD_CALLBACK = "http://127.0.0.1:9/hooks"
CALLBACK = "http://127.0.0.1:9/never-called"


class Console:
    """A browser without JavaScript: it keeps cookies and sends the forms the pages hold."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def sign_in(self, key: str) -> httpx.Response:
        form = await self.http.get("/console/sign-in")
        return await self.http.post(
            "/console/sign-in", data={"key": key, "csrf": csrf_of(form.text)}
        )

    async def page(self, path: str, **params: str) -> httpx.Response:
        return await self.http.get(path, params=params or None)

    async def submit(self, page_path: str, action: str, **fields: str) -> httpx.Response:
        """Post the form of `page_path` whose action is `action`, with its CSRF token."""
        page = await self.http.get(page_path)
        assert page.status_code == 200, page.text
        return await self.http.post(action, data={"csrf": csrf_of(page.text), **fields})


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def watch_ids_in(page: str) -> list[str]:
    return re.findall(r'<a href="/console/watches/(wat_[0-9a-f]+)">', page)


@asynccontextmanager
async def console_of(relay: RelayClient) -> AsyncIterator[Console]:
    async with httpx.AsyncClient(base_url=relay.http.base_url) as http:
        yield Console(http)


@asynccontextmanager
async def signed_in(relay: RelayClient, key: str = API_KEY) -> AsyncIterator[Console]:
    async with console_of(relay) as console:
        answer = await console.sign_in(key)
        assert answer.status_code == 303, answer.text
        yield console


async def other_app(relay: RelayClient, name: str = "other") -> dict[str, Any]:
    response = await relay.http.post("/v1/admin/clients", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def register_as(relay: RelayClient, api_key: str, task_id: str) -> dict[str, Any]:
    response = await relay.http.post(
        "/v1/watches",
        json={"task_id": task_id, "callback_url": CALLBACK},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_apps_key_opens_a_session_in_an_httponly_strict_cookie(
    relay: RelayClient,
) -> None:
    async with console_of(relay) as console:
        answer = await console.sign_in(API_KEY)

        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/watches"
        cookie = next(
            value
            for value in answer.headers.get_list("set-cookie")
            if value.startswith("relay_console=")
        )
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console", "max-age=28800"} <= attributes
        assert "secure" not in attributes  # plain http on loopback: a Secure cookie is not sent
        assert API_KEY not in cookie
        page = await console.page("/console/watches")
        assert page.status_code == 200
        assert "Signed in as <strong>default</strong>" in page.text


async def test_a_wrong_key_gets_the_form_again_with_401_and_says_why(relay: RelayClient) -> None:
    async with console_of(relay) as console:
        answer = await console.sign_in("rk_not-a-key-of-this-relay")

        assert answer.status_code == 401
        assert "text/html" in answer.headers["content-type"]
        assert "This key was not accepted" in answer.text
        assert "relay_console=" not in answer.headers.get("set-cookie", "")
        assert (await console.page("/console/watches")).status_code == 303


async def test_without_a_session_pages_send_to_sign_in_and_the_refreshing_list_is_told_so(
    relay: RelayClient,
) -> None:
    async with console_of(relay) as console:
        for path in ("/console", "/console/watches", "/console/overview", "/console/recover"):
            answer = await console.page(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == "/console/sign-in"

        refresh = await console.http.get("/console/watches", headers={"HX-Request": "true"})

        assert refresh.status_code == 401
        assert refresh.headers["hx-redirect"] == "/console/sign-in"


async def test_sign_in_without_the_forms_token_is_refused(relay: RelayClient) -> None:
    async with console_of(relay) as console:
        await console.http.get("/console/sign-in")  # the sign-in cookie, but no token sent

        without = await console.http.post("/console/sign-in", data={"key": API_KEY})
        wrong = await console.http.post("/console/sign-in", data={"key": API_KEY, "csrf": "x"})

        for answer in (without, wrong):
            assert answer.status_code == 403
            assert "expired or was not sent from the console" in answer.text
            assert "relay_console=" not in answer.headers.get("set-cookie", "")


async def test_a_form_without_this_sessions_token_is_refused_and_changes_nothing(
    relay: RelayClient,
) -> None:
    watch = await relay.register("task-csrf", CALLBACK)
    async with signed_in(relay) as console:
        cancel = f"/console/watches/{watch['id']}/cancel"

        without = await console.http.post(cancel, data={})
        wrong = await console.http.post(cancel, data={"csrf": "0" * 64})
        other_session = await console.http.post(
            cancel, data={"csrf": csrf_of((await signed_in_page(relay)).text)}
        )

        for answer in (without, wrong, other_session):
            assert answer.status_code == 403
            assert "does not carry this session's security token" in html.unescape(answer.text)
        assert (await relay.get(watch["id"]))["state"] == "active"


async def signed_in_page(relay: RelayClient) -> httpx.Response:
    """A page of another session of the same app."""
    async with signed_in(relay) as other:
        return await other.page("/console/watches")


async def test_htmx_may_send_the_token_as_a_header(relay: RelayClient) -> None:
    watch = await relay.register("task-header", CALLBACK)
    async with signed_in(relay) as console:
        token = csrf_of((await console.page("/console/watches")).text)

        answer = await console.http.post(
            f"/console/watches/{watch['id']}/cancel",
            content=b"",
            headers={
                "X-CSRF-Token": token,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )

        assert answer.status_code == 303
        assert (await relay.get(watch["id"]))["state"] == "cancelled"


async def test_an_app_sees_only_its_own_watches_and_another_apps_watch_is_not_found(
    relay: RelayClient,
) -> None:
    mine = await relay.register("task-mine", CALLBACK)
    other = await other_app(relay)
    theirs = await register_as(relay, other["api_key"], "task-theirs")
    async with signed_in(relay) as console:
        listed = await console.page("/console/watches")
        assert watch_ids_in(listed.text) == [mine["id"]]

        page = await console.page(f"/console/watches/{theirs['id']}")
        assert page.status_code == 404
        assert "There is no watch with this id." in page.text
        token = csrf_of(listed.text)
        for action in ("cancel", "redeliver"):
            answer = await console.http.post(
                f"/console/watches/{theirs['id']}/{action}", data={"csrf": token}
            )
            assert answer.status_code == 404
        response = await relay.http.get(
            f"/v1/watches/{theirs['id']}", headers={"Authorization": f"Bearer {other['api_key']}"}
        )
        assert response.json()["state"] == "active"


async def test_the_admin_token_sees_every_apps_watches_with_the_apps_name(
    relay: RelayClient,
) -> None:
    mine = await relay.register("task-default", CALLBACK)
    other = await other_app(relay, "shop")
    theirs = await register_as(relay, other["api_key"], "task-shop")
    async with signed_in(relay, ADMIN_TOKEN) as console:
        listed = await console.page("/console/watches")

        assert watch_ids_in(listed.text) == [theirs["id"], mine["id"]]
        assert "Signed in as <strong>admin</strong> (every app)" in listed.text
        assert "<td>shop</td>" in listed.text and "<td>default</td>" in listed.text
        page = await console.page(f"/console/watches/{theirs['id']}")
        assert page.status_code == 200
        cancelled = await console.submit(
            f"/console/watches/{theirs['id']}", f"/console/watches/{theirs['id']}/cancel"
        )
        assert cancelled.status_code == 303
        response = await relay.http.get(
            f"/v1/watches/{theirs['id']}", headers={"Authorization": f"Bearer {other['api_key']}"}
        )
        assert response.json()["state"] == "cancelled"


async def test_the_admin_token_is_only_a_wrong_key_on_a_relay_without_one(
    start_relay: RelayFactory,
) -> None:
    async with start_relay() as relay, console_of(relay) as console:
        answer = await console.sign_in(ADMIN_TOKEN)

        assert answer.status_code == 401
        assert "or admin token" not in answer.text


async def test_revoking_or_rotating_the_key_ends_the_session_at_once(
    relay: RelayClient,
) -> None:
    other = await other_app(relay)
    app_id = other["client"]["id"]
    async with signed_in(relay, other["api_key"]) as revoked, signed_in(relay) as rotated:
        assert (await revoked.page("/console/watches")).status_code == 200

        await relay.http.post(f"/v1/admin/clients/{app_id}/revoke", headers=ADMIN)
        default_id = (await relay.http.get("/v1/client")).json()["id"]
        new_key = (
            await relay.http.post(f"/v1/admin/clients/{default_id}/rotate-key", headers=ADMIN)
        ).json()["api_key"]

        for console in (revoked, rotated):
            answer = await console.page("/console/watches")
            assert answer.status_code == 303
            assert answer.headers["location"] == "/console/sign-in"
        assert (await rotated.sign_in(new_key)).status_code == 303
        assert (await rotated.page("/console/watches")).status_code == 200


async def test_a_session_ends_after_its_time_to_live(start_relay: RelayFactory) -> None:
    async with start_relay(console_session_ttl=1) as relay, signed_in(relay) as console:
        assert (await console.page("/console/watches")).status_code == 200

        await asyncio.sleep(2.1)

        assert (await console.page("/console/watches")).status_code == 303


async def test_an_altered_cookie_is_no_session(relay: RelayClient) -> None:
    async with signed_in(relay) as console, console_of(relay) as forger:
        cookie = console.http.cookies["relay_console"]
        altered = resigned(cookie)

        kept = await forger.http.get(
            "/console/watches", headers={"Cookie": f"relay_console={cookie}"}
        )
        answer = await forger.http.get(
            "/console/watches", headers={"Cookie": f"relay_console={altered}"}
        )

        assert kept.status_code == 200
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in"


async def test_signing_out_ends_the_session(relay: RelayClient) -> None:
    async with signed_in(relay) as console:
        answer = await console.submit("/console/watches", "/console/sign-out")

        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in"
        assert (await console.page("/console/watches")).status_code == 303


#: Query strings of the list that name nothing it can show, and what its page says of each.
BAD_FILTERS = [
    ({"state": "finished"}, "'state' must be one of: active, capturing"),
    ({"task_status": "done"}, "'task_status' must be one of: queued"),
    ({"event_type": "task.updated"}, "'event_type' must be one of"),
    ({"created_after": "yesterday"}, "'created_after' must be a date and time in UTC"),
    ({"created_before": "2026-13-01T00:00"}, "'created_before' must be a date and time"),
    ({"created_after": "0001-01-01T00:00+01:00"}, "'created_after' must be a date and time"),
    ({"before": "wat_123"}, "'before' must be a watch id"),
    ({"task_id": "a\x00b"}, "'task_id' must be the start of a task id"),
]


async def test_bad_filters_get_a_400_page_saying_what_is_wrong(relay: RelayClient) -> None:
    async with signed_in(relay) as console:
        for params, message in BAD_FILTERS:
            answer = await console.page("/console/watches", **params)

            assert answer.status_code == 400, params
            assert "text/html" in answer.headers["content-type"]
            assert message in html.unescape(answer.text), params


async def test_what_is_not_there_gets_a_404_page(relay: RelayClient) -> None:
    async with signed_in(relay) as console:
        for path in (
            "/console/watches/not-a-watch",
            "/console/watches/wat_00000000000000000000000000000",
            "/console/watches/wat_0123456789abcdef0123456789ab",
            "/console/nowhere",
        ):
            answer = await console.page(path)

            assert answer.status_code == 404, path
            assert "text/html" in answer.headers["content-type"]
            assert "<h1>Not found</h1>" in answer.text


async def test_a_form_that_is_not_a_form_is_refused_with_a_page(relay: RelayClient) -> None:
    watch = await relay.register("task-json", CALLBACK)
    async with signed_in(relay) as console:
        cancel = f"/console/watches/{watch['id']}/cancel"

        as_json = await console.http.post(cancel, json={"csrf": "x"})
        not_utf8 = await console.http.post(
            cancel,
            content=b"csrf=\xff",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        assert as_json.status_code == 415
        assert not_utf8.status_code == 400
        assert "text/html" in not_utf8.headers["content-type"]


async def test_the_list_is_newest_first_fifty_a_page_with_an_older_link(
    relay: RelayClient,
) -> None:
    registered = [(await relay.register(f"task-{n:03}", CALLBACK))["id"] for n in range(53)]
    async with signed_in(relay) as console:
        first = await console.page("/console/watches")
        shown = watch_ids_in(first.text)
        older = re.search(r'<a href="/console/watches\?([^"]+)" rel="next">Older</a>', first.text)

        assert shown == registered[::-1][:50]
        assert older is not None
        second = await console.page(f"/console/watches?{html.unescape(older.group(1))}")
        assert watch_ids_in(second.text) == registered[::-1][50:]
        assert 'rel="next"' not in second.text
        assert '<a href="/console/watches">Newest</a>' in second.text


async def test_filters_narrow_the_list_and_are_kept_in_its_links(relay: RelayClient) -> None:
    kept = [(await relay.register(f"shop-{n}", CALLBACK))["id"] for n in range(3)]
    await relay.register("other-1", CALLBACK)
    await relay.http.delete(f"/v1/watches/{kept[0]}")
    async with signed_in(relay) as console:
        by_prefix = await console.page("/console/watches", task_id="shop-")
        cancelled = await console.page("/console/watches", state="cancelled", task_id="shop")
        active_shop = await console.page("/console/watches", state="active", task_id="shop-")
        none_yet = await console.page("/console/watches", created_after="2999-01-01T00:00")
        all_before = await console.page("/console/watches", created_before="2999-01-01T00:00:00")

        assert watch_ids_in(by_prefix.text) == kept[::-1]
        assert watch_ids_in(cancelled.text) == [kept[0]]
        assert watch_ids_in(active_shop.text) == kept[:0:-1]
        assert watch_ids_in(none_yet.text) == []
        assert "No watches match these filters." in none_yet.text
        assert len(watch_ids_in(all_before.text)) == 4
        # The refresh asks for the same view.
        assert 'hx-get="/console/watches?state=active&amp;task_id=shop-"' in active_shop.text
        assert "<option selected>active</option>" in active_shop.text


async def test_the_lists_refresh_gets_only_the_table(relay: RelayClient) -> None:
    watch = await relay.register("task-fragment", CALLBACK)
    async with signed_in(relay) as console:
        refresh = await console.http.get(
            "/console/watches", params={"state": "active"}, headers={"HX-Request": "true"}
        )

        assert refresh.status_code == 200
        assert refresh.text.lstrip().startswith('<div id="watch-table"')
        assert "<html" not in refresh.text
        assert watch_ids_in(refresh.text) == [watch["id"]]
        assert refresh.headers["vary"] == "HX-Request"


async def test_the_watch_page_shows_the_course_the_exact_body_and_the_headers_the_receiver_got(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, url = receiver
    hooks.answer_next(500)
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        watch = await relay.watch_to_the_end(upstream, url)
        async with signed_in(relay) as console:
            page = await console.page(f"/console/watches/{watch['id']}")

    assert page.status_code == 200
    text = html.unescape(page.text)
    got = hooks.received[-1]
    assert got.body.decode() in text  # the exact body
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert got.headers[name] in text, name
    assert "registered" in text and "succeeded" in text
    assert text.count("HTTP 500") == 1 and "HTTP 204" in text
    assert "answer 500" in text  # the start of the receiver's answer
    assert "Redeliver the webhook" in text
    assert "Cancel the watch" not in text  # completed: the API would refuse


async def test_redeliver_and_cancel_do_what_the_api_does_and_say_so(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, url = receiver
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        done = await relay.watch_to_the_end(upstream, url)
        live = await relay.register(await upstream.submit(polls=1000), url)
        async with signed_in(relay) as console:
            page = f"/console/watches/{done['id']}"

            again = await console.submit(page, f"{page}/redeliver")
            assert again.headers["location"] == f"{page}?notice=redelivered"
            await hooks.wait_for(2)
            refused = await console.submit(page, f"{page}/cancel")
            notice = await console.page(refused.headers["location"])
            cancelled = await console.submit(
                f"/console/watches/{live['id']}", f"/console/watches/{live['id']}/cancel"
            )
            after = await console.page(cancelled.headers["location"])

    assert hooks.received[0].body == hooks.received[1].body
    assert refused.headers["location"] == f"{page}?notice=not-cancellable"
    assert "The watch is already completed; nothing to cancel." in notice.text
    assert 'role="alert"' in notice.text
    assert "The watch is cancelled" in after.text
    assert "Redeliver the webhook" not in after.text


async def test_recover_sends_again_what_was_given_up_on_since_the_time_given(
    start_relay: RelayFactory, upstream: Upstream
) -> None:
    async with start_relay(admin_token=ADMIN_TOKEN, retry_schedule=(0.05,)) as relay:
        watch = await relay.watch_to_the_end(upstream, DEAD_CALLBACK, state="failed")
        async with signed_in(relay) as console:
            answer = await console.submit(
                "/console/recover", "/console/recover", since="2000-01-01T00:00"
            )
            result = await console.page(answer.headers["location"])
            bad = await console.submit("/console/recover", "/console/recover", since="soon")

        # Sent again, to a receiver still down: two more attempts, and given up on again.
        await relay.wait_for_state(watch["id"], "failed")
        tried = await relay.http.get(f"/v1/watches/{watch['id']}/attempts")

    assert len(tried.json()["data"]) == 4
    assert answer.headers["location"] == "/console/recover?recovered=1"
    assert "1 webhook queued to be sent again now." in result.text
    assert bad.status_code == 400


async def test_the_admin_recovers_for_the_app_chosen(
    start_relay: RelayFactory, upstream: Upstream
) -> None:
    async with start_relay(admin_token=ADMIN_TOKEN, retry_schedule=(0.05,)) as relay:
        await relay.watch_to_the_end(upstream, DEAD_CALLBACK, state="failed")
        default_id = (await relay.http.get("/v1/client")).json()["id"]
        async with signed_in(relay, ADMIN_TOKEN) as console:
            form = await console.page("/console/recover")
            unchosen = await console.submit(
                "/console/recover", "/console/recover", since="2000-01-01T00:00"
            )
            chosen = await console.submit(
                "/console/recover",
                "/console/recover",
                since="2000-01-01T00:00",
                client_id=default_id,
            )

    assert f'<option value="{default_id}">default</option>' in form.text
    assert unchosen.status_code == 400
    assert chosen.headers["location"] == "/console/recover?recovered=1"


async def test_the_overview_counts_and_draws_the_deliveries(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    _, url = receiver
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        await relay.watch_to_the_end(upstream, url)
        async with signed_in(relay) as console:
            page = await console.page("/console/overview")

    assert page.status_code == 200
    assert re.search(
        r'<span class="count">1</span> <span class="state state-completed">', page.text
    )
    assert (
        '<svg class="chart" role="img" aria-labelledby="deliveries-title deliveries-desc"'
        in page.text
    )
    assert "1 answered 2xx and 0 failed in all." in page.text
    assert page.text.count('<svg class="chart"') == 5


async def test_pages_carry_a_strict_content_security_policy_and_are_not_cached(
    relay: RelayClient,
) -> None:
    async with signed_in(relay) as console:
        page = await console.page("/console/watches")
        script = await console.page("/console/static/htmx.min.js")
        css = await console.page("/console/static/console.css")

    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert script.status_code == 200 and "htmx" in script.text
    assert css.status_code == 200 and "prefers-color-scheme: dark" in css.text


async def test_the_console_is_on_by_default_and_absent_with_relay_console_false(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(console=False) as relay, console_of(relay) as console:
        for path in ("/console", "/console/sign-in", "/console/static/htmx.min.js"):
            assert (await console.page(path)).status_code == 404, path
        assert "/console" not in (await relay.http.get("/openapi.json")).text
