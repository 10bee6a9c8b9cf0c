"""Who the client is when a reverse proxy stands in front: ``--trusted-proxy``. Pure.

Behind a TLS proxy every connection comes from the proxy's address, and the per-address
limits (connections, joins a minute) would hold for all users together. A proxy names the
client it serves in ``X-Forwarded-For``; each proxy on the way appends the address it saw, so
the header reads ``client, proxy1, proxy2`` and the connection itself comes from the last one.

Only the right-hand end of that list can be believed: anyone may send the header, and a proxy
appends to whatever the client wrote. So, as in most servers that get this right:

- From a peer that is **not** a trusted proxy, the header is ignored: the client is the peer.
- From a trusted proxy, walk the list from the right and take the first address that is not
  itself a trusted proxy. If every address is trusted, the left-most one is the client.
- An entry that is not an address (garbage, ``unknown``, an obfuscated name) stops the walk:
  the client is the last address we could vouch for, the nearest trusted hop. A forged entry
  further left never matters, since the walk stops at the first untrusted address.

Addresses are compared and counted in one form: an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``,
what a dual-stack socket reports for an IPv4 client) is the IPv4 address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PORT = re.compile(r"^(?P<host>[0-9.]+):\d{1,5}$")
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\](?::\d{1,5})?$")


def parse_address(text: str) -> Address | None:
    """One address as proxies write them (``1.2.3.4``, ``1.2.3.4:5678``, ``::1``,
    ``[::1]:443``), IPv4-mapped IPv6 unmapped; None if it is not an address."""
    text = text.strip()
    match = _BRACKETED.match(text) or _PORT.match(text)
    if match:
        text = match["host"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalize(text: str) -> str:
    """The form an address is counted under (``?`` or other non-addresses are kept as is)."""
    address = parse_address(text)
    return text if address is None else str(address)


def parse_network(text: str) -> Network:
    """``10.0.0.0/8``, ``fd00::/8``, or one address (``127.0.0.1``: a /32).

    Raises ValueError with a message fit for the command line."""
    spec = text.strip()
    try:
        network = ipaddress.ip_network(spec)
    except ValueError:
        try:
            ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise ValueError(f"not an address or network: {text!r}") from None
        loose = ipaddress.ip_network(spec, strict=False)
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from None
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def split_specs(text: str) -> list[str]:
    """The environment variable's form: networks separated by commas or white space."""
    return [part for part in re.split(r"[\s,]+", text) if part]


@dataclass(frozen=True)
class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed (none: the header never is)."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TrustedProxies:
        return cls(tuple(parse_network(spec) for spec in specs))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | Address) -> bool:
        ip = parse_address(address) if isinstance(address, str) else address
        return ip is not None and any(ip in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address for a connection from ``peer`` carrying these
        ``X-Forwarded-For`` header values (each may list several, comma-separated)."""
        current = parse_address(peer)
        if current is None or not self.trusts(current):
            return normalize(peer)
        hops = [entry for value in forwarded_for for entry in value.split(",")]
        for entry in reversed(hops):
            hop = parse_address(entry)
            if hop is None:
                break  # unreadable: keep the nearest address we could vouch for
            current = hop
            if not self.trusts(hop):
                break
        return str(current)
