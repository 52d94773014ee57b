"""What a client can send that is not what the API asks for: each gets a 4xx that says why, never
a 500, and a refused request leaves nothing stored and nothing changed.

Each of these answered 500, or was stored, before: a lone surrogate echoed in a validation error,
NaN from Python's lenient JSON parser, a NUL compared by PostgreSQL, a non-ASCII link signature,
metadata nested past what the serializers take, a callback with a line break in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.conftest import RelayClient

JSON = {"content-type": "application/json"}
CALLBACK = "https://example.com/hook"


def raw(task_id: str = '"t"', callback: str = f'"{CALLBACK}"', extra: str = "") -> bytes:
    """A registration body written by hand, for what `json.dumps` would never write."""
    return f'{{"task_id":{task_id},"callback_url":{callback}{extra}}}'.encode()


async def stored(relay: RelayClient) -> list[dict[str, Any]]:
    response = await relay.http.get("/v1/watches", params={"limit": 200})
    assert response.status_code == 200, response.text
    watches: list[dict[str, Any]] = response.json()["data"]
    return watches


async def test_a_lone_surrogate_anywhere_in_a_registration_is_refused(relay: RelayClient) -> None:
    cases = {
        "task_id": raw(task_id=r'"\ud800"'),
        "task_id, low half": raw(task_id=r'"abc\udfff"'),
        "callback_url": raw(callback=r'"https://example.com/\ud800"'),
        "callback host": raw(callback=r'"https://exa\udc00mple.com/"'),
        "metadata value": raw(extra=r',"metadata":{"a":"\ud800"}'),
        "metadata key": raw(extra=r',"metadata":{"\ud800":1}'),
        "nested metadata": raw(extra=r',"metadata":{"a":[{"b":"x\udbff"}]}'),
        "upstream_api_key": raw(extra=r',"upstream_api_key":"\ud800"'),
        "events": raw(extra=r',"events":["\ud800"]'),
        "an unknown field's name": raw(extra=r',"\ud800":1'),
    }
    for where, body in cases.items():
        response = await relay.http.post("/v1/watches", content=body, headers=JSON)
        assert response.status_code == 422, (where, response.text)
        assert isinstance(response.json()["detail"], list), where
    surrogate_task = await relay.http.post(
        "/v1/watches", content=raw(task_id=r'"\ud800"'), headers=JSON
    )
    error = surrogate_task.json()["detail"][0]
    assert error["loc"] == ["body", "task_id"]
    assert "lone UTF-16 surrogate (U+D800)" in error["msg"]
    assert error["input"] == "\ufffd"  # echoed as what JSON can carry
    assert await stored(relay) == []


async def test_a_callback_with_whitespace_or_control_characters_is_refused(
    relay: RelayClient,
) -> None:
    for url in (
        "https://example.com/h\r\nX-Injected: 1",
        "https://example.com/h\n",
        "https://example.com/a b",
        "https://exa\tmple.com/",
        " https://example.com/",
        "https://example.com/\x00",
        "https://example.com/\x7f",
        "https://example.com/\u2028",
        "https://example.com/\u00a0",
        "https://example.com/\u202e",
    ):
        response = await relay.http.post("/v1/watches", json={"task_id": "t", "callback_url": url})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["detail"] == [
            {
                "loc": ["body", "callback_url"],
                "msg": "callback_url must not contain whitespace or control characters",
                "type": "value_error",
            }
        ]
    assert await stored(relay) == []


async def test_numbers_json_does_not_have_are_refused(relay: RelayClient) -> None:
    """Python's parser takes NaN and Infinity; the relay stored them as null, or failed."""
    for extra, field in (
        (',"metadata":{"a":NaN}', "metadata"),
        (',"metadata":{"a":[Infinity]}', "metadata"),
        (',"metadata":{"a":-Infinity}', "metadata"),
        (',"metadata":{"a":1e999}', "metadata"),
        (',"timeout":NaN', "timeout"),
        (',"poll_interval":Infinity', "poll_interval"),
        (',"colour":NaN', "colour"),
    ):
        response = await relay.http.post("/v1/watches", content=raw(extra=extra), headers=JSON)
        assert response.status_code == 422, (extra, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", field]
    nan_metadata = await relay.http.post(
        "/v1/watches", content=raw(extra=',"metadata":{"a":NaN}'), headers=JSON
    )
    assert "NaN or Infinity" in nan_metadata.text
    nan_timeout = await relay.http.post(
        "/v1/watches", content=raw(extra=',"timeout":NaN'), headers=JSON
    )
    assert nan_timeout.json()["detail"][0]["input"] == "NaN"
    assert await stored(relay) == []


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_metadata_nests_at_most_32_levels(relay: RelayClient) -> None:
    """Deeper metadata was stored, and the answer could not be serialized: a 500 after the write,
    and a listing that failed from then on."""
    for depth in (33, 300, 900):
        body = {"task_id": f"t{depth}", "callback_url": CALLBACK, "metadata": nested(depth)}
        response = await relay.http.post("/v1/watches", json=body)
        assert response.status_code == 422, (depth, response.text[:300])
        assert "more than 32 levels" in response.text
    assert await stored(relay) == []

    deepest = await relay.register("t32", CALLBACK, metadata=nested(32))
    assert deepest["metadata"] == nested(32)
    assert [watch["id"] for watch in await stored(relay)] == [deepest["id"]]


async def test_bodies_that_are_not_a_json_object_are_refused(relay: RelayClient) -> None:
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"\xff\xfe\x00not text", {"content-type": "text/plain"}, 422),
        (b"\xff\xfe\x00not text", {"content-type": "application/octet-stream"}, 422),
        (b'{"task_id":"\xe9","callback_url":"x"}', JSON, 400),  # not UTF-8
        (b"[" * 5000 + b"]" * 5000, JSON, 400),  # deeper than the parser goes
        (raw(extra=',"metadata":{"a":' + "9" * 5000 + "}"), JSON, 400),  # too many digits
        (b"hello", JSON, 422),
        (b"", JSON, 422),
        (b"null", JSON, 422),
        (b"[1, 2]", JSON, 422),
        (b'"a string"', JSON, 422),
        (b"42", JSON, 422),
        (b'{"task_id": ["t"], "callback_url": {"u": 1}}', JSON, 422),
        (b"task_id=t&callback_url=x", {"content-type": "application/x-www-form-urlencoded"}, 422),
    ]
    for body, headers, status in cases:
        response = await relay.http.post("/v1/watches", content=body, headers=headers)
        assert response.status_code == status, (body[:40], response.text[:300])
        assert "detail" in response.json()
        recover = await relay.http.post("/v1/recover", content=body, headers=headers)
        assert recover.status_code == status, (body[:40], recover.text[:300])
    assert await stored(relay) == []


async def test_a_body_over_a_mebibyte_is_refused_unread(relay: RelayClient) -> None:
    big = raw(extra=',"metadata":{"a":"' + "x" * (1024 * 1024) + '"}')
    response = await relay.http.post("/v1/watches", content=big, headers=JSON)
    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is over 1048576 bytes"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield raw(extra=',"metadata":{"a":"')[:-1]
        for _ in range(64):
            yield b"x" * 32 * 1024
        yield b'"}}'

    streamed = await relay.http.post("/v1/watches", content=chunks(), headers=JSON)
    assert streamed.status_code == 413
    assert await stored(relay) == []
    # Just under the cap is read, and judged on what it says.
    padded = raw(extra=',"metadata":{"a":1}' + " " * (1024 * 1024 - 200))
    assert (await relay.http.post("/v1/watches", content=padded, headers=JSON)).status_code == 201


async def test_an_idempotency_key_must_be_printable_ascii(relay: RelayClient) -> None:
    body = {"task_id": "t", "callback_url": CALLBACK}
    for key in ("é".encode(), b"\xff\xfe\x80", "naïve".encode("latin-1")):
        response = await relay.http.post(
            "/v1/watches", json=body, headers={b"Idempotency-Key": key}
        )
        assert response.status_code == 422, (key, response.text)
        assert "Idempotency-Key must be printable ASCII" in response.text
    assert await stored(relay) == []
    # Nor was any key kept: the same key now registers afresh.
    accepted = await relay.http.post(
        "/v1/watches", json=body, headers={"Idempotency-Key": "a key with spaces ~!"}
    )
    assert accepted.status_code == 201


async def test_odd_query_parameters_are_refused_with_a_reason(relay: RelayClient) -> None:
    watch = await relay.register("t", CALLBACK)
    for params, status, message in (
        ({"task_id": "a\x00b"}, 422, "control characters"),  # PostgreSQL cannot compare a NUL
        ({"task_id": "\x1b[31m"}, 422, "control characters"),
        ({"task_id": "x" * 2049}, 422, "at most 2048"),
        ({"cursor": "wat_\x00"}, 400, "cursor"),
        ({"cursor": f"{watch['id']}\n"}, 400, "cursor"),
        ({"state": "\x00"}, 422, "Input should be"),
        ({"limit": "1e3"}, 422, "valid integer"),
        ({"limit": "9" * 40}, 422, "less than or equal to 200"),
        ({"limit": ""}, 422, "valid integer"),
    ):
        response = await relay.http.get("/v1/watches", params=params)
        assert response.status_code == status, (params, response.text)
        assert message in response.text, params
    # Bytes that are not UTF-8 are read with replacement characters: they match nothing.
    undecodable = await relay.http.get("/v1/watches?task_id=%FF%FE")
    assert undecodable.status_code == 200
    assert undecodable.json()["data"] == []
    surrogate = await relay.http.get("/v1/watches?cursor=%ED%A0%80")
    assert surrogate.status_code == 400


async def test_watch_ids_that_cannot_be_are_not_found_and_change_nothing(
    relay: RelayClient,
) -> None:
    watch = await relay.register("t", CALLBACK, poll_interval=3600)  # not polled meanwhile
    for odd in ("%00", f"{watch['id']}%00", "%FF", "%ED%A0%80", "x" * 8000, f"{watch['id']}%0A"):
        for method, path in (
            ("GET", f"/v1/watches/{odd}"),
            ("DELETE", f"/v1/watches/{odd}"),
            ("GET", f"/v1/watches/{odd}/attempts"),
            ("POST", f"/v1/watches/{odd}/redeliver"),
        ):
            response = await relay.http.request(method, path)
            assert response.status_code == 404, (method, path[:60], response.text)
            assert response.json() == {"detail": "no watch with this id"}
    assert await relay.get(watch["id"]) == watch


async def test_a_file_link_with_odd_characters_is_forbidden(relay: RelayClient) -> None:
    url = str(relay.http.base_url)
    async with httpx.AsyncClient(base_url=url) as anonymous:
        for query in (
            "expires=%C2%B2&signature=x",  # a digit to str.isdigit, not to int()
            "expires=%D9%A1%D9%A2&signature=x",
            "expires=99999999999&signature=%C3%A9",  # not ASCII: compare_digest refused it
            "expires=99999999999&signature=%FF",
            "expires=99999999999&signature=%00",
        ):
            response = await anonymous.get(f"/v1/files/wat_x?{query}")
            assert response.status_code == 403, (query, response.text)
