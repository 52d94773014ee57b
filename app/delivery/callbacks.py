"""Where webhooks may be sent.

A relay that POSTs to any URL a client names can be turned against the network it runs in
(SSRF): its metadata service, its database, the admin page of a router. Unless private callbacks
are explicitly allowed (development), a callback must reach a public address:

- at registration, a URL whose host is an address, in any spelling a URL parser or a resolver
  accepts (`127.1`, `0x7f.1`, `2130706433`, `[::ffff:7f00:1]`), is refused unless the address
  is public, and so are `localhost` and its subdomains;
- at delivery, `PinnedTransport` (app/delivery/pinning.py) resolves a host name once, refuses
  it if any answer is not public, and connects to exactly the address it checked, so a name
  cannot answer one thing to the check and another to the connection.

`RELAY_CALLBACK_ALLOWLIST` opens chosen host names and networks on purpose (a receiver on the
operator's own network); `RELAY_REQUIRE_HTTPS` refuses plain-http callbacks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import httpx
from pyreqwest.http import Url

from app.transport import parsed_url

if TYPE_CHECKING:
    from app.settings import Settings

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(ValueError):
    pass


# What is not public. Python's `is_global` is consulted as well, but its answers differ between
# versions (3.11 takes multicast, 6to4, NAT64 and site-local addresses as global), so the ranges
# are spelled out: IANA's special-purpose registries, every range not globally reachable.
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the host itself
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, where cloud metadata services answer
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # the former 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/8",  # unspecified, loopback, IPv4-compatible (deprecated), NAT64 local-use, reserved
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
#: Outside of global unicast space, no IPv6 address is public.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally routable, and whatever IPv4 address it stands for too.

    An IPv4-mapped address (`::ffff:127.0.0.1`), one of the NAT64 well-known prefix
    (`64:ff9b::7f00:1`) and a 6to4 one (`2002:7f00:1::`) all lead to the IPv4 address they carry,
    so that address is what is judged. Teredo (2001::/32) is refused whatever it carries.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address not in _GLOBAL_UNICAST or any(address in net for net in _NOT_PUBLIC_V6):
            return False
    elif any(address in net for net in _NOT_PUBLIC_V4):
        return False
    return address.is_global


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address packets to `address` are delivered to, for the forms that have one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def host_address(host: str) -> IPAddress | None:
    """The address `host` names, if it is an IP literal in any spelling; None for a name.

    A resolver takes the legacy IPv4 forms as addresses without asking DNS (`127.1`, `0x7f.1`,
    `0177.0.0.1`, `2130706433`), and so does `inet_aton`; a URL parser takes them too (see
    `reqwest_host`). A host that either reads as an address is one.
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare.removesuffix(".")))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class ReqwestHost:
    """A URL's host as the connection will see it: reqwest parses URLs as browsers do (WHATWG),
    which turns `0x7f.1`, `%31%32%37.0.0.1` or `127.0.0.1.` into 127.0.0.1 and encodes an
    international name, so that is the host judged, and the name an address is pinned to."""

    name: str
    address: IPAddress | None


def reqwest_host(url: str) -> ReqwestHost:
    """:raises ValueError: reqwest cannot parse the URL, so could never send to it."""
    parsed = Url(url)
    host = parsed.host_str or ""
    return ReqwestHost(host, host_address(host) if parsed.domain is None else None)


#: A bare host name: no scheme, port, path, user or spaces.
_HOST_NAME = re.compile(r"^[^\s/:@?#\[\]%\\]+$")


def _is_localhost(name: str) -> bool:
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def parse_allowlist(entries: Iterable[str]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """`RELAY_CALLBACK_ALLOWLIST`'s entries: host names (matched exactly, in any letter case,
    with or without a final dot) and networks (`10.0.0.0/8`, or one address).

    :raises ValueError: an entry is neither.
    """
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        address = host_address(entry)
        if address is not None or "/" in entry:
            try:
                networks.append(ipaddress.ip_network(address or entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"RELAY_CALLBACK_ALLOWLIST: {entry!r} is neither a host name nor a network "
                    "(e.g. 10.0.0.0/8)"
                ) from None
            continue
        try:
            seen = reqwest_host(f"http://{entry}/") if _HOST_NAME.match(entry) else None
        except ValueError:
            seen = None
        if seen is None or seen.address is not None or not seen.name:
            raise ValueError(
                f"RELAY_CALLBACK_ALLOWLIST: {entry!r} is neither a host name nor a network"
            )
        hosts.add(seen.name.rstrip("."))
    return frozenset(hosts), tuple(networks)


class Resolver(Protocol):
    """Looks host names up: the system's resolver, or what a test puts in the place of DNS."""

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to, most preferred first.

        :raises OSError: the name does not resolve.
        :raises UnicodeError: the name cannot be encoded for a lookup.
        """
        ...


class SystemResolver:
    """`getaddrinfo`, as reqwest itself would look the name up, run off the event loop."""

    async def addresses(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """Which callbacks this relay takes and may connect to; built once from the settings."""

    allow_private: bool = False
    require_https: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        hosts, networks = parse_allowlist(settings.callback_allowlist)
        return cls(settings.allow_private_callbacks, settings.require_https, hosts, networks)

    def host_allowed(self, name: str) -> bool:
        """Whether the operator opened this host name, whatever it resolves to."""
        return bool(self.allowed_hosts) and name.rstrip(".").lower() in self.allowed_hosts

    def address_allowed(self, address: IPAddress) -> bool:
        """Public, or in a network the operator opened."""
        if is_public(address):
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed_networks)

    def validate(self, url: str) -> str:
        """Check a callback at registration: a usable http(s) URL, and, unless private callbacks
        are allowed, not one whose host is a non-public address or `localhost`.

        Names are not looked up here: an answer now says nothing of the answer at delivery,
        where every name is resolved and checked again.
        """
        host = _usable_host(url)
        if self.require_https and urlsplit(url).scheme != "https":
            raise CallbackRefused(
                "callback_url must be an https:// URL: this relay sets RELAY_REQUIRE_HTTPS=true"
            )
        try:
            seen: ReqwestHost | None = reqwest_host(url)
        except ValueError as exc:
            seen, unusable = None, str(exc)
        if not self.allow_private:
            self._refuse_non_public(host, seen)
        try:
            if seen is None:
                raise httpx.InvalidURL(unusable)
            parsed_url(url)
        except httpx.InvalidURL as exc:
            # The relay could never send to it: httpx builds the request, reqwest connects.
            raise CallbackRefused(f"callback_url is not a valid URL: {exc}") from None
        return url

    def _refuse_non_public(self, host: str, seen: ReqwestHost | None) -> None:
        """Judged before any complaint about the URL's form, so that `0177.0.0.1` (which httpx
        will not take) is still named for what it is: a loopback address."""
        for address in {seen.address if seen else None, host_address(host)} - {None}:
            assert address is not None
            if not self.address_allowed(address):
                raise CallbackRefused(_NOT_PUBLIC.format(_spelled(host, address)))
        name = seen.name if seen else host
        if host_address(name) is None and _is_localhost(name) and not self.host_allowed(name):
            raise CallbackRefused(_NOT_PUBLIC.format(f"{host} is this machine"))


_NOT_PUBLIC = (
    "callback_url points to a private or loopback address ({}): only public addresses are "
    "called back; list it in RELAY_CALLBACK_ALLOWLIST, or set RELAY_ALLOW_PRIVATE_CALLBACKS=true "
    "(development)"
)


def _usable_host(url: str) -> str:
    """The host of an http(s) URL of a sane length with no fragment."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isprintable() or any(char.isspace() for char in url):
        # A CR or LF could split the request line; parsers strip or keep the others unevenly.
        raise CallbackRefused("callback_url must not contain whitespace or control characters")
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
    return host


def _spelled(host: str, address: IPAddress) -> str:
    """`127.0.0.1`, or `0x7f.1, that is 127.0.0.1` when the URL spells it another way, and the
    IPv4 address an IPv6 form leads to."""
    bare = host.strip("[]")
    text = bare if bare == str(address) else f"{bare}, that is {address}"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            text += f", which leads to {embedded}"
    return text
