"""Where webhooks may go: public http(s) addresses only, unless private ones are allowed."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from app.delivery import callbacks
from app.delivery.callbacks import (
    MAX_URL_LENGTH,
    CallbackRefused,
    PublicHosts,
    ensure_public,
    validate_callback_url,
)

_getaddrinfo = socket.getaddrinfo
#: Answered from /etc/hosts, never from DNS.
LOCAL_NAMES = {"localhost"}
#: Answered as a nameserver would, with a public address of their own.
PUBLIC_NAMES = {
    "hooks.example.com": "93.184.216.34",
    "a.example.net": "93.184.216.35",
    "b.example.net": "93.184.216.36",
}


@pytest.fixture(autouse=True)
def offline_resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keeps every lookup on this machine; returns the names asked for.

    The configured nameserver is not on loopback and must never be contacted, so a name outside
    /etc/hosts and `PUBLIC_NAMES` is answered as a real resolver answers a name that does not
    exist (the `.invalid` TLD never does). A non-ASCII name is first encoded the way the socket
    module does before any lookup, so a name it cannot encode fails exactly as it would for real.
    """
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        if host in LOCAL_NAMES or _is_address(host):
            return _getaddrinfo(host, port, *args, **kwargs)
        if host in PUBLIC_NAMES:
            return _getaddrinfo(PUBLIC_NAMES[host], port, *args, **kwargs)
        if isinstance(host, str) and not host.isascii():
            host.encode("idna")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _is_address(host: object) -> bool:
    try:
        ipaddress.ip_address(str(host))
    except ValueError:
        return False
    return True


PUBLIC_URLS = [
    "https://example.com/hook",
    "http://example.com",
    "https://hooks.example.co.uk/a/b/c",
    "https://example.com:8443/hooks/video?token=abc&attempt=1",
    "http://example.com:80/",
    "https://user:p%40ss@example.com/hook",
    "https://EXAMPLE.com/Hook",
    "https://bücher.example/hook",
    "http://93.184.216.34/hook",
    "https://[2606:4700:4700::1111]:443/hook",
]

PRIVATE_URLS = [
    "http://localhost/hook",
    "http://LOCALHOST:8080/hook",
    "https://api.localhost/hook",
    "http://127.0.0.1:9000/hook",
    "http://127.1.2.3/",
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8000/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[::1]:8080/hook",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
]


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_a_public_http_url_is_accepted_as_given(url: str) -> None:
    assert validate_callback_url(url, allow_private=False) == url


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_a_private_or_loopback_address_is_refused(url: str) -> None:
    with pytest.raises(
        CallbackRefused, match=r"private or loopback.*RELAY_ALLOW_PRIVATE_CALLBACKS"
    ):
        validate_callback_url(url, allow_private=False)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_addresses_are_accepted_when_allowed(url: str) -> None:
    assert validate_callback_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("ws://example.com/socket", "must be an http:// or https:// URL"),
        ("javascript:alert(1)", "must be an http:// or https:// URL"),
        ("example.com/hook", "must be an http:// or https:// URL"),
        ("//example.com/hook", "must be an http:// or https:// URL"),
        ("http://", "has no host"),
        ("https:///hook", "has no host"),
        ("http://:8080/hook", "has no host"),
        ("http://user@/hook", "has no host"),
        ("https://example.com/hook#section", "must not have a #fragment"),
        ("https://example.com:99999/hook", "not a valid URL"),
        ("https://example.com:65536/hook", "not a valid URL"),
        ("https://example.com:-1/hook", "not a valid URL"),
        ("https://example.com:http/hook", "not a valid URL"),
        ("http://[::1/hook", "not a valid URL"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_that_is_not_a_usable_http_address_is_refused(
    url: str, reason: str, allow_private: bool
) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        validate_callback_url(url, allow_private=allow_private)


def test_a_url_of_exactly_the_maximum_length_is_accepted() -> None:
    url = "https://example.com/"
    url += "a" * (MAX_URL_LENGTH - len(url))

    assert validate_callback_url(url, allow_private=False) == url


LITERAL_PRIVATE_URLS = [
    "http://127.0.0.1/hook",
    "http://10.0.0.8:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:8000/",
    "http://[::1]:8080/",
    "http://[fd00::1]/",
]


@pytest.mark.parametrize("url", LITERAL_PRIVATE_URLS)
async def test_a_literal_private_address_is_refused_before_delivery(url: str) -> None:
    with pytest.raises(CallbackRefused, match=r"non-public address|not a public address"):
        await ensure_public(url)


@pytest.mark.parametrize("url", LITERAL_PRIVATE_URLS)
async def test_a_literal_private_address_is_refused_without_a_lookup(
    url: str, offline_resolver: list[str]
) -> None:
    with pytest.raises(CallbackRefused, match="is not a public address"):
        await ensure_public(url)
    assert offline_resolver == [], "an address needs no lookup"


@pytest.mark.parametrize(
    "url", ["https://93.184.216.34/hook", "https://[2606:4700:4700::1111]:8443/hook"]
)
async def test_a_literal_public_address_may_be_delivered_to(
    url: str, offline_resolver: list[str]
) -> None:
    await ensure_public(url)

    assert offline_resolver == []


async def test_a_name_that_resolves_to_loopback_is_refused(offline_resolver: list[str]) -> None:
    with pytest.raises(CallbackRefused, match=r"localhost resolves to non-public address 127\."):
        await ensure_public("http://localhost:8080/hook")
    assert offline_resolver == ["localhost"]


async def test_a_name_that_does_not_resolve_is_refused(offline_resolver: list[str]) -> None:
    with pytest.raises(CallbackRefused, match=r"cannot resolve hooks\.relay-test\.invalid"):
        await ensure_public("https://hooks.relay-test.invalid/hook")
    assert offline_resolver == ["hooks.relay-test.invalid"]


UNENCODABLE_NAME_URL = "https://" + "é" * 64 + ".example/hook"


def test_a_name_the_resolver_cannot_encode_passes_registration() -> None:
    """The name looks like any other, so only the lookup at delivery can judge it."""
    assert validate_callback_url(UNENCODABLE_NAME_URL, allow_private=False)


async def test_a_name_the_resolver_cannot_encode_is_refused_at_delivery() -> None:
    with pytest.raises(CallbackRefused, match="cannot resolve"):
        await ensure_public(UNENCODABLE_NAME_URL)


def test_the_lookup_guard_answers_like_a_resolver(offline_resolver: list[str]) -> None:
    """The guard above must behave as the real thing does, or the tests using it prove nothing."""
    assert socket.getaddrinfo("localhost", None)
    assert socket.getaddrinfo("127.0.0.1", 80)
    assert {info[4][0] for info in socket.getaddrinfo("hooks.example.com", 443)} == {
        "93.184.216.34"
    }
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("hooks.relay-test.invalid", 443)
    with pytest.raises(UnicodeError):
        _getaddrinfo("é" * 64 + ".example", 443)  # fails while encoding, before any lookup
    assert offline_resolver == [
        "localhost",
        "127.0.0.1",
        "hooks.example.com",
        "hooks.relay-test.invalid",
    ]


async def test_a_name_that_resolves_to_public_addresses_may_be_delivered_to(
    offline_resolver: list[str],
) -> None:
    await ensure_public("https://hooks.example.com/video")

    assert offline_resolver == ["hooks.example.com"]


async def test_a_name_found_public_is_not_looked_up_again_for_a_while(
    offline_resolver: list[str],
) -> None:
    hosts = PublicHosts()
    for path in ("video", "video", "other"):
        await hosts.ensure_public(f"https://hooks.example.com/{path}")

    assert offline_resolver == ["hooks.example.com"]


async def test_a_name_found_public_is_looked_up_again_once_its_time_is_up(
    offline_resolver: list[str],
) -> None:
    hosts = PublicHosts(ttl=0)
    for _ in range(2):
        await hosts.ensure_public("https://hooks.example.com/video")

    assert offline_resolver == ["hooks.example.com"] * 2


async def test_a_refused_name_is_looked_up_again_at_the_next_delivery(
    offline_resolver: list[str],
) -> None:
    hosts = PublicHosts()
    for _ in range(2):
        with pytest.raises(CallbackRefused, match="resolves to non-public address"):
            await hosts.ensure_public("http://localhost:8080/hook")

    assert offline_resolver == ["localhost"] * 2


async def test_no_more_names_than_kept_hosts_are_remembered(
    offline_resolver: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callbacks, "KEPT_HOSTS", 2)
    hosts = PublicHosts()
    for host in ("hooks.example.com", "a.example.net", "b.example.net", "hooks.example.com"):
        await hosts.ensure_public(f"https://{host}/hook")

    assert offline_resolver == [
        "hooks.example.com",
        "a.example.net",
        "b.example.net",
        "hooks.example.com",
    ]
