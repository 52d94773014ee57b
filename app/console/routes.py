"""The console's pages under `/console`, out of the OpenAPI document.

Every action calls the store function its API twin calls (`DELETE /v1/watches/{id}`,
`POST /v1/watches/{id}/redeliver`, `POST /v1/recover`), so the console can do nothing the API
cannot. A form posts, and the browser is sent back to a page that says what happened (so a
reload does not post again).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.console import charts, filters, session, views
from app.console.access import (
    CheckedForm,
    ConsoleError,
    ConsoleRelay,
    CurrentOperator,
    Operator,
    SignInNeeded,
    form_of,
    relay_of,
    session_of,
    sessions,
    signed_in,
)
from app.console.rendering import render, secure
from app.ids import is_id
from app.relay import Relay
from app.states import WatchState
from app.store import activity, watch_queries
from app.store.client_apps import hash_api_key

log = logging.getLogger(__name__)

PREFIX = "/console"
PAGE_SIZE = 50
STATIC = Path(__file__).parent / "static"
_NO_WATCH = "There is no watch with this id."
#: What the watch page says after an action; the watch's state completes the refusals, as the
#: API's 409 answers word them.
_NOTICES = {
    "redelivered": "The webhook is queued to be sent again now, with the same webhook-id and body.",
    "cancelled": "The watch is cancelled: polling stopped, and no webhook will be sent.",
    "not-cancellable": "The watch is already {state}; nothing to cancel.",
    "not-redeliverable": "The watch is {state}; it has no webhook to send again.",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def install(app: FastAPI) -> None:
    """Serve the console on `app`: static files first, so the catch-all page does not hide them."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(router)
    app.add_exception_handler(ConsoleError, _error_page)
    app.add_exception_handler(SignInNeeded, _to_sign_in)


@router.get("")
async def index(request: Request) -> Response:
    operator = await signed_in(request)
    return _see_other("/watches" if operator is not None else "/sign-in")


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if await signed_in(request) is not None:
        return _see_other("/watches")
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request, relay: ConsoleRelay) -> Response:
    fields = await form_of(request)
    signer = sessions(request)
    nonce = request.cookies.get(session.SIGN_IN_COOKIE)
    if not nonce or not session.same(signer.sign_in_token(nonce), fields.get(session.CSRF_FIELD)):
        return _sign_in_page(
            request,
            status_code=403,
            message="This sign-in form has expired or was not sent from the console's own page. "
            "Enter the key again.",
        )
    key = fields.get("key", "").strip()
    if not key:
        return _sign_in_page(request, status_code=400, message="Enter a key to sign in.")
    token = relay.settings.admin_token
    if token is not None and relay.settings.is_admin_token(key):
        fingerprint = signer.admin_fingerprint(token.get_secret_value())
        _, cookie = signer.open(client_id=None, credential=fingerprint)
    else:
        client = await relay.clients.authenticate(key)
        if client is None:
            return _sign_in_page(
                request,
                status_code=401,
                message="This key was not accepted: it is neither the API key of a client app "
                "(a key rotated away or revoked is refused) nor the admin token.",
            )
        _, cookie = signer.open(client_id=client.id, credential=hash_api_key(key))
    response = _see_other("/watches")
    signer.set_cookie(response, request, cookie)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, _: CheckedForm) -> Response:
    response = _see_other("/sign-in")
    session.clear(response, request)
    return response


@router.get("/watches")
async def watch_list(request: Request, relay: ConsoleRelay) -> Response:
    """With `HX-Request` (the list refreshing itself), only the table, from one statement."""
    query = filters.list_query(request.query_params)
    if request.headers.get("HX-Request") == "true":
        return await _refreshed_table(request, relay, query)
    operator = await signed_in(request)
    if operator is None:
        raise SignInNeeded
    found = await _page(relay, query, client_id=operator.client_id)
    context = _list_context(query, found, every_app=operator.is_admin)
    context |= {
        "operator": operator,
        "section": "watches",
        "states": filters.STATES,
        "task_statuses": filters.TASK_STATUSES,
        "event_types": filters.EVENT_TYPES,
    }
    return render(request, "watches.html", context, headers={"Vary": "HX-Request"})


async def _refreshed_table(request: Request, relay: Relay, query: filters.ListQuery) -> Response:
    """An open list costs one query per refresh: a client app's session is checked within the
    page's statement, and only an empty page is worth a second look at why."""
    found = session_of(request)
    if found is None:
        raise SignInNeeded
    page = await _page(relay, query, client_id=found.client_id, key_digest=found.credential)
    if not page and found.client_id is not None and await signed_in(request) is None:
        raise SignInNeeded
    context = _list_context(query, page, every_app=found.client_id is None)
    return render(request, "_watch_table.html", context, headers={"Vary": "HX-Request"})


async def _page(
    relay: Relay,
    query: filters.ListQuery,
    *,
    client_id: str | None,
    key_digest: str | None = None,
) -> list[watch_queries.Watch]:
    """One more than a page, which tells whether there is an older one."""
    return await watch_queries.page(
        relay.db,
        client_id=client_id,
        limit=PAGE_SIZE + 1,
        before=query.before,
        matching=query.matching,
        key_digest=key_digest if client_id is not None else None,
    )


def _list_context(
    query: filters.ListQuery, found: list[watch_queries.Watch], *, every_app: bool
) -> dict[str, object]:
    shown = found[:PAGE_SIZE]
    return {
        "watches": shown,
        "query": query,
        "current": query.link(before=query.before),
        "newest": query.link() if query.before else None,
        "older": query.link(before=shown[-1].id) if len(found) > PAGE_SIZE else None,
        "every_app": every_app,
    }


@router.get("/watches/{watch_id}")
async def watch_page(
    watch_id: str, request: Request, relay: ConsoleRelay, operator: CurrentOperator
) -> Response:
    history = await _history(relay, operator, watch_id)
    page = await views.watch_page(history, relay.clients)
    notice = _NOTICES.get(request.query_params.get("notice", ""))
    return render(
        request,
        "watch.html",
        {
            "operator": operator,
            "section": "watches",
            "page": page,
            "watch": history.watch,
            "notice": notice.format(state=history.watch.state) if notice else None,
            "refused": request.query_params.get("notice", "").startswith("not-"),
        },
    )


@router.post("/watches/{watch_id}/redeliver")
async def redeliver(
    watch_id: str, relay: ConsoleRelay, operator: CurrentOperator, _: CheckedForm
) -> Response:
    owner = await _owner(relay, operator, watch_id)
    try:
        watch = await watch_queries.redeliver(relay.db, client_id=owner, watch_id=watch_id)
    except watch_queries.WrongState:
        return _see_other(f"/watches/{watch_id}?notice=not-redeliverable")
    if watch is None:
        raise ConsoleError(404, _NO_WATCH)
    relay.deliver_now()
    return _see_other(f"/watches/{watch_id}?notice=redelivered")


@router.post("/watches/{watch_id}/cancel")
async def cancel(
    watch_id: str, relay: ConsoleRelay, operator: CurrentOperator, _: CheckedForm
) -> Response:
    owner = await _owner(relay, operator, watch_id)
    try:
        watch = await watch_queries.cancel(relay.db, client_id=owner, watch_id=watch_id)
    except watch_queries.WrongState:
        return _see_other(f"/watches/{watch_id}?notice=not-cancellable")
    if watch is None:
        raise ConsoleError(404, _NO_WATCH)
    log.info(
        "watch cancelled",
        extra={"watch_id": watch_id, "task_id": watch.task_id, "client_id": owner},
    )
    return _see_other(f"/watches/{watch_id}?notice=cancelled")


@router.get("/recover")
async def recover_form(
    request: Request, relay: ConsoleRelay, operator: CurrentOperator
) -> Response:
    recovered = request.query_params.get("recovered", "")
    counted = re.fullmatch(r"[0-9]{1,9}", recovered) is not None
    return render(
        request,
        "recover.html",
        {
            "operator": operator,
            "section": "recover",
            "recovered": int(recovered) if counted else None,
            "since": f"{datetime.now(UTC) - timedelta(days=1):%Y-%m-%dT%H:%M}",
            "apps": await relay.clients.all() if operator.is_admin else [],
        },
    )


@router.post("/recover")
async def recover(relay: ConsoleRelay, operator: CurrentOperator, form: CheckedForm) -> Response:
    if not form.get("since", "").strip():
        raise ConsoleError(400, "Say since when, in UTC: e.g. 2026-11-28T18:12.")
    since = filters.utc_time(form["since"], "since")
    client_id = operator.client_id or await _chosen_app(relay, form.get("client_id", ""))
    recovered = await watch_queries.recover(relay.db, client_id=client_id, since=since)
    if recovered:
        relay.deliver_now()
    return _see_other(f"/recover?recovered={recovered}")


@router.get("/overview")
async def overview(request: Request, relay: ConsoleRelay, operator: CurrentOperator) -> Response:
    figures = await activity.overview(relay.db, client_id=operator.client_id, now=datetime.now(UTC))
    hours = figures.deliveries_by_hour
    detection = charts.lag_scale(figures.detection_lag_hour, figures.detection_lag_day)
    delivery = charts.lag_scale(figures.delivery_lag_hour, figures.delivery_lag_day)
    return render(
        request,
        "overview.html",
        {
            "operator": operator,
            "section": "overview",
            "figures": figures,
            "states": [(state, figures.watches_by_state.get(state, 0)) for state in WatchState],
            "this_hour": hours[-1],
            "day_succeeded": sum(hour.succeeded for hour in hours),
            "day_failed": sum(hour.failed for hour in hours),
            "deliveries_chart": charts.deliveries_chart(hours, chart_id="deliveries"),
            "lag_charts": [
                (
                    "Detection lag",
                    "from the task's end upstream to the poll that saw it",
                    charts.lags_chart(
                        "Detection lag, the last hour",
                        figures.detection_lag_hour,
                        scale=detection,
                        chart_id="detection-hour",
                    ),
                    charts.lags_chart(
                        "Detection lag, the last 24 hours",
                        figures.detection_lag_day,
                        scale=detection,
                        chart_id="detection-day",
                    ),
                ),
                (
                    "Delivery lag",
                    "from the final webhook's creation to the receiver's 2xx",
                    charts.lags_chart(
                        "Delivery lag, the last hour",
                        figures.delivery_lag_hour,
                        scale=delivery,
                        chart_id="delivery-hour",
                    ),
                    charts.lags_chart(
                        "Delivery lag, the last 24 hours",
                        figures.delivery_lag_day,
                        scale=delivery,
                        chart_id="delivery-day",
                    ),
                ),
            ],
        },
    )


@router.get("/{rest:path}")
async def unknown_page(rest: str) -> Response:
    raise ConsoleError(404, "The console has no page at this address.")


async def _history(relay: Relay, operator: Operator, watch_id: str) -> watch_queries.WatchHistory:
    """The watch, if the operator may see it: another app's is as absent as one that never was."""
    if not is_id("wat", watch_id):
        raise ConsoleError(404, _NO_WATCH)
    history = await watch_queries.history(relay.db, client_id=operator.client_id, watch_id=watch_id)
    if history is None:
        raise ConsoleError(404, _NO_WATCH)
    return history


async def _owner(relay: Relay, operator: Operator, watch_id: str) -> str:
    """The app an action on the watch is taken for: the operator's own, or for the admin the
    watch's."""
    if operator.client_id is not None:
        if not is_id("wat", watch_id):
            raise ConsoleError(404, _NO_WATCH)
        return operator.client_id
    return (await _history(relay, operator, watch_id)).watch.client_id


async def _chosen_app(relay: Relay, client_id: str) -> str:
    if client_id not in {app.id for app in await relay.clients.all()}:
        raise ConsoleError(400, "Choose the client app whose webhooks to send again.")
    return client_id


def _sign_in_page(
    request: Request, *, status_code: int = 200, message: str | None = None
) -> Response:
    """The form, with a token tied to this browser's sign-in cookie (kept if it has one the
    console made, so two tabs can both sign in; any other value is not echoed back)."""
    nonce = request.cookies.get(session.SIGN_IN_COOKIE, "")
    if not session.is_nonce(nonce):
        nonce = session.new_nonce()
    relay = relay_of(request)
    response = render(
        request,
        "sign_in.html",
        {
            "csrf": sessions(request).sign_in_token(nonce),
            "message": message,
            "admin": relay.settings.admin_token is not None,
        },
        status_code=status_code,
    )
    session.set_sign_in_cookie(response, request, nonce)
    return response


def _see_other(path: str) -> Response:
    return secure(RedirectResponse(PREFIX + path, status_code=303))


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    return render(
        request,
        "error.html",
        {"status_code": exc.status_code, "message": exc.message},
        status_code=exc.status_code,
    )


async def _to_sign_in(request: Request, _: Exception) -> Response:
    """A page is sent to the sign-in form; the list refreshing itself (htmx) is told to go
    there too, instead of having the form swapped into its table."""
    response: Response
    if request.headers.get("HX-Request") == "true":
        response = secure(Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/sign-in"}))
    else:
        response = _see_other("/sign-in")
    session.clear(response, request)
    return response
