"""The network an address counts in for "used from a new network": IPv4 /24, IPv6 /64, mapped IPv4 as IPv4."""

from __future__ import annotations

import pytest

from app.keys.owner_alerts import network_of


@pytest.mark.parametrize(("ip", "network"), [
    ("203.0.113.7", "203.0.113.0/24"),
    ("203.0.113.255", "203.0.113.0/24"),
    ("203.0.114.1", "203.0.114.0/24"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:0DB8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.9", "203.0.113.0/24"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::1", "::/64"),
])
def test_addresses_fall_in_their_network(ip, network):
    assert network_of(ip) == network


@pytest.mark.parametrize("ip", ["", "unknown", "203.0.113", "203.0.113.7/24", "2001:db8::g", "1.2.3.4\n"])
def test_what_is_not_an_address_has_no_network(ip):
    assert network_of(ip) is None
