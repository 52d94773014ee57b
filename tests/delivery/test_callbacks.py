"""Which callbacks are taken at registration: public http(s) addresses only, unless the operator
opens private ones (allowlist) or allows them all (development)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from app.delivery.callbacks import (
    MAX_URL_LENGTH,
    CallbackPolicy,
    CallbackRefused,
    host_address,
    is_public,
    parse_allowlist,
)


@pytest.fixture(autouse=True)
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registration judges the URL as written: an answer from DNS now would say nothing of the
    answer at delivery, so no name is ever looked up here."""

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{host} was looked up at registration")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


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
    # IPv6 forms that lead to a public IPv4 address: mapped, NAT64 (DNS64 networks), 6to4.
    "http://[::ffff:93.184.216.34]/hook",
    "http://[64:ff9b::5db8:d822]/hook",
    "http://[2002:5db8:d822::1]/hook",
]

PRIVATE_URLS = [
    "http://localhost/hook",
    "http://LOCALHOST:8080/hook",
    "http://localhost./hook",
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
    "http://100.127.255.254/",
    "http://[::1]/",
    "http://[::1]:8080/hook",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
]

#: The same few addresses, spelled as URL parsers and resolvers also read them.
ODD_SPELLINGS = [
    "http://2130706433/hook",
    "http://0x7f.1/hook",
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://0x7f000001/hook",
    "http://017700000001/hook",
    "http://127.0.0.1./hook",
    "http://%31%32%37.0.0.1/hook",
    "http://0/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[0:0:0:0:0:ffff:7f00:1]/hook",
    "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
]

#: Not routable on the Internet for reasons other than being private.
RESERVED_URLS = [
    "http://224.0.0.1/",  # multicast
    "http://239.255.255.250:1900/",
    "http://240.0.0.1/",  # reserved
    "http://255.255.255.255/",  # broadcast
    "http://192.0.0.8/",  # IETF protocol assignments
    "http://192.0.2.1/",  # documentation
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://198.18.0.1/",  # benchmarking
    "http://192.88.99.1/",  # former 6to4 relays
    "http://[ff02::1]/",  # multicast
    "http://[2001:db8::1]/",  # documentation
    "http://[3fff::1]/",
    "http://[fec0::1]/",  # site-local
    "http://[100::1]/",  # discard
    "http://[5f00::1]/",  # segment routing
]

#: IPv6 forms that carry an IPv4 address: the IPv4 address is where they lead.
EMBEDDED_IPV4_URLS = [
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",  # mapped 169.254.169.254
    "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",  # NAT64 well-known prefix, 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b::c0a8:101]/",  # NAT64 of 192.168.1.1
    "http://[64:ff9b:1::5db8:d822]/",  # NAT64 local-use: whatever it carries
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[2002:a00:1::1]/",  # 6to4 of 10.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[2001:0:5db8:d822:0:0:80ff:fffe]/",  # Teredo, whatever it carries
    "http://[::7f00:1]/",  # IPv4-compatible (deprecated)
]


@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_a_public_http_url_is_accepted_as_given(url: str) -> None:
    assert CallbackPolicy(allow_private=False).validate(url) == url


@pytest.mark.parametrize("url", PRIVATE_URLS + ODD_SPELLINGS + RESERVED_URLS + EMBEDDED_IPV4_URLS)
def test_a_non_public_address_is_refused(url: str) -> None:
    with pytest.raises(
        CallbackRefused, match=r"private or loopback.*RELAY_ALLOW_PRIVATE_CALLBACKS"
    ):
        CallbackPolicy(allow_private=False).validate(url)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://0x7f.1/", "0x7f.1, that is 127.0.0.1"),
        ("http://2130706433/", "2130706433, that is 127.0.0.1"),
        ("http://%31%32%37.0.0.1/", "that is 127.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe, which leads to 169.254.169.254"),
        ("http://localhost/", "localhost is this machine"),
    ],
)
def test_the_refusal_says_which_address_the_url_names(url: str, said: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        CallbackPolicy(allow_private=False).validate(url)

    assert said in str(refused.value)


#: httpx takes no leading zero in a dotted address, so the relay could not send there anyway.
UNSENDABLE = {"http://0177.0.0.1/hook"}


@pytest.mark.parametrize(
    "url",
    [
        url
        for url in PRIVATE_URLS + ODD_SPELLINGS + RESERVED_URLS + EMBEDDED_IPV4_URLS
        if url not in UNSENDABLE
    ],
)
def test_private_addresses_are_accepted_when_allowed(url: str) -> None:
    assert CallbackPolicy(allow_private=True).validate(url) == url


@pytest.mark.parametrize(("allow_private", "reason"), [(False, "private"), (True, "not a valid")])
def test_an_address_with_a_zone_is_refused(allow_private: bool, reason: str) -> None:
    """reqwest takes no zone id: the relay could never send there."""
    with pytest.raises(CallbackRefused, match=reason):
        CallbackPolicy(allow_private=allow_private).validate("http://[fe80::1%25eth0]/")


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
        # reqwest takes no IPv4 address of five parts: it could never send.
        ("http://1.2.3.4.5/", "not a valid URL"),
        # Nor can httpx encode a label this long.
        ("https://" + "é" * 64 + ".example/hook", "not a valid URL"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_url_that_is_not_a_usable_http_address_is_refused(
    url: str, reason: str, allow_private: bool
) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        CallbackPolicy(allow_private=allow_private).validate(url)


def test_a_url_of_exactly_the_maximum_length_is_accepted() -> None:
    url = "https://example.com/"
    url += "a" * (MAX_URL_LENGTH - len(url))

    assert CallbackPolicy(allow_private=False).validate(url) == url


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "127.0.0.1.", "127.0.0.1"],
)
def test_every_spelling_of_an_address_is_read_as_that_address(host: str) -> None:
    assert host_address(host) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("host", ["example.com", "hooks.relay-test.invalid", "0x7g.1", "1.2.3.x"])
def test_a_name_is_not_an_address(host: str) -> None:
    assert host_address(host) is None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("224.0.0.251", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("2002:a9fe:a9fe::", False),
        ("2001::1", False),
        ("ff05::2", False),
        ("fec0::1", False),
    ],
)
def test_public_means_globally_routable_whatever_python_version(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize("url", ["http://example.com/hook", "http://10.0.0.8/hook"])
@pytest.mark.parametrize("allow_private", [False, True])
def test_plain_http_is_refused_when_https_is_required(url: str, allow_private: bool) -> None:
    policy = CallbackPolicy(allow_private=allow_private, require_https=True)

    with pytest.raises(CallbackRefused, match=r"https://.*RELAY_REQUIRE_HTTPS=true"):
        policy.validate(url)
    assert policy.validate("https://example.com/hook") == "https://example.com/hook"


def test_the_allowlist_opens_networks_and_host_names_and_nothing_else() -> None:
    hosts, networks = parse_allowlist(["10.0.0.0/8", "fd00::/8", "LOCALHOST.", "192.168.1.20"])
    policy = CallbackPolicy(allowed_hosts=hosts, allowed_networks=networks)

    for url in (
        "http://10.1.2.3/hook",
        "http://0xa.1/hook",  # 10.0.0.1
        "http://[::ffff:10.1.2.3]/hook",
        "http://[fd00::5]/hook",
        "http://localhost:8080/hook",
        "http://192.168.1.20/hook",
    ):
        assert policy.validate(url) == url
    for url in (
        "http://192.168.1.21/hook",
        "http://127.0.0.1/hook",
        "http://169.254.169.254/",
        "http://api.localhost/hook",
    ):
        with pytest.raises(CallbackRefused, match="RELAY_CALLBACK_ALLOWLIST"):
            policy.validate(url)


def test_allowlist_entries_are_normalized() -> None:
    hosts, networks = parse_allowlist(
        [" Hooks.Internal. ", "", "10.1.2.3/8", "127.1", "[::1]", "bücher.example"]
    )

    assert hosts == {"hooks.internal", "xn--bcher-kva.example"}
    assert [str(network) for network in networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]


@pytest.mark.parametrize(
    "entry", ["http://hooks.internal", "10.0.0.0/33", "hooks internal", "hooks.internal:80", "a@b"]
)
def test_an_allowlist_entry_that_is_neither_a_name_nor_a_network_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor a network"):
        parse_allowlist([entry])
