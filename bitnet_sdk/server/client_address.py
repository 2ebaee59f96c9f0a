"""Who is on the other end: the client address that throttles and budgets are keyed on.

The TCP peer, unless it is one of the operator's reverse proxies
(``Settings.trusted_proxies``): then ``X-Forwarded-For`` is read from the right,
skipping the trusted proxies' own addresses, and the first address not among
them is the client. Entries left of it were written by the client and are never
believed, so a client cannot choose its address by sending the header; from an
untrusted peer the header is ignored altogether.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["InvalidProxySetting", "client_address", "trusted_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidProxySetting(ValueError):
    """``trusted_proxies`` names something that is not an address or network."""


@functools.lru_cache(maxsize=8)
def trusted_networks(setting: str) -> tuple[Network, ...]:
    """The networks of a ``trusted_proxies`` setting (comma- or space-separated)."""
    networks = []
    for item in setting.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidProxySetting(f"trusted_proxies: {item!r} is not an address or "
                                      "network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            entries.extend(value.decode("latin-1").split(","))
    return entries


def client_address(scope: Mapping[str, Any], trusted_proxies: str) -> str | None:
    """The client's address for an ASGI ``scope`` (see the module docstring)."""
    client = scope.get("client")
    peer = _address(str(client[0])) if client else None
    networks = trusted_networks(trusted_proxies)
    if peer is None or not networks or not _trusted(peer, networks):
        return str(peer) if peer is not None else None
    hop = peer
    for entry in reversed(_forwarded_for(scope.get("headers") or ())):
        address = _address(entry)
        if address is None:
            break  # not written by a proxy of ours: nothing left of it is believed
        hop = address
        if not _trusted(address, networks):
            break
    return str(hop)
