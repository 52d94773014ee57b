"""The ASGI application: `uvicorn app.main:app`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app import logs, relay
from app.api import errors
from app.api.body_limit import BodyLimit
from app.api.registration_counts import CountRegistrations
from app.api.routes import admin, files, recovery, service, watches, webhooks
from app.api.schemas import MAX_BODY_BYTES
from app.capture.links import LearnOrigin, Origin
from app.console import routes as console
from app.delivery.callbacks import Resolver
from app.encryption import UndecryptableError
from app.settings import Settings
from app.stopping import StopClock

VERSION = "0.1.0"
UPSTREAM_KEY_FIELD = "upstream_api_key"


def create_app(
    settings: Settings | None = None,
    *,
    resolver: Resolver | None = None,
    stop_clock: StopClock | None = None,
) -> FastAPI:
    """:param resolver: looks up callbacks' host names (default: the system's resolver).
    :param stop_clock: marked by the server when it is asked to stop (`relay.running`).
    """
    settings = settings or Settings()
    logs.configure(settings)
    origin = Origin(settings.public_url)
    served = None
    if settings.simulator:
        # The developer kit is loaded only when it is used.
        from app.devkit import mounted_simulator, simulator

        served = mounted_simulator.ServedAddress() if settings.polls_own_simulator else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with relay.running(
            settings, served=served, origin=origin, resolver=resolver, stop_clock=stop_clock
        ) as running:
            app.state.relay = running
            _spare_the_startup_objects_from_the_collector()
            try:
                yield
            finally:
                gc.unfreeze()

    app = FastAPI(
        title="Video webhook relay",
        version=VERSION,
        description="Watches asynchronous video-generation tasks and delivers a signed webhook "
        "(Standard Webhooks) when each one ends.",
        lifespan=lifespan,
    )
    app.include_router(watches.router)
    app.include_router(recovery.router)
    app.include_router(files.router)
    app.include_router(service.router)
    app.include_router(admin.router)
    app.webhooks.include_router(webhooks.router)
    if settings.console:
        console.install(app)
    if settings.admin_token is None:
        app.add_middleware(admin.Hidden)
    if settings.simulator:
        # A mounted app's routes stay out of the relay's OpenAPI document.
        app.mount(mounted_simulator.MOUNT_PATH, simulator.create_simulator())
        if served is not None:
            app.add_middleware(mounted_simulator.LearnServedAddress, address=served)
    if settings.public_url is None:
        app.add_middleware(LearnOrigin, origin=origin)
    app.add_middleware(CountRegistrations)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(UndecryptableError, _secrets_unreadable)
    return app


async def _secrets_unreadable(_: Request, exc: Exception) -> JSONResponse:
    """Not the caller's doing: the relay runs without the key its secrets were stored with. A 503
    that says so, since the same request succeeds once RELAY_ENCRYPTION_KEY is restored."""
    return JSONResponse({"detail": str(exc)}, status_code=503)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own answer, except that an upstream key is never echoed back, even to its
    sender: the answer may end up in a log; and what JSON cannot carry is not echoed as it came."""
    assert isinstance(exc, RequestValidationError)
    refused = [_without_upstream_key(dict(error)) for error in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors.sendable(refused))}, status_code=422)


def _without_upstream_key(error: dict[str, Any]) -> dict[str, Any]:
    given = error.get("input")
    if error["loc"][-1] == UPSTREAM_KEY_FIELD:
        error.pop("input", None)
    elif isinstance(given, dict) and UPSTREAM_KEY_FIELD in given:
        error["input"] = {**given, UPSTREAM_KEY_FIELD: "[redacted]"}
    return error


def _spare_the_startup_objects_from_the_collector() -> None:
    """What import and startup made (modules, schemas, compiled queries) lives as long as the
    process, yet each full pass of the garbage collector walked all of it again, pausing the one
    event loop long enough to delay polls and webhooks. Frozen, those objects are left out of
    every pass (until the app stops: a process that starts several, as the tests do, gets them
    back).

    Only the young generations are collected first, where what startup just made and dropped
    is: a full collection walks every object of the process (about 115 ms on a slow machine with
    the test suite loaded), again at each start of an app in a process that starts many."""
    gc.collect(1)
    gc.freeze()


app = create_app()
