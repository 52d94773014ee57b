"""The rules of registering a watch: what the API's route applies, apart from HTTP.

A registration is checked against its client's limits (rate, live watches) and the relay's own
rules (callback addresses, the shortest interval), its upstream key is encrypted, and a request
that carries an `Idempotency-Key` is answered as the first one with that key was.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

from app import limits
from app.api.schemas import WatchCreate, WatchOut
from app.delivery import callbacks
from app.delivery.ownership import Challenger, OwnershipNotConfirmed
from app.encryption import KeyBox
from app.settings import Settings
from app.store import idempotency, watch_queries
from app.store.database import Database
from app.store.registrations import Registrations

log = logging.getLogger(__name__)


class RegistrationRefused(ValueError):
    """The request is well-formed, but this relay will not take it; `field` says which part,
    `reason` which rule (the field's name, unless a field can break several)."""

    def __init__(self, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.reason = reason or field


class IdempotencyConflict(Exception):
    """The `Idempotency-Key` was used before, with another request body."""


@dataclass(frozen=True, slots=True)
class Registered:
    """The answer to a registration: the watch, serialized once, and whether it is new."""

    watch_id: str
    created: bool
    body: str
    #: The answer to an earlier request with the same `Idempotency-Key`, given again.
    replayed: bool = False


class Registrar:
    """:param key_box: encrypts the upstream keys that registrations bring.
    :param challenger: proves callbacks are their registrant's (`verify_callback`).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        registrations: Registrations,
        *,
        key_box: KeyBox,
        challenger: Challenger,
    ) -> None:
        self._db = db
        self._settings = settings
        self._registrations = registrations
        self._key_box = key_box
        self._callbacks = callbacks.CallbackPolicy.from_settings(settings)
        self._challenger = challenger
        self._rate = limits.RateLimit(settings.rate_limit) if settings.rate_limit else None
        self._cap = (
            limits.ActiveWatchCap(
                settings.max_active_watches,
                count=lambda client_id: watch_queries.count_live(db, client_id=client_id),
                retry_after=max(1, math.ceil(settings.poll_interval)),
            )
            if settings.max_active_watches
            else None
        )

    async def register(
        self, *, client_id: str, request: WatchCreate, idempotency_key: str | None
    ) -> Registered:
        """Create the watch, or return the live one for the same task and callback.

        :raises LimitReachedError: the client is over one of its limits (`admit`).
        :raises RegistrationRefused: the request breaks one of this relay's rules.
        :raises IdempotencyConflict: the key was already used with another body.
        """
        await self.admit(client_id)
        encrypted_key = self._check(request)
        request_hash = None
        if idempotency_key is not None:
            # Only a request that can be replayed needs its fingerprint.
            request_hash = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
            stored = await idempotency.find(self._db, client_id=client_id, key=idempotency_key)
            if stored is not None:
                return _replayed(stored, request_hash, again=True)
        await self._verify_callback(client_id, request)
        watch, created = await self._registrations.register(
            client_id=client_id,
            task_id=request.task_id,
            callback_url=request.callback_url,
            metadata=request.metadata,
            event_types=list(request.events) if request.events else None,
            expires_after=request.timeout or self._settings.watch_timeout,
            poll_interval=request.poll_interval,
            upstream_api_key_encrypted=encrypted_key,
        )
        if created:
            log.info(
                "watch registered",
                extra={"watch_id": watch.id, "task_id": watch.task_id, "client_id": client_id},
            )
        if created and self._cap is not None:
            self._cap.added(client_id)
        # Serialized here, once: returned as a model, the route would validate it all over again.
        registered = Registered(watch.id, created, WatchOut.model_validate(watch).model_dump_json())
        if idempotency_key is None or request_hash is None:
            return registered
        stored = await idempotency.save(
            self._db,
            client_id=client_id,
            key=idempotency_key,
            response=idempotency.StoredResponse(
                request_hash, 201 if created else 200, registered.body
            ),
        )
        return _replayed(stored, request_hash, again=False)

    async def admit(self, client_id: str) -> None:
        """Apply the client's own limits: its rate of registrations, then its cap on live
        watches. Kept per client, so an app at its limit never holds up another.

        :raises LimitReachedError: over a limit; `retry_after` says when to try again.
        """
        if self._rate is not None:
            self._rate.take(client_id)
        if self._cap is not None:
            await self._cap.check(client_id)

    async def _verify_callback(self, client_id: str, request: WatchCreate) -> None:
        """With `verify_callback`, register only a callback that answers the relay's challenge:
        after every other rule (a refused request costs the receiver nothing), before anything
        is stored.

        :raises RegistrationRefused: the callback did not confirm it is the client's.
        """
        if not request.verify_callback:
            return
        try:
            await self._challenger.confirm(client_id=client_id, callback_url=request.callback_url)
        except OwnershipNotConfirmed as exc:
            raise RegistrationRefused(
                "callback_url", str(exc), reason="callback_not_confirmed"
            ) from None

    def _check(self, request: WatchCreate) -> str | None:
        """Apply the relay's rules; return the upstream key encrypted, if one came."""
        settings = self._settings
        try:
            self._callbacks.validate(request.callback_url)
        except callbacks.CallbackRefused as exc:
            raise RegistrationRefused("callback_url", str(exc)) from None
        if request.poll_interval is not None and request.poll_interval < settings.min_poll_interval:
            raise RegistrationRefused(
                "poll_interval",
                f"poll_interval must be at least {settings.min_poll_interval:g} seconds on this "
                "relay",
            )
        if request.upstream_api_key is None:
            return None
        return self._key_box.encrypt(request.upstream_api_key)


def _replayed(stored: idempotency.StoredResponse, request_hash: str, *, again: bool) -> Registered:
    """:param again: `stored` answered an earlier request, not this one."""
    if stored.request_hash != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body"
        )
    watch_id = WatchOut.model_validate_json(stored.body).id
    return Registered(watch_id, stored.status_code == 201, stored.body, replayed=again)
