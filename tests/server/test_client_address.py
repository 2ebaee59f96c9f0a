"""Which address a request comes from: the peer, or a trusted proxy's X-Forwarded-For."""

from __future__ import annotations

import pytest

from bitnet_sdk.server.client_address import InvalidProxySetting, client_address


def _scope(peer: str, *forwarded: str) -> dict:
    return {"client": (peer, 5000),
            "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded]}


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("198.51.100.1", ["203.0.113.9"], "", "198.51.100.1"),            # no proxies configured
    ("198.51.100.1", ["203.0.113.9"], "10.0.0.0/8", "198.51.100.1"),  # peer not a proxy
    ("10.0.0.5", ["203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
    ("10.0.0.5", ["1.2.3.4, 203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),  # client's own entry
    ("10.0.0.5", ["1.2.3.4", "203.0.113.9, 10.0.0.7"], "10.0.0.0/8", "203.0.113.9"),
    ("10.0.0.5", ["10.0.0.9, 10.0.0.7"], "10.0.0.0/8", "10.0.0.9"),  # only proxies: the first
    ("10.0.0.5", ["garbage, 203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
    ("10.0.0.5", ["203.0.113.9, garbage"], "10.0.0.0/8", "10.0.0.5"),  # a proxy wrote junk
    ("10.0.0.5", [], "10.0.0.0/8", "10.0.0.5"),
    ("::1", ["[2001:db8::1]:443"], "::1", "2001:db8::1"),
    ("::ffff:10.0.0.5", ["203.0.113.9:1234"], "10.0.0.5", "203.0.113.9"),
])
def test_client_address(peer, forwarded, trusted, expected):
    assert client_address(_scope(peer, *forwarded), trusted) == expected


def test_a_bad_setting_is_refused():
    with pytest.raises(InvalidProxySetting):
        client_address(_scope("10.0.0.5"), "10.0.0.0/8, not-a-network")
