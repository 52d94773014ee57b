"""A relay that refuses private callbacks cannot be turned against its own network: not at
registration, not at delivery, not by a name whose answer changes in between."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import RelayFactory, Upstream
from tests.delivery.test_callbacks import (
    EMBEDDED_IPV4_URLS,
    ODD_SPELLINGS,
    PRIVATE_URLS,
    RESERVED_URLS,
)
from tests.fake_dns import FakeResolver, relay_resolving_with
from tests.receiver import Receiver

Hooks = tuple[Receiver, str]
NAME = "hooks.relay-test.invalid"


async def test_every_form_of_a_non_public_address_is_refused_at_registration(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(allow_private_callbacks=False) as relay:
        for url in PRIVATE_URLS + ODD_SPELLINGS + RESERVED_URLS + EMBEDDED_IPV4_URLS:
            response = await relay.http.post(
                "/v1/watches", json={"task_id": "t", "callback_url": url}
            )
            assert response.status_code == 422, url
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "callback_url"], url
            assert "RELAY_ALLOW_PRIVATE_CALLBACKS" in error["msg"], url
        assert (await relay.http.get("/v1/watches")).json()["data"] == []


async def test_embedded_ipv4_forms_name_the_address_they_lead_to(
    start_relay: RelayFactory,
) -> None:
    async with start_relay(allow_private_callbacks=False) as relay:
        for url, leads_to in [
            ("http://[::ffff:a9fe:a9fe]/latest", "169.254.169.254"),
            ("http://[64:ff9b::7f00:1]/", "127.0.0.1"),
            ("http://[2002:a00:1::1]/", "10.0.0.1"),
        ]:
            response = await relay.http.post(
                "/v1/watches", json={"task_id": "t", "callback_url": url}
            )
            assert response.status_code == 422, url
            assert f"which leads to {leads_to}" in response.text


async def test_plain_http_is_refused_when_https_is_required(start_relay: RelayFactory) -> None:
    async with start_relay(require_https=True) as relay:
        refused = await relay.http.post(
            "/v1/watches", json={"task_id": "t", "callback_url": "http://example.com/h"}
        )
        taken = await relay.http.post(
            "/v1/watches", json={"task_id": "t", "callback_url": "https://example.com/h"}
        )

    assert refused.status_code == 422
    assert "RELAY_REQUIRE_HTTPS" in refused.json()["detail"][0]["msg"]
    assert taken.status_code == 201


async def test_the_allowlist_opens_a_private_network(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> None:
    hooks, callback = receiver
    async with start_relay(
        allow_private_callbacks=False, callback_allowlist="10.0.0.0/8, 127.0.0.1/32"
    ) as relay:
        await relay.watch_to_the_end(upstream, callback)
        refused = await relay.http.post(
            "/v1/watches", json={"task_id": "t", "callback_url": "http://192.168.1.1/h"}
        )

    assert len(hooks.received) == 1
    assert refused.status_code == 422


async def test_the_allowlist_opens_a_host_name(
    database_url: str, upstream: Upstream, receiver: Hooks, tmp_path: Path
) -> None:
    hooks, callback = receiver
    port = httpx.URL(callback).port
    resolver = FakeResolver({NAME: ["127.0.0.1"]})
    async with relay_resolving_with(
        resolver,
        database_url,
        upstream,
        callback_allowlist=NAME,
        storage_dir=str(tmp_path / "files"),
    ) as relay:
        await relay.watch_to_the_end(upstream, f"http://{NAME}:{port}/hooks")

    [arrived] = hooks.received
    assert arrived.headers["host"] == f"{NAME}:{port}"


async def test_a_name_that_turns_to_loopback_after_registration_never_reaches_it(
    database_url: str, upstream: Upstream, receiver: Hooks, tmp_path: Path
) -> None:
    """DNS rebinding: the name answered a public address when it was registered, and answers
    127.0.0.1, where the receiver listens, by the time its webhook is due."""
    hooks, callback = receiver
    port = httpx.URL(callback).port
    resolver = FakeResolver({NAME: ["93.184.216.34"]})
    async with relay_resolving_with(
        resolver, database_url, upstream, storage_dir=str(tmp_path / "files")
    ) as relay:
        task_id = await upstream.submit(polls=3)
        watch = await relay.register(task_id, f"http://{NAME}:{port}/hooks")
        assert resolver.asked == []  # registration judged the URL as written
        resolver.answers[NAME] = ["127.0.0.1"]
        failed = await relay.wait_for_state(watch["id"], "failed")
        log = await relay.attempts(watch["id"])

    assert hooks.received == []
    assert len(log) == 4  # the first attempt and three retries, all refused
    assert {attempt["error"] for attempt in log} == {
        f"refused: {NAME} resolves to non-public address 127.0.0.1"
    }
    assert failed["event"]["last_error"].startswith("refused:")
