"""The running service: the database, the HTTP clients and the background workers, wired once."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from secrets import token_hex
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from app import encryption, logs, transport
from app.capture.capturer import Capturer
from app.capture.cleanup import FileCleanup
from app.capture.links import FALLBACK_ORIGIN, FileLinks, Origin
from app.capture.saving import IN_PROCESS_READ_BYTES, ResultSaver, Saver
from app.capture.storage import FileStorage
from app.capture.worker import CaptureProcess
from app.delivery import ownership, pinning
from app.delivery.callbacks import Resolver
from app.delivery.deliverer import Deliverer
from app.delivery.posting import TransportPoster, WebhookPoster
from app.encryption import KeyBox
from app.http_processes import HttpProcesses
from app.ids import new_id
from app.metrics import Metrics
from app.polling.policy import PollPolicy
from app.polling.poller import Poller
from app.pruning import Pruner
from app.registrar import Registrar
from app.scheduler import Ticker
from app.settings import Settings
from app.stopping import StopClock
from app.store import client_apps, leases, registrations, relay_secrets, sqlite_guard
from app.store.database import Database, erase_replaced_data, migrate, open_database
from app.upstream import TaskSource, UpstreamClient
from app.upstream.circuit import Circuit
from app.upstream.ratelimit import RateLimiter

if TYPE_CHECKING:
    from app.devkit.mounted_simulator import ServedAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Relay:
    settings: Settings
    db: Database
    metrics: Metrics
    ticker: Ticker
    clients: client_apps.ClientApps
    registrar: Registrar
    links: FileLinks
    storage: FileStorage
    #: Signs the operator console's session cookies and CSRF tokens; shared by every replica.
    console_key: bytes

    def deliver_now(self) -> None:
        """Events queued again by the API are sent at once, not at the next tick."""
        self.ticker.kick(DELIVER)


POLL = "poll"
CAPTURE = "capture"
RENEW_CAPTURES = "renew_captures"
RENEW_POLLS = "renew_polls"
DELIVER = "deliver"
CLEANUP = "cleanup"
PRUNE = "prune"
#: Seconds between two looks for captured files past their time to live.
CLEANUP_INTERVAL = 60.0
#: Seconds between two runs of retention: about a minute's worth of finished watches each.
PRUNE_INTERVAL = 60.0
#: The name of the key that signs links to captured files (`relay_secrets`).
LINKS_SECRET = "file_links"
#: The name of the key that signs the console's sessions (`relay_secrets`).
CONSOLE_SECRET = "console_sessions"


@asynccontextmanager
async def running(
    settings: Settings,
    *,
    served: ServedAddress | None = None,
    origin: Origin | None = None,
    resolver: Resolver | None = None,
    stop_clock: StopClock | None = None,
) -> AsyncIterator[Relay]:
    """Start everything in dependency order and stop it in reverse, gracefully.

    On the way out, work in flight gets what is left of `shutdown_grace` to finish, and is then
    cancelled; whatever was claimed and not finished is released so the next start (or another
    replica) takes it at once.

    :param served: where the relay is served, when it polls its own simulator.
    :param origin: what links to captured files are built on (default: `RELAY_PUBLIC_URL`).
    :param resolver: looks up callbacks' host names (default: the system's; tests stand in
        for DNS with their own).
    :param stop_clock: when the relay was asked to stop, which the grace is counted from
        (default: when it begins to stop).
    :raises sqlite_guard.DatabaseInUseError: another relay is running on the same SQLite file.
    """
    with sqlite_guard.held(settings.database_url):
        async with _started(
            settings,
            served=served,
            origin=origin,
            resolver=resolver,
            stop_clock=stop_clock or StopClock(),
        ) as relay:
            yield relay


@asynccontextmanager
async def _started(
    settings: Settings,
    *,
    served: ServedAddress | None,
    origin: Origin | None,
    resolver: Resolver | None,
    stop_clock: StopClock,
) -> AsyncIterator[Relay]:
    db, key_box = await open_store(settings)
    await _bootstrap(db, settings, key_box)
    owner = new_id("own")
    metrics = Metrics()
    ticker = Ticker(interval=settings.tick_interval)
    upstream_key = settings.nebula_api_key
    upstream_transport: httpx.AsyncBaseTransport = transport.create_transport(
        max_connections=settings.poll_concurrency
    )
    upstream_base_url = settings.nebula_base_url
    if served is not None:
        from app.devkit import mounted_simulator

        upstream_transport = mounted_simulator.ToServedAddress(upstream_transport, served)
        upstream_base_url = mounted_simulator.BASE_URL
        upstream_key = upstream_key or SecretStr(mounted_simulator.API_KEY)
    delivery_transport = pinning.create_callback_transport(settings, resolver=resolver)
    rate_limiter = RateLimiter(rate=settings.upstream_rps) if settings.upstream_rps else None
    links = FileLinks(
        bytes.fromhex(
            await relay_secrets.get_or_create(db, name=LINKS_SECRET, make=lambda: token_hex(32))
        ),
        origin=origin or Origin(settings.public_url),
    )
    console_key = bytes.fromhex(
        await relay_secrets.get_or_create(db, name=CONSOLE_SECRET, make=lambda: token_hex(32))
    )
    storage = FileStorage.from_settings(settings)
    upstream = UpstreamClient(
        upstream_transport,
        base_url=upstream_base_url,
        api_key=upstream_key.get_secret_value() if upstream_key else None,
        timeout=settings.upstream_timeout,
    )
    polls_from: TaskSource = upstream
    poster: WebhookPoster = TransportPoster(delivery_transport, timeout=settings.delivery_timeout)
    http_processes = None
    if served is None and settings.http_processes:
        polls_from = http_processes = HttpProcesses(
            settings, count=settings.http_processes, max_connections=_poll_concurrency(settings)
        )
        if resolver is None:  # else webhooks are for names only this process can resolve
            poster = http_processes
        await http_processes.start()
    saver: Saver
    if served is not None:
        # The relay's own simulator is reached at an address that only this process learns.
        saver = ResultSaver.from_settings(
            settings,
            read_bytes=IN_PROCESS_READ_BYTES,
            storage=storage,
            download_api=upstream.with_timeout(settings.capture_request_timeout),
        )
    elif settings.capture_process:
        saver = worker = CaptureProcess(settings)
        if settings.capture:
            await worker.start()
    else:
        saver = ResultSaver.from_settings(
            settings, read_bytes=IN_PROCESS_READ_BYTES, storage=storage
        )
    capturer = Capturer(
        db=db,
        saver=saver,
        storage=storage,
        links=links,
        owner=owner,
        lease=settings.capture_lease,
        concurrency=settings.capture_slots,
        file_ttl=settings.file_ttl,
        pace_downloads=(
            (lambda api_key: rate_limiter.wait(upstream.key_for(api_key))) if rate_limiter else None
        ),
        key_box=key_box,
        metrics=metrics,
        on_events=lambda: ticker.kick(DELIVER),
        on_slot_free=lambda: ticker.kick(CAPTURE),
        on_due_in=lambda delay: ticker.kick_in(CAPTURE, delay),
    )
    cleanup = FileCleanup(
        db=db,
        storage=storage,
        metrics=metrics,
        stale_parts_after=2 * (settings.capture_request_timeout + settings.capture_lease),
    )
    deliverer = Deliverer(
        db=db,
        poster=poster,
        owner=owner,
        lease=settings.delivery_lease,
        retry_schedule=settings.retry_schedule,
        retry_jitter=settings.retry_jitter,
        concurrency=settings.delivery_concurrency,
        key_box=key_box,
        metrics=metrics,
        on_slot_free=lambda: ticker.kick(DELIVER),
        on_due_in=lambda delay: ticker.kick_in(DELIVER, delay),
    )
    # With capture off, polls write no captures: a claim of them at each write-back would find
    # none (those left from when it was on are claimed at the ticks).
    after_write_back = (CAPTURE, DELIVER) if settings.capture else (DELIVER,)
    poller = Poller(
        db=db,
        upstream=polls_from,
        owner=owner,
        policy=PollPolicy(
            interval=settings.poll_interval,
            backoff_max=settings.upstream_backoff_max,
            not_found_grace=settings.not_found_grace,
        ),
        lease=settings.poll_lease,
        concurrency=_poll_concurrency(settings),
        circuit=Circuit(
            cooldown=settings.circuit_cooldown,
            on_change=lambda state: metrics.circuit.state(state.value),
        ),
        rate_limiter=rate_limiter,
        key_box=key_box,
        metrics=metrics,
        capture_timeout=settings.capture_timeout if settings.capture else None,
        on_events=lambda: ticker.kick(*after_write_back),
        on_slot_free=lambda: ticker.kick(POLL),
    )
    ticker.every_tick(POLL, poller.run)
    ticker.every(RENEW_POLLS, settings.poll_lease / 3, poller.renew_leases)
    ticker.every_tick(CAPTURE, capturer.run)
    ticker.every(RENEW_CAPTURES, settings.capture_lease / 3, capturer.renew_leases)
    ticker.every_tick(DELIVER, deliverer.run)
    ticker.every(CLEANUP, CLEANUP_INTERVAL, cleanup.run)
    pruner = Pruner(
        db=db,
        metrics=metrics,
        retention=settings.retention,
        file_ttl=settings.file_ttl if settings.capture else None,
    )
    await pruner.prepare()
    ticker.every(PRUNE, PRUNE_INTERVAL, pruner.run)
    if http_processes is not None:
        await http_processes.ready()
    ticker.start()
    clients = client_apps.ClientApps(db, key_box=key_box, secret_overlap=settings.secret_overlap)
    challenger = ownership.Challenger(
        delivery_transport,
        signing_secrets=clients.signing_secrets,
        timeout=min(ownership.CHALLENGE_TIMEOUT, settings.delivery_timeout),
    )
    try:
        yield Relay(
            settings,
            db,
            metrics,
            ticker,
            clients,
            Registrar(
                db,
                settings,
                registrations.Registrations(db, poll_interval=settings.poll_interval),
                key_box=key_box,
                challenger=challenger,
            ),
            links,
            storage,
            console_key,
        )
    finally:

        def left() -> float:
            return stop_clock.seconds_left(settings.shutdown_grace)

        await ticker.stop(left())
        await asyncio.gather(poller.drain(left()), capturer.drain(left()), deliverer.drain(left()))
        await leases.release_leases(db, owner=owner)
        await upstream_transport.aclose()
        if http_processes is not None:
            await http_processes.aclose()
        await delivery_transport.aclose()
        await saver.aclose()
        await db.dispose()


async def open_store(settings: Settings) -> tuple[Database, KeyBox]:
    """The database, migrated, and the keys that encrypt its secrets, with every secret in it
    encrypted: what the relay and the `clients` commands start from.

    :raises encryption.KeyMissingError: no RELAY_ENCRYPTION_KEY, and no SQLite file to keep a
        key of the relay's own beside.
    """
    key_box = encryption.key_box_for(
        settings.encryption_key.get_secret_value() if settings.encryption_key else None,
        settings.database_url,
    )
    db = open_database(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        await migrate(db)
        encrypted = await client_apps.encrypt_secrets_in_clear(db, key_box=key_box)
        if encrypted:
            await erase_replaced_data(db)
    except BaseException:
        await db.dispose()
        raise
    if encrypted:
        log.info("encrypted the signing secrets of %d client apps, found in clear", encrypted)
    return db, key_box


def _poll_concurrency(settings: Settings) -> int:
    """With a rate budget, hold no more than it lets through in a few seconds: a claimed watch
    waits for its turn holding its lease, out of the reach of other replicas that may have
    budget to spare."""
    if not settings.upstream_rps:
        return settings.poll_concurrency
    return min(settings.poll_concurrency, max(1, math.ceil(settings.upstream_rps * 2)))


async def _bootstrap(db: Database, settings: Settings, key_box: KeyBox) -> None:
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else None
    boot = await client_apps.bootstrap_default_client(
        db,
        api_key=api_key,
        signing_secret=secret,
        key_box=key_box,
        secret_overlap=settings.secret_overlap,
    )
    if boot.revoked:
        log.warning(
            "the default client app (%s) was revoked: RELAY_API_KEY is refused; client apps are "
            "managed with python -m app clients",
            boot.client.id,
        )
    if boot.generated_api_key:
        log.warning(
            "RELAY_API_KEY is not set, so an API key was generated. It is shown only this once; "
            "store it, or set RELAY_API_KEY to replace it:\n\n    RELAY_API_KEY=%s\n",
            boot.generated_api_key,
            extra={logs.SHOWN: boot.generated_api_key},  # the one secret a line may show
        )
    if boot.generated_signing_secret:
        log.warning(
            "RELAY_SIGNING_SECRET is not set, so a webhook signing secret was generated and "
            "stored. Receivers verify with it; GET /v1/client returns it at any time."
        )
    if settings.capture and settings.public_url is None:
        log.warning(
            "RELAY_PUBLIC_URL is not set: links to captured videos name the address this relay "
            "is first called at (%s until then), which works on this machine. Set it to the "
            "address receivers reach the relay at, e.g. RELAY_PUBLIC_URL=https://relay.example.com",
            FALLBACK_ORIGIN,
        )
    if settings.simulator:
        from app.devkit.mounted_simulator import MOUNT_PATH

        log.info(
            "RELAY_SIMULATOR is on: a simulated upstream is served under %s, and watched tasks "
            "are polled %s. Create a task and watch it with: python -m app trigger --outcome "
            "succeeded --callback <your webhook URL>%s",
            MOUNT_PATH,
            "there" if settings.polls_own_simulator else f"at {settings.nebula_base_url}",
            f"; see it in the operator console at {_console_address(settings)}, signing in with "
            "the API key"
            if settings.console
            else "",
        )
    elif settings.nebula_api_key is None:
        log.warning(
            "NEBULA_API_KEY is not set: the upstream at %s will be polled without a key, and it "
            "answers 401 to that. To try the relay without an upstream account, start it with "
            "its built-in simulator instead:\n\n    RELAY_SIMULATOR=true "
            "RELAY_ALLOW_PRIVATE_CALLBACKS=true python -m uvicorn app.main:app\n\n"
            "(README: 'Try it in one minute').",
            settings.nebula_base_url,
        )


def _console_address(settings: Settings) -> str:
    """uvicorn does not tell the app its port, so without RELAY_PUBLIC_URL only the path is
    known."""
    if settings.public_url is not None:
        return f"{settings.public_url}/console"
    return "/console on the address the relay is served at"
