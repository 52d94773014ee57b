"""The committed OpenAPI document is the API the relay serves, and the webhooks it sends."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app.delivery import webhooks
from app.delivery.ownership import VERIFY_EVENT
from tests.conftest import RelayClient, RelayFactory, Upstream
from tests.receiver import Receiver

SPEC = Path(__file__).parent.parent / "openapi" / "openapi.json"
#: Where the document sits in the schema registry, so that its `#/components/...` refs resolve.
DOCUMENT_URI = "urn:video-webhook-relay:openapi"
SIGNED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "user-agent"}


async def test_the_committed_spec_matches_the_served_one(relay: RelayClient) -> None:
    served = (await relay.http.get("/openapi.json")).json()
    committed = json.loads(SPEC.read_text())
    assert served == committed, "openapi/openapi.json is stale: run `python -m app openapi`"


def test_the_committed_spec_is_valid_openapi() -> None:
    validate_openapi(json.loads(SPEC.read_text()))


def test_every_operation_is_documented() -> None:
    spec = json.loads(SPEC.read_text())
    paths = spec["paths"]
    assert {"/v1/watches", "/v1/watches/{watch_id}", "/healthz", "/readyz", "/metrics"} <= set(
        paths
    )
    assert set(paths["/v1/watches"]) == {"get", "post"}
    assert set(paths["/v1/watches/{watch_id}"]) == {"get", "delete"}


def test_every_event_the_relay_sends_is_documented_as_a_signed_webhook() -> None:
    spec = json.loads(SPEC.read_text())

    assert set(spec["webhooks"]) == webhooks.EVENT_TYPES | {VERIFY_EVENT}
    for name, item in spec["webhooks"].items():
        operation = item["post"]
        body = _resolved(spec, operation["requestBody"]["content"]["application/json"]["schema"])
        assert body["properties"]["type"]["const"] == name
        required = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert required == SIGNED_HEADERS
        assert all(p["required"] for p in operation["parameters"])
        assert "default" in operation["responses"], f"{name}: what a failed answer does"


async def test_the_documented_webhooks_describe_every_body_and_header_the_relay_sent(
    start_relay: RelayFactory, upstream: Upstream, receiver: tuple[Receiver, str]
) -> None:
    hooks, callback = receiver
    hooks.echo_challenges = True
    async with start_relay(not_found_grace=0.3) as relay:
        spec = (await relay.http.get("/openapi.json")).json()
        watches = [
            # task.succeeded with data.video, after a webhook.verify challenge
            await relay.register(await upstream.submit(polls=1), callback, verify_callback=True),
            # task.succeeded with data.capture_error: the link is dead before it is captured
            await relay.register(await upstream.submit(polls=1, link_ttl=0), callback),
            await relay.register(await upstream.submit(polls=1, outcome="failed"), callback),
            await relay.register(await upstream.submit(polls=3), callback, events=["task.updated"]),
            # watch.expired, deadline_exceeded
            await relay.register(await upstream.submit(duration=3600), callback, timeout=0.5),
            # watch.expired, task_not_found
            await relay.register("video_nobody_submitted", callback),
        ]
        for watch in watches:
            await relay.wait_for_state(watch["id"], "completed", within=20)

    sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for hook in hooks.received:
        body = json.loads(hook.body)
        _validator(spec, body["type"]).validate(body)
        for parameter in spec["webhooks"][body["type"]]["post"]["parameters"]:
            Draft202012Validator(parameter["schema"]).validate(hook.headers[parameter["name"]])
        sent[body["type"]].append(body["data"])
    assert set(sent) == webhooks.EVENT_TYPES | {VERIFY_EVENT}
    captures = sorted(
        ("video" in data, "capture_error" in data) for data in sent[webhooks.SUCCEEDED]
    )
    assert captures == [(False, True), (True, False), (True, False)]
    assert {data["error"]["code"] for data in sent[webhooks.EXPIRED]} == {
        "task_not_found",
        "deadline_exceeded",
    }


@pytest.mark.parametrize(
    ("event_type", "change"),
    [
        (webhooks.SUCCEEDED, {"status": "failed"}),
        (webhooks.FAILED, {"error": "it broke"}),
        (webhooks.UPDATED, {"status": "succeeded"}),
        (webhooks.EXPIRED, {"error": {"code": "bored", "message": "gave up"}}),
    ],
)
def test_the_documented_webhook_bodies_refuse_what_the_relay_never_sends(
    event_type: str, change: dict[str, Any]
) -> None:
    """The schemas are exact enough to tell one event from another, not merely any object."""
    spec = json.loads(SPEC.read_text())
    data: dict[str, Any] = {
        "watch_id": "wat_01a2235e6b3a2694b3cc524cbf8e",
        "task_id": "video_69095b4ce0048190893a01510c0c98b0",
        "status": {
            webhooks.SUCCEEDED: "succeeded",
            webhooks.FAILED: "failed",
            webhooks.UPDATED: "in_progress",
            webhooks.EXPIRED: "expired",
        }[event_type],
        "upstream_status": "running",
        "error": {"code": "deadline_exceeded", "message": "too late"},
        "metadata": None,
    }
    if event_type != webhooks.EXPIRED:
        data["upstream"] = {}
    if event_type in (webhooks.SUCCEEDED, webhooks.UPDATED):
        del data["error"]
    body = {
        "id": "msg_5c0d6d0b8a2f4e3b9a1c7d2e4f6a8b0c",
        "type": event_type,
        "timestamp": "2026-11-28T18:15:20.398512Z",
        "data": data,
    }
    validator = _validator(spec, event_type)
    validator.validate(body)

    with pytest.raises(ValidationError):
        validator.validate({**body, "data": {**data, **change}})


def _validator(spec: dict[str, Any], event_type: str) -> Draft202012Validator:
    """Checks a body against the schema the document gives for `event_type`, with its $refs
    resolved against the document's components."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(spec)
    )
    pointer = f"/webhooks/{event_type}/post/requestBody/content/application~1json/schema"
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#{pointer}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = schema["$ref"].removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = spec["components"]["schemas"][name]
    return resolved
