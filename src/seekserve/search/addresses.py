"""Which addresses the fetcher may connect to: the SSRF policy, pure functions over IP addresses.

A page URL comes from a search result, which anyone on the web can shape. Without this policy a
result (or a redirect, or a DNS name) pointing at 127.0.0.1, 10.0.0.0/8 or 169.254.169.254 would make
the server fetch its own admin endpoints, the intranet, or the cloud's credentials for the model to
read back. So every address a host resolves to is classified, and anything but a public unicast
address is refused unless the allow-list (SearchConfig.allow_hosts) opens it:

    host name listed (`wiki.corp`, `*.corp`)  -> any address it resolves to, except cloud metadata
    address / CIDR listed (`10.1.2.3`, `10.0.0.0/8`) -> those addresses, except cloud metadata
    cloud metadata (169.254.169.254, fd00:ec2::254, 100.100.100.200, metadata.google.internal)
                                              -> only when the address or the metadata name itself is listed

IPv4 addresses inside IPv6 (::ffff:a.b.c.d, 64:ff9b::a.b.c.d, 2002:a.b.c.d::) are judged as the IPv4
address they carry.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_NAMES",
    "AllowList",
    "Refusal",
    "classify",
    "normalize_host",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598), not in is_private
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refusal(StrEnum):
    """Why a URL was not fetched (FetchRefused.reason; usable as a metric label)."""

    SCHEME = "scheme"
    """Not http or https."""
    BAD_URL = "bad_url"
    """No host, user credentials in the URL, or a URL that does not parse."""
    METADATA = "metadata"
    """A cloud metadata endpoint (by address or name)."""
    LOOPBACK = "loopback"
    PRIVATE = "private"
    """RFC 1918, fc00::/7 (unique local) and the other special-use ranges Python calls private."""
    LINK_LOCAL = "link_local"
    SHARED = "shared"
    """100.64.0.0/10, carrier-grade NAT."""
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"
    NOT_GLOBAL = "not_global"
    """Any other address that is not globally routable."""


def normalize_host(host: str) -> str:
    """Lowercase, without a trailing dot or IPv6 brackets: the form names and lists are compared in."""
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> Refusal | None:
    """The refusal an address earns on its own, or None for a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        address = _carried_ipv4(address) or address
    checks = (
        (address in METADATA_ADDRESSES, Refusal.METADATA),
        (address.is_loopback, Refusal.LOOPBACK),
        (address.is_link_local, Refusal.LINK_LOCAL),
        (address.is_multicast, Refusal.MULTICAST),
        (address.is_unspecified, Refusal.UNSPECIFIED),
        (address in _SHARED, Refusal.SHARED),
        (address.is_reserved, Refusal.RESERVED),
        (address.is_private, Refusal.PRIVATE),
        (not address.is_global, Refusal.NOT_GLOBAL),
    )
    return next((reason for hit, reason in checks if hit), None)


@dataclass(frozen=True)
class AllowList:
    """SearchConfig.allow_hosts, parsed: what may be reached although it is not public."""

    names: frozenset[str] = frozenset()
    """Host names listed exactly."""
    suffixes: tuple[str, ...] = ()
    """`.corp.example` for an entry `*.corp.example` (its subdomains, not itself)."""
    addresses: frozenset[IPAddress] = frozenset()
    """Single addresses listed (an IP, or a /32 or /128 network)."""
    networks: tuple[IPNetwork, ...] = ()
    """Networks of more than one address."""

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> AllowList:
        """Entries already checked by SearchConfig (check_host_pattern)."""
        names, suffixes, addresses, networks = set(), [], set(), []
        for entry in map(normalize_host, entries):
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if entry.startswith("*."):
                    suffixes.append(entry[1:])
                else:
                    names.add(entry)
                continue
            if network.num_addresses == 1:
                addresses.add(network.network_address)
            else:
                networks.append(network)
        return cls(frozenset(names), tuple(suffixes), frozenset(addresses), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host in self.names or host.endswith(self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        return address in self.addresses or any(address in n for n in self.networks)


def refusal(host: str, address: IPAddress, allow: AllowList) -> Refusal | None:
    """Why `host` (normalized) resolving to `address` may not be fetched, or None if it may."""
    reason = classify(address)
    if reason is None:
        return None
    if reason is Refusal.METADATA:
        named = host in METADATA_NAMES and host in allow.names
        return None if named or address in allow.addresses else reason
    return None if allow.allows_name(host) or allow.allows_address(address) else reason
