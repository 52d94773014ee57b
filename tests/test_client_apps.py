"""Many apps on one relay: each sees and controls only its own watches, gets webhooks signed with
its own secret (both secrets while a rotation overlaps), loses access at once when its key is
rotated or revoked, and meets its limits without slowing the others. The admin API manages them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import API_KEY, RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
ADMIN_TOKEN = "admin-8c2f0e4b7d1a9c3e5f6a"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Nothing listens there: deliveries fail at once, and soon for good (dead-lettered).
DEAD_CALLBACK = "http://127.0.0.1:9/hooks"


@dataclass
class App:
    """A client app made through the admin API, with a client of the relay that uses its key."""

    id: str
    name: str
    api_key: str
    signing_secret: str
    relay: RelayClient

    @property
    def http(self) -> httpx.AsyncClient:
        return self.relay.http


async def create_app(relay: RelayClient, name: str) -> dict[str, Any]:
    response = await relay.http.post("/v1/admin/clients", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


@asynccontextmanager
async def apps_on(relay: RelayClient, *names: str) -> AsyncIterator[list[App]]:
    """New client apps of `relay`, each with its own HTTP client."""
    async with AsyncExitStack() as stack:
        apps = []
        for name in names:
            made = await create_app(relay, name)
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=relay.http.base_url,
                    headers={"Authorization": f"Bearer {made['api_key']}"},
                )
            )
            apps.append(
                App(
                    made["client"]["id"],
                    name,
                    made["api_key"],
                    made["signing_secret"],
                    RelayClient(http, relay.settings),
                )
            )
        yield apps


def verifies(secret: str, hook: Any) -> bool:
    try:
        Webhook(secret).verify(hook.body, hook.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_an_app_never_sees_nor_changes_another_apps_watches(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN) as relay,
        apps_on(relay, "shop", "blog") as (
            shop,
            blog,
        ),
    ):
        delivered = await shop.relay.watch_to_the_end(upstream, callback)
        dead = await shop.relay.watch_to_the_end(upstream, DEAD_CALLBACK, state="failed")
        own = await blog.relay.register(delivered["task_id"], callback)
        theirs = [delivered["id"], dead["id"]]

        for watch_id in theirs:
            for method, path in [
                ("GET", f"/v1/watches/{watch_id}"),
                ("DELETE", f"/v1/watches/{watch_id}"),
                ("GET", f"/v1/watches/{watch_id}/attempts"),
                ("POST", f"/v1/watches/{watch_id}/redeliver"),
            ]:
                answer = await blog.http.request(method, path)
                assert answer.status_code == 404, (method, path, answer.text)
                assert answer.json() == {"detail": "no watch with this id"}
        listings = [
            await blog.http.get("/v1/watches", params=params)
            for params in (
                {},
                {"task_id": delivered["task_id"]},
                {"task_id": dead["task_id"]},
                {"state": "completed"},
                {"state": "failed"},
                {"limit": 200},
            )
        ]
        recovered = await blog.http.post("/v1/recover", json={"since": "2000-01-01T00:00:00Z"})
        after = [await shop.relay.get(watch_id) for watch_id in theirs]
        own_recovery = await shop.http.post("/v1/recover", json={"since": "2000-01-01T00:00:00Z"})

    assert own["id"] not in theirs, "the same task and callback make a watch of each app's own"
    for listing in listings:
        assert listing.status_code == 200
        assert {watch["id"] for watch in listing.json()["data"]} <= {own["id"]}
    assert recovered.json() == {"recovered": 0}
    assert [watch["state"] for watch in after] == ["completed", "failed"]
    assert after[0]["event"]["attempts"] == 1, "nothing was sent again"
    assert own_recovery.json() == {"recovered": 1}


async def test_an_idempotency_key_belongs_to_the_app_that_used_it(
    start_relay: RelayFactory, receiver: Hooks
) -> None:
    _, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN) as relay,
        apps_on(relay, "shop", "blog") as (
            shop,
            blog,
        ),
    ):
        key = {"Idempotency-Key": "order-42"}
        first = await shop.http.post(
            "/v1/watches", json={"task_id": "video_a", "callback_url": callback}, headers=key
        )
        other = await blog.http.post(
            "/v1/watches", json={"task_id": "video_b", "callback_url": callback}, headers=key
        )

    assert (first.status_code, other.status_code) == (201, 201)
    assert other.json()["task_id"] == "video_b"


async def test_each_apps_webhooks_verify_with_its_own_secret_only(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN) as relay,
        apps_on(relay, "shop", "blog") as (
            shop,
            blog,
        ),
    ):
        watches = {
            (await app.relay.register(await upstream.submit(polls=1), callback))["id"]: app
            for app in (shop, blog)
        }
        await hooks.final_events(watches)
        described = [(await app.http.get("/v1/client")).json() for app in (shop, blog)]

    assert [(d["id"], d["name"], d["signing_secret"]) for d in described] == [
        (app.id, app.name, app.signing_secret) for app in (shop, blog)
    ]
    for hook in hooks.received:
        sender = watches[json.loads(hook.body)["data"]["watch_id"]]
        other = blog if sender is shop else shop
        assert verifies(sender.signing_secret, hook)
        assert not verifies(other.signing_secret, hook)
        assert len(hook.headers["webhook-signature"].split()) == 1


async def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends_then_only_the_new(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN, secret_overlap=3) as relay,
        apps_on(relay, "shop") as (shop,),
    ):
        rotated = await relay.http.post(f"/v1/admin/clients/{shop.id}/rotate-secret", headers=ADMIN)
        new_secret = rotated.json()["signing_secret"]
        during = await shop.http.get("/v1/client")
        await shop.relay.register(await upstream.submit(polls=1), callback)
        [in_overlap] = await hooks.wait_for(1)

        until = datetime.fromisoformat(rotated.json()["client"]["previous_secret_until"])
        await asyncio.sleep((until - datetime.now(UTC)).total_seconds() + 0.2)
        await shop.relay.register(await upstream.submit(polls=1), callback)
        [_, after_overlap] = await hooks.wait_for(2)
        after = await shop.http.get("/v1/client")

    assert rotated.status_code == 200
    assert new_secret != shop.signing_secret
    assert during.json()["signing_secret"] == new_secret
    assert (
        during.json()["previous_secret_until"] == rotated.json()["client"]["previous_secret_until"]
    )
    assert len(in_overlap.headers["webhook-signature"].split()) == 2
    assert verifies(new_secret, in_overlap) and verifies(shop.signing_secret, in_overlap)
    assert len(after_overlap.headers["webhook-signature"].split()) == 1
    assert verifies(new_secret, after_overlap)
    assert not verifies(shop.signing_secret, after_overlap)
    assert after.json()["previous_secret_until"] is None


# Replicas share PostgreSQL: a second relay on a SQLite file is refused (test_sqlite_guard).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_rotated_or_revoked_key_is_refused_at_once_by_every_replica(
    start_relay: RelayFactory,
) -> None:
    async with (
        start_relay(admin_token=ADMIN_TOKEN) as relay,
        start_relay(admin_token=ADMIN_TOKEN) as replica,
        apps_on(relay, "shop", "blog") as (shop, blog),
    ):

        async def status_on_replica(api_key: str) -> int:
            auth = {"Authorization": f"Bearer {api_key}"}
            return (await replica.http.get("/v1/client", headers=auth)).status_code

        before = await status_on_replica(shop.api_key)
        rotated = await relay.http.post(f"/v1/admin/clients/{shop.id}/rotate-key", headers=ADMIN)
        new_key = rotated.json()["api_key"]
        after_rotation = [await status_on_replica(key) for key in (shop.api_key, new_key)]
        revoked = await relay.http.post(f"/v1/admin/clients/{shop.id}/revoke", headers=ADMIN)
        after_revocation = [
            await status_on_replica(key) for key in (shop.api_key, new_key, blog.api_key)
        ]
        registration = await replica.http.post(
            "/v1/watches",
            json={"task_id": "video_1", "callback_url": "http://127.0.0.1/h"},
            headers={"Authorization": f"Bearer {new_key}"},
        )

    assert before == 200
    assert after_rotation == [401, 200]
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert after_revocation == [401, 401, 200]
    assert registration.status_code == 401
    assert registration.json() == {"detail": "invalid API key"}


async def test_requests_that_come_together_are_each_told_apart_by_their_own_key(
    start_relay: RelayFactory,
) -> None:
    """Keys that arrive together are looked up together: each request still gets its own app,
    or 401 for a key that is revoked, rotated away or unknown."""
    async with (
        start_relay(admin_token=ADMIN_TOKEN) as relay,
        apps_on(relay, "shop", "blog", "gone") as (shop, blog, gone),
    ):
        revoked = await relay.http.post(f"/v1/admin/clients/{gone.id}/revoke", headers=ADMIN)
        assert revoked.status_code == 200
        keys = [shop.api_key, blog.api_key, gone.api_key, "rk_" + "x" * 43, API_KEY] * 20

        async def whoami(api_key: str) -> tuple[int, str | None]:
            auth = {"Authorization": f"Bearer {api_key}"}
            response = await relay.http.get("/v1/client", headers=auth)
            return response.status_code, response.json().get("name")

        answers = await asyncio.gather(*(whoami(key) for key in keys))

    expected = [(200, "shop"), (200, "blog"), (401, None), (401, None), (200, "default")] * 20
    assert answers == expected


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/clients", None),
        ("POST", "/v1/admin/clients", {"name": "shop"}),
        ("POST", "/v1/admin/clients", b"{not json"),
        ("PUT", "/v1/admin/clients", None),
        ("GET", "/v1/admin/clients/cli_1", None),
        ("POST", "/v1/admin/clients/cli_1/revoke", None),
        ("GET", "/v1/admin", None),
    ],
)
async def test_without_an_admin_token_the_admin_api_is_not_there(
    start_relay: RelayFactory, method: str, path: str, body: Any
) -> None:
    async with start_relay() as relay:
        content = body if isinstance(body, bytes) else None
        for headers in ({}, {"Authorization": f"Bearer {API_KEY}"}, ADMIN):
            answer = await relay.http.request(
                method,
                path,
                json=None if content is not None else body,
                content=content,
                headers=headers or {"Authorization": ""},
            )
            assert answer.status_code == 404, (headers, answer.text)
            assert answer.json() == {"detail": "Not Found"}


async def test_the_admin_api_wants_its_own_token(start_relay: RelayFactory) -> None:
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        missing = await relay.http.get("/v1/admin/clients", headers={"Authorization": ""})
        a_client_key = await relay.http.get("/v1/admin/clients")
        wrong = await relay.http.get(
            "/v1/admin/clients", headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        )
        right = await relay.http.get("/v1/admin/clients", headers=ADMIN)
        as_client = await relay.http.get("/v1/client", headers=ADMIN)

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert a_client_key.status_code == 403 and wrong.status_code == 403
    assert right.status_code == 200
    assert as_client.status_code == 401, "the admin token is no client app's key"


async def test_the_admin_api_creates_lists_rotates_and_revokes_apps(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        made = await create_app(relay, "shop")
        shop_id = made["client"]["id"]
        key = {"Authorization": f"Bearer {made['api_key']}"}
        me = await relay.http.get("/v1/client", headers=key)
        listed = await relay.http.get("/v1/admin/clients", headers=ADMIN)
        one = await relay.http.get(f"/v1/admin/clients/{shop_id}", headers=ADMIN)
        taken = await relay.http.post("/v1/admin/clients", json={"name": "shop"}, headers=ADMIN)
        badly_named = await relay.http.post(
            "/v1/admin/clients", json={"name": "a\nb"}, headers=ADMIN
        )
        secret = await relay.http.post(f"/v1/admin/clients/{shop_id}/rotate-secret", headers=ADMIN)
        me_after = await relay.http.get("/v1/client", headers=key)
        revoked = await relay.http.post(f"/v1/admin/clients/{shop_id}/revoke", headers=ADMIN)
        again = await relay.http.post(f"/v1/admin/clients/{shop_id}/revoke", headers=ADMIN)
        refused = [
            await relay.http.post(f"/v1/admin/clients/{shop_id}/{change}", headers=ADMIN)
            for change in ("rotate-key", "rotate-secret")
        ]
        unknown = [
            await relay.http.request(method, f"/v1/admin/clients/cli_nope{path}", headers=ADMIN)
            for method, path in (
                ("GET", ""),
                ("POST", "/rotate-key"),
                ("POST", "/rotate-secret"),
                ("POST", "/revoke"),
            )
        ]
        listed_after = await relay.http.get("/v1/admin/clients", headers=ADMIN)

    assert made["api_key"].startswith("rk_") and made["signing_secret"].startswith("whsec_")
    assert made["client"]["name"] == "shop" and made["client"]["revoked_at"] is None
    assert me.json()["id"] == shop_id and me.json()["name"] == "shop"
    assert me.json()["signing_secret"] == made["signing_secret"]
    assert [app["name"] for app in listed.json()["data"]] == ["default", "shop"]
    assert one.json() == made["client"]
    assert "api_key" not in one.json() and "signing_secret" not in one.json()
    assert taken.status_code == 409
    assert badly_named.status_code == 422
    assert secret.json()["api_key"] is None
    assert me_after.json()["signing_secret"] == secret.json()["signing_secret"]
    assert revoked.json()["revoked_at"] == again.json()["revoked_at"] is not None
    assert [answer.status_code for answer in refused] == [409, 409]
    assert [answer.status_code for answer in unknown] == [404, 404, 404, 404]
    states = {app["name"]: app["revoked_at"] for app in listed_after.json()["data"]}
    assert states["default"] is None and states["shop"] is not None


async def test_client_ids_that_cannot_be_are_not_found_and_change_nothing(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        before = (await relay.http.get("/v1/admin/clients", headers=ADMIN)).json()
        default_id = before["data"][0]["id"]
        for odd in ("%00", f"{default_id}%00", "%FF", "%ED%A0%80", "x" * 8000, f"{default_id}%0A"):
            for method, path in (
                ("GET", f"/v1/admin/clients/{odd}"),
                ("POST", f"/v1/admin/clients/{odd}/rotate-key"),
                ("POST", f"/v1/admin/clients/{odd}/rotate-secret"),
                ("POST", f"/v1/admin/clients/{odd}/revoke"),
            ):
                response = await relay.http.request(method, path, headers=ADMIN)
                assert response.status_code == 404, (method, path[:60], response.text)
                assert response.json() == {"detail": "no client app with this id"}
        after = (await relay.http.get("/v1/admin/clients", headers=ADMIN)).json()
    assert after == before


async def test_an_app_over_its_rate_is_told_when_to_retry_and_another_is_not_slowed(
    start_relay: RelayFactory, receiver: Hooks
) -> None:
    _, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN, rate_limit=2) as relay,
        apps_on(relay, "shop", "blog") as (shop, blog),
    ):
        burst = await asyncio.gather(
            *(
                shop.http.post("/v1/watches", json={"task_id": f"t{n}", "callback_url": callback})
                for n in range(8)
            )
        )
        others = [
            await blog.http.post("/v1/watches", json={"task_id": f"t{n}", "callback_url": callback})
            for n in range(2)
        ]
        await asyncio.sleep(1.1)
        later = await shop.http.post(
            "/v1/watches", json={"task_id": "t9", "callback_url": callback}
        )

    codes = [answer.status_code for answer in burst]
    assert 1 <= codes.count(201) <= 3 and codes.count(429) >= 5, codes
    refused = next(answer for answer in burst if answer.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert "at most 2 a second" in refused.json()["detail"]
    assert [answer.status_code for answer in others] == [201, 201]
    assert later.status_code == 201


async def test_an_app_at_its_cap_of_live_watches_waits_for_some_to_end_and_another_is_not_held(
    start_relay: RelayFactory, receiver: Hooks
) -> None:
    _, callback = receiver
    async with (
        start_relay(admin_token=ADMIN_TOKEN, max_active_watches=2, poll_interval=2) as relay,
        apps_on(relay, "shop", "blog") as (shop, blog),
    ):

        async def register(app: App, task_id: str) -> httpx.Response:
            return await app.http.post(
                "/v1/watches", json={"task_id": task_id, "callback_url": callback}
            )

        # Tasks the upstream does not know: their watches stay active.
        first = [await register(shop, f"video_{n}") for n in range(2)]
        over = await register(shop, "video_2")
        others = [await register(blog, f"video_{n}") for n in range(2)]
        again = await register(shop, "video_0")
        await shop.http.delete(f"/v1/watches/{first[0].json()['id']}")
        await asyncio.sleep(1.1)  # the count is read again at most once a second
        after_cancel = await register(shop, "video_3")

    assert [answer.status_code for answer in first] == [201, 201]
    assert over.status_code == 429
    assert over.headers["retry-after"] == "2", "live watches end at polls: one interval"
    assert "at most 2 active" in over.json()["detail"]
    assert [answer.status_code for answer in others] == [201, 201]
    assert again.status_code == 429
    assert after_cancel.status_code == 201
