"""The `/v1/watches` API: registration, idempotency, reading, listing, cancelling, auth, input."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]


async def test_registering_returns_the_new_watch_and_its_location(relay: RelayClient) -> None:
    response = await relay.http.post(
        "/v1/watches", json={"task_id": "task-1", "callback_url": "https://example.com/hook"}
    )
    assert response.status_code == 201
    watch = response.json()
    assert response.headers["location"] == f"/v1/watches/{watch['id']}"
    assert watch["state"] == "active"
    assert watch["task_id"] == "task-1"
    assert watch["callback_url"] == "https://example.com/hook"
    assert watch["metadata"] is None
    assert watch["event"] is None
    assert (await relay.get(watch["id"]))["id"] == watch["id"]


async def test_registering_the_same_task_and_callback_again_returns_the_same_watch(
    relay: RelayClient,
) -> None:
    body = {"task_id": "task-1", "callback_url": "https://example.com/hook"}
    first = await relay.http.post("/v1/watches", json=body)
    again = await relay.http.post("/v1/watches", json=body)
    other = await relay.http.post("/v1/watches", json={**body, "callback_url": "https://x.io/h"})

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["id"] != first.json()["id"]


async def test_concurrent_identical_registrations_create_one_watch(relay: RelayClient) -> None:
    body = {"task_id": "task-1", "callback_url": "https://example.com/hook"}
    responses = await asyncio.gather(*(relay.http.post("/v1/watches", json=body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1


async def test_a_burst_of_registrations_with_repeats_creates_each_watch_once(
    relay: RelayClient,
) -> None:
    bodies = [
        {"task_id": f"task-{n % 25}", "callback_url": "https://example.com/hook"} for n in range(50)
    ]
    responses = await asyncio.gather(*(relay.http.post("/v1/watches", json=b) for b in bodies))

    assert sorted(r.status_code for r in responses) == [200] * 25 + [201] * 25
    by_task: dict[str, set[str]] = {}
    for body, response in zip(bodies, responses, strict=True):
        by_task.setdefault(body["task_id"], set()).add(response.json()["id"])
    assert all(len(ids) == 1 for ids in by_task.values())
    listed = (await relay.http.get("/v1/watches", params={"limit": 200})).json()["data"]
    assert len(listed) == 25


async def test_a_cancelled_watch_stops_and_sends_nothing(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    watch = await relay.register(await upstream.submit(duration=0.5), callback)

    response = await relay.http.delete(f"/v1/watches/{watch['id']}")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    await asyncio.sleep(1.0)

    assert hooks.received == []
    after = await relay.get(watch["id"])
    assert after["state"] == "cancelled"
    again = await relay.http.delete(f"/v1/watches/{watch['id']}")
    assert again.status_code == 200


async def test_a_cancelled_registration_can_be_made_again(relay: RelayClient) -> None:
    body = {"task_id": "task-1", "callback_url": "https://example.com/hook"}
    first = (await relay.http.post("/v1/watches", json=body)).json()
    await relay.http.delete(f"/v1/watches/{first['id']}")

    second = await relay.http.post("/v1/watches", json=body)
    assert second.status_code == 201
    assert second.json()["id"] != first["id"]


async def test_a_delivered_watch_cannot_be_cancelled(
    relay: RelayClient, upstream: Upstream, receiver: Hooks
) -> None:
    _, callback = receiver
    watch = await relay.watch_to_the_end(upstream, callback, "completed")

    response = await relay.http.delete(f"/v1/watches/{watch['id']}")
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]


async def test_unknown_watches_are_not_found(relay: RelayClient) -> None:
    assert (await relay.http.get("/v1/watches/wat_nope")).status_code == 404
    assert (await relay.http.delete("/v1/watches/wat_nope")).status_code == 404


async def test_listing_is_newest_first_filtered_and_paginated(relay: RelayClient) -> None:
    ids = [(await relay.register(f"task-{n}", "https://example.com/hook"))["id"] for n in range(5)]
    await relay.http.delete(f"/v1/watches/{ids[0]}")

    first = (await relay.http.get("/v1/watches", params={"limit": 2})).json()
    second = (
        await relay.http.get("/v1/watches", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    third = (
        await relay.http.get("/v1/watches", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    listed = [w["id"] for page in (first, second, third) for w in page["data"]]
    assert listed == ids[::-1]
    assert third["next_cursor"] is None

    cancelled = (await relay.http.get("/v1/watches", params={"state": "cancelled"})).json()
    assert [w["id"] for w in cancelled["data"]] == [ids[0]]
    by_task = (await relay.http.get("/v1/watches", params={"task_id": "task-3"})).json()
    assert [w["id"] for w in by_task["data"]] == [ids[3]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"state": "sleeping"}, "Input should be"),
        ({"limit": 0}, "greater than or equal to 1"),
        ({"limit": 1000}, "less than or equal to 200"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
async def test_listing_rejects_bad_parameters(
    relay: RelayClient, params: dict[str, str | int], message: str
) -> None:
    response = await relay.http.get("/v1/watches", params=params)
    assert 400 <= response.status_code < 500
    assert message in response.text


async def test_the_api_needs_the_clients_key(relay: RelayClient) -> None:
    url = str(relay.http.base_url)
    async with httpx.AsyncClient(base_url=url) as anonymous:
        missing = await anonymous.get("/v1/watches")
        wrong = await anonymous.get("/v1/watches", headers={"Authorization": "Bearer nope"})
        health = await anonymous.get("/healthz")
        ready = await anonymous.get("/readyz")
    assert missing.status_code == 401
    assert "missing API key" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "invalid API key"
    assert health.status_code == 200
    assert ready.status_code == 200


async def test_clients_see_their_signing_secret(relay: RelayClient) -> None:
    response = await relay.http.get("/v1/client")
    assert response.status_code == 200
    assert response.json()["signing_secret"] == relay.settings.signing_secret.get_secret_value()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"callback_url": "https://example.com/h"}, "Field required"),
        ({"task_id": "", "callback_url": "https://example.com/h"}, "at least 1 character"),
        ({"task_id": "x" * 2049, "callback_url": "https://example.com/h"}, "at most 2048"),
        ({"task_id": " padded ", "callback_url": "https://example.com/h"}, "whitespace"),
        ({"task_id": "..", "callback_url": "https://example.com/h"}, "cannot be '.' or '..'"),
        ({"task_id": "t", "callback_url": "ftp://example.com/h"}, "http:// or https://"),
        ({"task_id": "t", "callback_url": "not-a-url"}, "http:// or https://"),
        ({"task_id": "t", "callback_url": "not a url"}, "whitespace or control characters"),
        ({"task_id": "t", "callback_url": "https://"}, "no host"),
        ({"task_id": "t", "callback_url": "https://example.com:99999/"}, "not a valid URL"),
        ({"task_id": "t", "callback_url": "https://e.com/" + "a" * 2048}, "longer than 2048"),
        ({"task_id": "t", "callback_url": "https://e.com", "metadata": [1]}, "valid dictionary"),
        (
            {"task_id": "t", "callback_url": "https://e.com", "metadata": {"a": "x" * 17000}},
            "the limit is 16384",
        ),
        ({"task_id": "t", "callback_url": "https://e.com", "colour": "red"}, "Extra inputs"),
        ([1, 2], "valid dictionary"),
    ],
)
async def test_bad_registrations_are_refused_with_a_reason(
    relay: RelayClient, body: object, message: str
) -> None:
    response = await relay.http.post("/v1/watches", json=body)
    assert response.status_code == 422
    assert message in response.text
    assert (await relay.http.get("/v1/watches")).json()["data"] == []


async def test_malformed_json_is_refused(relay: RelayClient) -> None:
    response = await relay.http.post(
        "/v1/watches", content=b'{"task_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON decode error" in response.text


async def test_private_callbacks_are_refused_unless_allowed(start_relay: RelayFactory) -> None:
    async with start_relay(allow_private_callbacks=False) as relay:
        for url in (
            "http://127.0.0.1:8000/h",
            "http://localhost/h",
            "http://10.0.0.8/h",
            "http://[::1]/h",
            "http://169.254.169.254/latest",
        ):
            response = await relay.http.post(
                "/v1/watches", json={"task_id": "t", "callback_url": url}
            )
            assert response.status_code == 422, url
            assert "RELAY_ALLOW_PRIVATE_CALLBACKS" in response.text
        public = await relay.http.post(
            "/v1/watches", json={"task_id": "t", "callback_url": "https://example.com/h"}
        )
        assert public.status_code == 201
