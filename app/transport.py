"""The one place that decides what carries the relay's outgoing HTTP.

Everything else talks to `httpx.AsyncClient`; swapping the transport underneath (for a faster
one, or one that pins resolved addresses) is a change to this module alone.
"""

from __future__ import annotations

import httpx


def create_client(
    *, timeout: float, max_connections: int, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A long-lived client with its own pool, one per destination kind (upstream, receivers).

    Redirects are never followed: a 3xx from a receiver is a failed delivery, and the upstream
    has no reason to redirect an API call.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    )
