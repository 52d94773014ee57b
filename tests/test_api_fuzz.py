"""Requests generated from the relay's own OpenAPI document, valid and invalid, sent to a real
relay: whatever a client sends, the answer is never a 5xx, its status is one the document names
for that operation, and its body is what the document says.

Schemathesis makes the requests; each operation gets `EXAMPLES` of each kind, from a fixed seed,
with no shrinking, so the run is the same every time and takes seconds. The relay serves in the
test's event loop while the generated requests, which are synchronous, go out from a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_KEY, RelayFactory, Upstream
from tests.receiver import Receiver

#: Generated requests per operation and kind (valid, invalid).
EXAMPLES = 15

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,  # a seed derived from the test, not from the clock
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
    report_multiple_bugs=False,
)
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
AUTHORIZED = {"Authorization": f"Bearer {API_KEY}"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


@dataclass
class Known:
    """Real parameters to send now and then instead of generated ones, so that operations on a
    watch meet watches in each state (and the file route a link that is really signed)."""

    callback: str
    path_parameters: list[dict[str, str]] = field(default_factory=list)
    file_links: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)


# Schemathesis' invalid data draws from `random` as well as from Hypothesis.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(180)  # hundreds of requests: a minute or more on a slow machine
async def test_generated_requests_get_answers_the_document_describes(
    start_relay: RelayFactory, upstream: Upstream, receiver: tuple[Receiver, str]
) -> None:
    _, callback = receiver
    known = Known(callback)
    async with start_relay(admin_token=ADMIN_TOKEN) as relay:
        completed = await relay.watch_to_the_end(upstream, callback)
        active = await relay.register(await upstream.submit(duration=3600), callback)
        cancelled = await relay.register(await upstream.submit(duration=3600), callback)
        await relay.http.delete(f"/v1/watches/{cancelled['id']}")
        known.path_parameters = [{"watch_id": w["id"]} for w in (completed, active, cancelled)]
        link = completed["capture"]["url"]
        known.file_links = [({"watch_id": completed["id"]}, dict(parse_qsl(urlsplit(link).query)))]

        failures = await asyncio.to_thread(_fuzz, str(relay.http.base_url), known)

    assert not failures, "\n\n".join(failures)


def _fuzz(base_url: str, known: Known) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation the document does not describe well: {result.err()}")
            continue
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(operation, mode, base_url, known)
            except hypothesis.errors.Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters
            except Exception as exc:  # every operation is tried, and every failure told
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def _fuzz_operation(
    operation: Operation, mode: GenerationMode, base_url: str, known: Known
) -> None:
    real: list[Any] = []
    ranges: st.SearchStrategy[str | None] = st.none()
    if operation.path == "/v1/files/{watch_id}":
        real = known.file_links
        # `Range` is read by the response itself, so the document names it in words only.
        ranges = st.none() | st.from_regex(
            r"(bytes|items)=[0-9]{0,9}-?[0-9]{0,9}(,[0-9 -]{0,9}){0,3}", fullmatch=True
        )
    elif "{watch_id}" in operation.path:
        real = [(parameters, None) for parameters in known.path_parameters]

    @SETTINGS
    @hypothesis.given(
        case=operation.as_strategy(generation_mode=mode),
        authorized=st.integers(0, 7).map(lambda n: n < 7),  # one in eight goes without the key
        acceptable=st.integers(0, 3).map(lambda n: n < 3),  # three in four
        substitute=(st.none() | st.sampled_from(real)) if real else st.none(),
        range_header=ranges,
    )
    def run(
        case: Case,
        authorized: bool,
        acceptable: bool,
        substitute: tuple[dict[str, str], dict[str, str] | None] | None,
        range_header: str | None,
    ) -> None:
        if substitute is not None:
            case.path_parameters, query = substitute
            if query is not None:
                case.query = query
        if range_header is not None:
            case.headers["Range"] = range_header
        _keep_callbacks_on_loopback(case, known.callback)
        if acceptable:
            _make_acceptable(case, known.callback)
        credentials = AS_ADMIN if operation.path.startswith("/v1/admin/") else AUTHORIZED
        case.call_and_validate(
            base_url=base_url, headers=credentials if authorized else None, checks=CHECKS
        )

    run()


def _keep_callbacks_on_loopback(case: Case, callback: str) -> None:
    """A generated callback that the relay could call (or verify) is pointed at the test's own
    receiver, keeping its path: the test sends nothing off this machine."""
    body = case.body
    generated = body.get("callback_url") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(generated, str):
        return
    try:
        parts = urlsplit(generated)
        host = parts.hostname
    except ValueError:
        return
    if parts.scheme.lower() in ("http", "https") and host:
        ours = urlsplit(callback)
        body["callback_url"] = parts._replace(scheme=ours.scheme, netloc=ours.netloc).geturl()


def _make_acceptable(case: Case, callback: str) -> None:
    """Half the generated registrations are made ones the relay takes, so that the rest of what
    was generated (metadata, options, odd but printable task ids) goes all the way to the
    database and back: the test's receiver as the callback, and the task id rid of what the
    relay refuses in one (random text is mostly control and unassigned characters)."""
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("callback_url"), str):
        body["callback_url"] = callback
    task_id = body.get("task_id")
    if isinstance(task_id, str):
        printable = "".join(char for char in task_id if char.isprintable()).strip()
        body["task_id"] = printable if printable not in ("", ".", "..") else "task"
