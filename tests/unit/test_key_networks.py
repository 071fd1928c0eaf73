"""The network an address counts in for "used from a new network" (IPv4 /24, IPv6 /64, mapped IPv4 as IPv4), and
the usage buffer's bounded note of the networks each key was used from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.keys import usage
from app.keys.owner_alerts import Sighting, network_of
from app.keys.usage import NETWORKS_PER_KEY, Pending


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


AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_the_buffer_keeps_a_few_networks_per_key_and_counts_the_rest():
    pending = Pending()
    for number in range(NETWORKS_PER_KEY + 2):
        pending.note_network(1, f"10.0.{number}.0/24", Sighting(f"10.0.{number}.1", AT))
    assert list(pending.networks[1]) == [f"10.0.{number}.0/24" for number in range(NETWORKS_PER_KEY)]
    assert pending.dropped_networks == 2


def test_the_buffer_keeps_the_earliest_sighting_of_a_network():
    pending = Pending()
    pending.note_network(1, "10.0.0.0/24", Sighting("10.0.0.2", AT))
    pending.note_network(1, "10.0.0.0/24", Sighting("10.0.0.1", AT - timedelta(seconds=1)))
    pending.note_network(1, "10.0.0.0/24", Sighting("10.0.0.3", AT + timedelta(seconds=1)))
    assert pending.networks[1]["10.0.0.0/24"].ip == "10.0.0.1"


def test_the_buffer_holds_networks_for_a_bounded_number_of_keys(monkeypatch):
    monkeypatch.setattr(usage, "MAX_NETWORK_KEYS", 3)
    pending = Pending()
    for key_id in range(5):
        pending.note_network(key_id, "10.0.0.0/24", Sighting("10.0.0.1", AT))
    pending.note_network(0, "10.0.1.0/24", Sighting("10.0.1.1", AT))  # a key it holds already still gets one
    assert sorted(pending.networks) == [0, 1, 2] and len(pending.networks[0]) == 2
    assert pending.dropped_networks == 2
