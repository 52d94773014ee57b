"""What a watch's page shows, made from its history: each webhook with its exact body and the
headers its latest attempt carried, and which of the API's actions the watch allows now."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.delivery import webhooks
from app.delivery.signing import signature_headers
from app.encryption import UndecryptableError
from app.states import WatchState
from app.store import client_apps
from app.store.watch_queries import Attempt, EventDetail, WatchHistory
from app.transport import USER_AGENT

#: The states `DELETE /v1/watches/{id}` stops (`watch_queries.cancel`).
CANCELLABLE = frozenset({WatchState.ACTIVE, WatchState.CAPTURING, WatchState.NOTIFYING})
#: The states `POST /v1/watches/{id}/redeliver` sends again from (`watch_queries.redeliver`).
REDELIVERABLE = frozenset({WatchState.NOTIFYING, WatchState.COMPLETED, WatchState.FAILED})


@dataclass(frozen=True, slots=True)
class SentHeaders:
    """The headers of an event's latest attempt, made again from its body and the app's signing
    secrets at that attempt's time (the signature is not stored)."""

    at: datetime
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class EventView:
    event: EventDetail
    #: The body indented for reading; None if it is not JSON (it always is, as the relay makes
    #: it). The exact bytes are `event.payload`.
    pretty: str | None
    attempts: list[Attempt]
    headers: SentHeaders | None
    #: Why the headers could not be made again (an undecryptable secret), if so.
    headers_error: str | None


@dataclass(frozen=True, slots=True)
class WatchPage:
    history: WatchHistory
    events: list[EventView]
    can_cancel: bool
    can_redeliver: bool


async def watch_page(history: WatchHistory, clients: client_apps.ClientApps) -> WatchPage:
    watch = history.watch
    secrets_then = await clients.signing_secrets_then(watch.client_id)
    events = [_event_view(event, history, secrets_then) for event in history.events]
    return WatchPage(
        history,
        events,
        can_cancel=watch.state in CANCELLABLE,
        can_redeliver=watch.state in REDELIVERABLE
        and any(event.type in webhooks.TERMINAL for event in history.events),
    )


def _event_view(
    event: EventDetail,
    history: WatchHistory,
    secrets_then: Callable[[datetime], tuple[str, ...]],
) -> EventView:
    tried = [attempt for attempt in history.attempts if attempt.event_id == event.id]
    headers, error = None, None
    if tried:
        at = tried[-1].attempted_at
        try:
            secrets = secrets_then(at)
        except UndecryptableError as exc:
            error = str(exc)
        else:
            headers = SentHeaders(
                at,
                {
                    "content-type": "application/json",
                    "user-agent": USER_AGENT,
                    **signature_headers(secrets, message_id=event.id, body=event.payload, at=at),
                },
            )
    return EventView(event, _pretty(event.payload), tried, headers, error)


def _pretty(payload: str) -> str | None:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return None
