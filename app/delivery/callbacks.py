"""Where webhooks may be sent.

A relay that POSTs to any URL a client names can be turned against the network it runs in
(SSRF). Unless private callbacks are explicitly allowed, a callback must be a public http(s)
address: literal private addresses are refused at registration, and host names are resolved and
checked again before every delivery, since DNS can change after registration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
#: Seconds for which a host name found to resolve only to public addresses is taken as public.
PUBLIC_HOST_TTL = 30.0
#: Host names remembered at most, so that callbacks naming ever new hosts cannot grow memory.
KEPT_HOSTS = 16 * 1024


class CallbackRefused(ValueError):
    pass


def validate_callback_url(url: str, *, allow_private: bool) -> str:
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError as exc:
        raise CallbackRefused(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("callback_url must be an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise CallbackRefused("callback_url has no host")
    if parts.fragment:
        raise CallbackRefused("callback_url must not have a #fragment")
    if not allow_private and _names_private_host(host):
        raise CallbackRefused(
            "callback_url points to a private or loopback address; "
            "set RELAY_ALLOW_PRIVATE_CALLBACKS=true to allow it"
        )
    return url


def _names_private_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


async def ensure_public(url: str) -> None:
    """Refuse a host name that resolves to any non-public address."""
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not literal.is_global:
            raise CallbackRefused(f"{host} is not a public address")
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CallbackRefused(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError:
        raise CallbackRefused(f"cannot resolve {host}: not a valid host name") from None
    for info in infos:
        address = info[4][0]
        if not ipaddress.ip_address(address).is_global:
            raise CallbackRefused(f"{host} resolves to non-public address {address}")


class PublicHosts:
    """`ensure_public`, with the host names found public remembered for `ttl` seconds.

    Every delivery is checked, and a lookup hands the event loop's work to a thread and back,
    even before any wait for a nameserver, while a receiver may get thousands of webhooks a
    minute. Remembering a verdict briefly leaves the check as strong as it was: the check and the
    connection look the name up separately (and a pooled connection keeps the address it was
    opened to), so a name whose answers change between the two could pass it anyway. Refusals are
    not remembered: a receiver that fixes its DNS is delivered to at the next attempt.
    """

    def __init__(self, *, ttl: float = PUBLIC_HOST_TTL) -> None:
        self._ttl = ttl
        self._public_until: dict[str, float] = {}

    async def ensure_public(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        now = time.monotonic()
        if self._public_until.get(host, 0.0) > now:
            return
        await ensure_public(url)
        if len(self._public_until) >= KEPT_HOSTS:
            self._public_until = {h: t for h, t in self._public_until.items() if t > now}
            if len(self._public_until) >= KEPT_HOSTS:
                self._public_until.clear()
        self._public_until[host] = now + self._ttl
