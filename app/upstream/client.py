"""Asking the upstream for the state of one task."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import httpx

from app.transport import USER_AGENT, parsed_url, timeout_extension
from app.upstream.snapshot import SnapshotError, TaskSnapshot, parse_snapshot, text

if TYPE_CHECKING:
    from app.settings import Settings


class UpstreamErrorKind(enum.StrEnum):
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"

    @property
    def upstream_unwell(self) -> bool:
        """The upstream failed to answer properly, as opposed to answering about the task or key:
        these call for backing off, and count against the circuit."""
        return self not in (UpstreamErrorKind.NOT_FOUND, UpstreamErrorKind.UNAUTHORIZED)


_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": USER_AGENT,
}

#: Ids that HTTP clients resolve as path steps (even percent-encoded), leaving the task path.
DOT_SEGMENTS = frozenset({".", ".."})


class UpstreamError(Exception):
    def __init__(self, kind: UpstreamErrorKind, message: str, status_code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code

    def __str__(self) -> str:
        status = f"HTTP {self.status_code}: " if self.status_code is not None else ""
        return f"{self.kind}: {status}{self.args[0]}"


class TaskSource(Protocol):
    """Where polls learn a task's state: the upstream asked from the relay's process
    (`UpstreamClient`) or from HTTP processes (`app.http_processes`)."""

    def key_for(self, api_key: str | None) -> str | None:
        """The key a request made with the watch's `api_key` (if any) is sent with."""
        ...

    async def fetch(self, task_id: str, *, api_key: str | None = None) -> TaskSnapshot:
        """:raises UpstreamError: the upstream refused, failed or could not be reached."""
        ...


class UpstreamClient:
    """Queries `GET {base}/v1/video/generations/{task_id}` over one pooled transport.

    The transport is used without a client (see `app.transport`), so the headers a client would
    add by default are set here, once.

    :param api_key: the relay's own key, used for every task whose watch brought none.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
    ) -> None:
        self._transport = transport
        self._base_url = base_url
        self._task_url = base_url.rstrip("/") + "/v1/video/generations/"
        self._download_url = self._task_url + "download"
        self._api_key = api_key
        self._own_headers = _headers(api_key)
        self._extensions = timeout_extension(timeout)
        self._small_answer = timeout_extension(timeout, read_whole=True)

    @classmethod
    def from_settings(
        cls, transport: httpx.AsyncBaseTransport, settings: Settings, *, timeout: float
    ) -> UpstreamClient:
        """`NEBULA_BASE_URL`, asked with the relay's own key (`NEBULA_API_KEY`)."""
        return cls(
            transport,
            base_url=settings.nebula_base_url,
            api_key=settings.upstream_key,
            timeout=timeout,
        )

    def with_timeout(self, seconds: float) -> UpstreamClient:
        """The same upstream, over the same transport, waiting `seconds` for an answer: the
        download API reads a whole file before it answers, polls should not wait that long."""
        return UpstreamClient(
            self._transport, base_url=self._base_url, api_key=self._api_key, timeout=seconds
        )

    def key_for(self, api_key: str | None) -> str | None:
        """The key a request made with the watch's `api_key` (if any) is sent with."""
        return api_key or self._api_key

    async def fetch(self, task_id: str, *, api_key: str | None = None) -> TaskSnapshot:
        """A task is visible only to the account that submitted it: `api_key` names that account
        when it is not the relay's own."""
        if task_id in DOT_SEGMENTS:
            raise UpstreamError(
                UpstreamErrorKind.NOT_FOUND, "no upstream task can have this id; it was not sent"
            )
        request = httpx.Request(
            "GET",
            # Quoted whole, so that no id can alter the path: not `/`, `?`, `#` or `%`.
            parsed_url(self._task_url + quote(task_id, safe="")),
            headers=_headers(api_key) if api_key else self._own_headers,
            extensions=self._small_answer,
        )
        return _interpret(await self._send(request, read=True))

    @asynccontextmanager
    async def download(
        self, task_id: str, *, api_key: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """The answer of the download API, `GET {base}/v1/video/generations/download?id=…`, with
        its body not yet read: JSON holding the whole file, to be decoded as it streams.

        :raises UpstreamError: the upstream refused or failed (its body read, it is small).
        """
        request = httpx.Request(
            "GET",
            httpx.URL(self._download_url, params={"id": task_id}),
            headers=_headers(api_key) if api_key else self._own_headers,
            extensions=self._extensions,
        )
        response = await self._send(request, read=False)
        try:
            if response.status_code != 200:
                await response.aread()
                _interpret(response)  # raises: an error answer says which
            yield response
        finally:
            await response.aclose()

    async def _send(self, request: httpx.Request, *, read: bool) -> httpx.Response:
        """`read`: the whole body is read (and the connection given back) before returning."""
        try:
            response = await self._transport.handle_async_request(request)
            if read:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                UpstreamErrorKind.TIMEOUT, "the upstream did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(UpstreamErrorKind.CONNECTION, type(exc).__name__) from exc
        return response


def _headers(api_key: str | None) -> httpx.Headers:
    return httpx.Headers(_HEADERS | {"Authorization": f"Bearer {api_key}"} if api_key else _HEADERS)


def _not_a_number(_: str) -> None:
    return None


def _interpret(response: httpx.Response) -> TaskSnapshot:
    status = response.status_code
    try:
        # NaN and Infinity are not JSON, though Python reads them: read as null, so that they
        # never reach a webhook body, which must be JSON.
        body = json.loads(response.content, parse_constant=_not_a_number)
    except ValueError:
        body = None
    if status == 200:
        if _is_task_not_exist(body):
            raise UpstreamError(UpstreamErrorKind.NOT_FOUND, "task_not_exist", status)
        if body is None:
            raise UpstreamError(UpstreamErrorKind.BAD_RESPONSE, "the answer is not JSON", status)
        try:
            return parse_snapshot(body)
        except SnapshotError as exc:
            raise UpstreamError(UpstreamErrorKind.BAD_RESPONSE, str(exc), status) from exc
    message = _error_message(body) or response.reason_phrase
    if status == 404 or (status == 400 and _is_task_not_exist(body)):
        raise UpstreamError(UpstreamErrorKind.NOT_FOUND, message, status)
    if status in (401, 403):
        raise UpstreamError(UpstreamErrorKind.UNAUTHORIZED, message, status)
    if status == 429:
        raise UpstreamError(UpstreamErrorKind.RATE_LIMITED, message, status)
    if status >= 500:
        raise UpstreamError(UpstreamErrorKind.SERVER_ERROR, message, status)
    raise UpstreamError(UpstreamErrorKind.BAD_RESPONSE, message, status)


def _is_task_not_exist(body: object) -> bool:
    return isinstance(body, dict) and "task_not_exist" in (body.get("code"), body.get("message"))


def _error_message(body: object) -> str | None:
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return text(error["message"])
    message = body.get("message")
    return text(message) if isinstance(message, str) else None
