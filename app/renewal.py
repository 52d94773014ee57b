"""Keeping short leases on work that may run long.

A lease must outlast the work it covers, or another replica takes the work over while it still
runs; but a process that dies holds its leases until they expire, and its work waits that long.
So leases stay short (seconds), and the rows whose work is under way have their leases renewed
together, in one statement, every third of a lease: a dead process's work is taken up again
within one lease, however long the work itself may take (a download, an upstream request that
waits for its turn in the rate budget).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager


class LeaseRenewal:
    """:param renew: extends the leases of the rows it is given (a store function, bound to
    the owner and the lease)."""

    def __init__(self, renew: Callable[[list[str]], Awaitable[None]]) -> None:
        self._renew = renew
        self._held: set[str] = set()

    @contextmanager
    def holding(self, row_id: str) -> Iterator[None]:
        """The row's lease is renewed for as long as this lasts."""
        self._held.add(row_id)
        try:
            yield
        finally:
            self._held.discard(row_id)

    async def renew(self) -> None:
        if self._held:
            await self._renew(sorted(self._held))
