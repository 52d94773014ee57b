"""Per-client limits on registrations: a rate (`RELAY_RATE_LIMIT`) and a cap on live watches
(`RELAY_MAX_ACTIVE_WATCHES`), so that one app cannot crowd the others out of the relay.

Each client has its own token bucket and its own count: an app at its limit is answered `429`
at once, and no other app waits for it. Both are kept in this process's memory, so with
several replicas each one enforces them on what it sees (the cap on counts it reads from the
database, so approximately; the rate per replica).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: Seconds a client's count of live watches is trusted before it is read again.
RECOUNT_AFTER = 1.0


class LimitReachedError(Exception):
    """The client must wait before registering again; `retry_after` says how long (seconds),
    `limit` which limit it reached (`rate` or `live_watches`)."""

    def __init__(self, message: str, *, retry_after: int, limit: str) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.limit = limit


@dataclass(slots=True)
class _Bucket:
    tokens: float
    filled_at: float


class RateLimit:
    """A token bucket per client: `rate` registrations a second, bursts of one second's worth
    (at least one registration).

    Refusing rather than queueing: a registration held back here would hold its connection and
    its slot in the server, which is the load the limit is there to shed.
    """

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._burst = max(1.0, rate)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, client_id: str, *, now: float | None = None) -> None:
        """Spend one token of the client's bucket.

        :raises LimitReachedError: the bucket is empty; `retry_after` is when a token will be
            there again (whole seconds, as `Retry-After` takes them).
        """
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.filled_at) * self._rate)
        bucket.filled_at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / self._rate
        raise LimitReachedError(
            f"too many registrations: this relay takes at most {self._rate:g} a second from each "
            "client app; retry after the time in Retry-After",
            retry_after=max(1, math.ceil(wait)),
            limit="rate",
        )


@dataclass(slots=True)
class _Count:
    live: int
    counted_at: float


class ActiveWatchCap:
    """At most `cap` live watches (active, capturing or notifying) per client.

    Counting a client's live watches is a query, too slow for every registration of thousands
    a second: each client's count is read at most once every `recount_after` seconds, and
    the watches this process registers meanwhile are added to it as they are made. Watches
    that end meanwhile are seen at the next count; those other replicas register, too. So the
    cap holds approximately: a client can go over it by what arrives within one count's time.

    :param count: reads a client's number of live watches from the database.
    :param retry_after: what `Retry-After` says to a client at its cap: live watches end only
        as their tasks do, which polls find out.
    """

    def __init__(
        self,
        cap: int,
        *,
        count: Callable[[str], Awaitable[int]],
        retry_after: int,
        recount_after: float = RECOUNT_AFTER,
    ) -> None:
        self._cap = cap
        self._count = count
        self._retry_after = retry_after
        self._recount_after = recount_after
        self._counts: dict[str, _Count] = {}

    async def check(self, client_id: str) -> None:
        """:raises LimitReachedError: the client has `cap` live watches or more."""
        now = time.monotonic()
        known = self._counts.get(client_id)
        if known is None or now - known.counted_at >= self._recount_after:
            if known is None:
                known = self._counts[client_id] = _Count(0, now)
            # Claimed before the query, so registrations arriving meanwhile count on the last
            # figure instead of each starting a query of its own.
            known.counted_at = now
            known.live = await self._count(client_id)
        if known.live >= self._cap:
            raise LimitReachedError(
                f"too many live watches: this relay keeps at most {self._cap} active, capturing "
                "or notifying watches for each client app; retry once some have ended",
                retry_after=self._retry_after,
                limit="live_watches",
            )

    def added(self, client_id: str) -> None:
        """A watch of the client was made here since its last count."""
        known = self._counts.get(client_id)
        if known is not None:
            known.live += 1
