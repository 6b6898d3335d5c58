from __future__ import annotations

import ipaddress

import pytest

from seekserve.search.addresses import AllowList, Refusal, classify, normalize_host, refusal


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.215.14", None),
        ("2606:4700::6810:85e5", None),
        ("127.0.0.1", Refusal.LOOPBACK),
        ("127.255.0.9", Refusal.LOOPBACK),
        ("::1", Refusal.LOOPBACK),
        ("10.0.0.1", Refusal.PRIVATE),
        ("172.16.5.4", Refusal.PRIVATE),
        ("192.168.0.1", Refusal.PRIVATE),
        ("fc00::1", Refusal.PRIVATE),
        ("fdff:ffff::1", Refusal.PRIVATE),
        ("169.254.0.1", Refusal.LINK_LOCAL),
        ("fe80::1", Refusal.LINK_LOCAL),
        ("100.64.0.1", Refusal.SHARED),
        ("100.127.255.254", Refusal.SHARED),
        ("224.0.0.251", Refusal.MULTICAST),
        ("ff02::1", Refusal.MULTICAST),
        ("0.0.0.0", Refusal.UNSPECIFIED),
        ("::", Refusal.UNSPECIFIED),
        ("240.0.0.1", Refusal.RESERVED),
        ("169.254.169.254", Refusal.METADATA),
        ("169.254.170.2", Refusal.METADATA),
        ("fd00:ec2::254", Refusal.METADATA),
        ("100.100.100.200", Refusal.METADATA),
        ("::ffff:127.0.0.1", Refusal.LOOPBACK),
        ("::ffff:169.254.169.254", Refusal.METADATA),
        ("64:ff9b::a00:1", Refusal.PRIVATE),  # NAT64 of 10.0.0.1
        ("64:ff9b::5db8:d70e", None),  # NAT64 of 93.184.215.14
        ("2002:a00:1::", Refusal.PRIVATE),  # 6to4 of 10.0.0.1
        ("192.0.0.1", Refusal.PRIVATE),
        ("198.18.0.1", Refusal.PRIVATE),
    ],
)
def test_classify(address: str, expected: Refusal | None) -> None:
    assert classify(ipaddress.ip_address(address)) is expected


def test_allow_list_parses_names_wildcards_addresses_and_networks() -> None:
    allow = AllowList.parse(("Wiki.Corp.", "*.lab.example", "10.1.2.3", "10.9.0.0/16", "fd00::5/128"))
    assert allow.names == frozenset({"wiki.corp"})
    assert allow.suffixes == (".lab.example",)
    assert allow.addresses == frozenset({ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("fd00::5")})
    assert allow.networks == (ipaddress.ip_network("10.9.0.0/16"),)
    assert allow.allows_name("a.lab.example") and not allow.allows_name("lab.example")
    assert allow.allows_address(ipaddress.ip_address("10.9.200.1"))
    assert not allow.allows_address(ipaddress.ip_address("10.1.2.4"))


def test_refusal_applies_the_allow_list() -> None:
    allow = AllowList.parse(("wiki.corp", "*.lab.example", "10.9.0.0/16", "169.254.0.0/16"))
    private = ipaddress.ip_address("10.0.0.5")
    assert refusal("wiki.corp", private, allow) is None
    assert refusal("x.lab.example", private, allow) is None
    assert refusal("other.corp", private, allow) is Refusal.PRIVATE
    assert refusal("other.corp", ipaddress.ip_address("10.9.1.1"), allow) is None
    assert refusal("public.example", ipaddress.ip_address("93.184.215.14"), allow) is None


def test_metadata_opens_only_when_named_exactly() -> None:
    metadata = ipaddress.ip_address("169.254.169.254")
    assert (
        refusal("wiki.corp", metadata, AllowList.parse(("wiki.corp", "169.254.0.0/16"))) is Refusal.METADATA
    )
    assert refusal("wiki.corp", metadata, AllowList.parse(("169.254.169.254",))) is None
    named = AllowList.parse(("metadata.google.internal",))
    assert refusal("metadata.google.internal", metadata, named) is None


def test_normalize_host() -> None:
    assert normalize_host(" Example.COM. ") == "example.com"
    assert normalize_host("[::1]") == "::1"
