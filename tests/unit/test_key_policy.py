"""The rules for a key's settings: names, expiry policy, IP allowlists and limits, without an app."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.keys.policy import (
    DESCRIPTION_LENGTH,
    MAX_ALLOWED_NETWORKS,
    NAME_LENGTH,
    REASON_LENGTH,
    KeyInputError,
    check_expiry,
    clean_description,
    clean_limit,
    clean_name,
    clean_networks,
    clean_reason,
    ip_allowed,
    networks_within,
    renewed_expiry,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_key_input_error_is_a_value_error_carrying_field_and_message():
    error = KeyInputError("name", "Too long.")
    assert isinstance(error, ValueError)
    assert (error.field, error.message, str(error)) == ("name", "Too long.", "name: Too long.")


# -- name, description, reason --------------------------------------------------------------------------------------

def test_limits_match_the_spec():
    assert (NAME_LENGTH, DESCRIPTION_LENGTH, REASON_LENGTH, MAX_ALLOWED_NETWORKS) == (100, 500, 500, 100)


@pytest.mark.parametrize("name", [None, "", " ", "   \t\n  "])
def test_name_is_required(name):
    with pytest.raises(KeyInputError) as caught:
        clean_name(name)
    assert caught.value.field == "name"
    assert "name" in caught.value.message


def test_name_is_stripped():
    assert clean_name("  deploy bot \n") == "deploy bot"


def test_name_of_100_characters_is_accepted_and_101_refused():
    assert clean_name("n" * 100) == "n" * 100
    assert clean_name("  " + "n" * 100 + "  ") == "n" * 100  # length counts after stripping
    with pytest.raises(KeyInputError) as caught:
        clean_name("n" * 101)
    assert caught.value.field == "name"
    assert "100" in caught.value.message


@pytest.mark.parametrize(("cleaner", "field", "limit"), [
    (clean_description, "description", 500),
    (clean_reason, "reason", 500),
])
def test_optional_text_is_stripped_and_limited(cleaner, field, limit):
    assert cleaner(None) == ""
    assert cleaner("   ") == ""
    assert cleaner("  for the nightly export \n") == "for the nightly export"
    assert cleaner("d" * limit) == "d" * limit
    assert cleaner(" " + "d" * limit + " ") == "d" * limit
    with pytest.raises(KeyInputError) as caught:
        cleaner("d" * (limit + 1))
    assert caught.value.field == field
    assert str(limit) in caught.value.message


@pytest.mark.parametrize(("cleaner", "field"), [
    (clean_name, "name"), (clean_description, "description"), (clean_reason, "reason")])
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\x08"])
def test_control_characters_are_refused(cleaner, field, control):
    """NUL above all: PostgreSQL cannot store it, so it would fail the write instead of being refused."""
    with pytest.raises(KeyInputError) as caught:
        cleaner(f"deploy{control}bot")
    assert caught.value.field == field
    assert "control characters" in caught.value.message


def test_longer_text_may_have_tabs_and_line_breaks_but_a_name_may_not():
    assert clean_description("line one\r\nline\ttwo") == "line one\r\nline\ttwo"
    assert clean_reason("leaked\nin a log") == "leaked\nin a log"
    with pytest.raises(KeyInputError):
        clean_name("deploy\nbot")


# -- expiry ---------------------------------------------------------------------------------------------------------

def test_never_expiring_key_is_refused_unless_allowed():
    with pytest.raises(KeyInputError) as caught:
        check_expiry(None, NOW, max_days=90, allow_never=False)
    assert caught.value.field == "expires_at"
    assert "90 days" in caught.value.message
    assert check_expiry(None, NOW, max_days=90, allow_never=True) is None


def test_naive_expiry_is_refused():
    with pytest.raises(KeyInputError) as caught:
        check_expiry(datetime(2026, 3, 10, 12, 0), NOW, max_days=90, allow_never=True)
    assert caught.value.field == "expires_at"
    assert "time zone" in caught.value.message


@pytest.mark.parametrize("delta", [timedelta(0), -timedelta(seconds=1), -timedelta(days=400)])
def test_expiry_now_or_in_the_past_is_refused(delta):
    with pytest.raises(KeyInputError) as caught:
        check_expiry(NOW + delta, NOW, max_days=90, allow_never=True)
    assert caught.value.field == "expires_at"
    assert "future" in caught.value.message


@pytest.mark.parametrize("max_days", [1, 30, 90, 365])
def test_expiry_exactly_at_the_maximum_lifetime_is_accepted(max_days):
    expires_at = NOW + timedelta(days=max_days)
    assert check_expiry(expires_at, NOW, max_days=max_days, allow_never=False) == expires_at


@pytest.mark.parametrize("max_days", [1, 30, 90, 365])
@pytest.mark.parametrize("extra", [timedelta(minutes=2), timedelta(days=1), timedelta(days=3650)])
def test_expiry_beyond_the_maximum_lifetime_is_refused_naming_the_days(max_days, extra):
    with pytest.raises(KeyInputError) as caught:
        check_expiry(NOW + timedelta(days=max_days) + extra, NOW, max_days=max_days, allow_never=True)
    assert caught.value.field == "expires_at"
    assert f"{max_days} days" in caught.value.message


def test_expiry_in_the_near_future_is_returned_unchanged():
    expires_at = NOW + timedelta(seconds=1)
    assert check_expiry(expires_at, NOW, max_days=90, allow_never=False) is expires_at


def test_expiry_in_another_time_zone_is_compared_as_an_instant():
    plus_two = timezone(timedelta(hours=2))
    at_limit = (NOW + timedelta(days=30)).astimezone(plus_two)
    assert check_expiry(at_limit, NOW, max_days=30, allow_never=False) == at_limit
    # 13:00 at UTC+2 is 11:00 UTC: an hour before NOW, so in the past.
    with pytest.raises(KeyInputError):
        check_expiry(datetime(2026, 3, 1, 13, 0, tzinfo=plus_two), NOW, max_days=30, allow_never=False)


# -- allowed networks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "expected"), [
    ("203.0.113.7", "203.0.113.7/32"),
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("10.0.0.1/8", "10.0.0.0/8"),
    ("192.168.1.77/24", "192.168.1.0/24"),
    ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("2001:db8::1", "2001:db8::1/128"),
    ("2001:DB8:0:0::/32", "2001:db8::/32"),
    ("2001:db8::1/32", "2001:db8::/32"),
    ("::/0", "::/0"),
    ("  10.1.2.3  ", "10.1.2.3/32"),
])
def test_networks_are_normalised(entry, expected):
    assert clean_networks([entry]) == (expected,)


def test_no_networks():
    assert clean_networks(None) == ()
    assert clean_networks([]) == ()
    assert clean_networks("") == ()
    assert clean_networks(" \n , \n") == ()


def test_duplicates_are_removed_keeping_the_first_order():
    entries = ["192.168.0.0/16", "10.0.0.0/8", "10.1.1.1/8", "192.168.0.0/16", "2001:db8::/32", "2001:DB8::/32"]
    assert clean_networks(entries) == ("192.168.0.0/16", "10.0.0.0/8", "2001:db8::/32")
    assert clean_networks(["1.2.3.4", "1.2.3.4/32"]) == ("1.2.3.4/32",)


def test_comma_and_newline_separated_text_with_blank_lines():
    text = "10.0.0.0/8, 203.0.113.7\n\n  \r\n2001:db8::/32,,\n198.51.100.0/24\n"
    assert clean_networks(text) == ("10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32", "198.51.100.0/24")


def test_blank_entries_in_a_list_are_ignored():
    assert clean_networks(["", "  ", "10.0.0.0/8", "\n"]) == ("10.0.0.0/8",)


@pytest.mark.parametrize("bad", [
    "not-an-ip", "10.0.0.300", "10.0.0.0/33", "10.0.0/8", "2001:db8::/129", "2001:db8:::1", "10.0.0.0/-1",
    "10.0.0.0/8/8", "localhost", "1.2.3.4:80",
])
def test_bad_entry_is_refused_and_named(bad):
    with pytest.raises(KeyInputError) as caught:
        clean_networks(["10.0.0.0/8", bad, "also-bad"])
    assert caught.value.field == "allowed_ips"
    assert repr(bad) in caught.value.message
    assert "also-bad" not in caught.value.message  # the first bad entry


def test_bad_entry_in_text_is_named_without_surrounding_whitespace():
    with pytest.raises(KeyInputError) as caught:
        clean_networks("10.0.0.0/8\n  bogus  \n")
    assert caught.value.field == "allowed_ips"
    assert "'bogus'" in caught.value.message


def test_at_most_100_networks():
    hundred = [f"10.0.{i}.0/24" for i in range(100)]
    assert len(clean_networks(hundred)) == 100
    assert len(clean_networks("\n".join(hundred))) == 100
    with pytest.raises(KeyInputError) as caught:
        clean_networks([*hundred, "192.168.0.1"])
    assert caught.value.field == "allowed_ips"
    assert "100" in caught.value.message


# -- ip_allowed -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("client_ip", ["10.1.2.3", "2001:db8::1", "::ffff:10.1.2.3", "", "garbage", None])
def test_empty_allowlist_allows_anything(client_ip):
    assert ip_allowed(client_ip, ()) is True
    assert ip_allowed(client_ip, []) is True
    assert ip_allowed(client_ip, iter([])) is True


NETWORKS = ("10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32")


@pytest.mark.parametrize(("client_ip", "allowed"), [
    ("10.0.0.0", True),
    ("10.255.255.255", True),
    ("10.1.2.3", True),
    ("203.0.113.7", True),
    ("203.0.113.8", False),
    ("11.0.0.0", False),
    ("9.255.255.255", False),
    ("192.168.1.1", False),
    ("2001:db8::1", True),
    ("2001:db8:ffff:ffff::1", True),
    ("2001:db9::1", False),
    ("::1", False),
    ("::ffff:10.1.2.3", True),
    ("::ffff:203.0.113.7", True),
    ("::ffff:11.1.2.3", False),
])
def test_client_ip_against_allowlist(client_ip, allowed):
    assert ip_allowed(client_ip, NETWORKS) is allowed


def test_ip_allowed_accepts_the_output_of_clean_networks():
    networks = clean_networks("10.0.0.1/8\n2001:db8::/32")
    assert ip_allowed("10.9.9.9", networks) is True
    assert ip_allowed("2001:db8::7", networks) is True
    assert ip_allowed("172.16.0.1", networks) is False


@pytest.mark.parametrize("client_ip", [None, "", "garbage", "10.0.0.256", "10.1.2.3/32", " 10.1.2.3", "10.1.2.3:443"])
def test_unreadable_client_ip_is_refused_when_there_is_an_allowlist(client_ip):
    assert ip_allowed(client_ip, ("0.0.0.0/0", "::/0")) is False


def test_allowlisted_ipv4_mapped_address_admits_that_client():
    networks = clean_networks("::ffff:10.1.2.3")
    assert ip_allowed("::ffff:10.1.2.3", networks) or ip_allowed("10.1.2.3", networks)


# -- networks_within --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("networks", "bounds", "within"), [
    (["10.1.0.0/16"], ["10.0.0.0/8"], True),
    (["10.0.0.0/8"], ["10.0.0.0/8"], True),  # the same is not wider
    (["10.1.2.3/32", "10.9.0.0/16"], ["10.0.0.0/8"], True),
    (["10.0.0.0/7"], ["10.0.0.0/8"], False),
    (["10.1.0.0/16", "11.0.0.1/32"], ["10.0.0.0/8"], False),  # every network must be inside
    (["127.0.0.1/32"], ["10.0.0.0/8", "127.0.0.0/8"], True),  # inside any one of them
    (["10.0.0.0/24"], ["10.0.0.0/25", "10.0.0.128/25"], True),  # covered only by the two together
    (["10.0.0.0/24"], ["10.0.0.0/25", "10.0.1.0/25"], False),
    ([], ["10.0.0.0/8"], False),  # an empty allowlist means anywhere
    (["0.0.0.0/0"], ["10.0.0.0/8"], False),
    ([], [], True),  # no bound
    (["0.0.0.0/0", "::/0"], [], True),
    (["2001:db8:1::/48"], ["2001:db8::/32"], True),
    (["2001:db9::/48"], ["2001:db8::/32"], False),
    (["::/0"], ["2001:db8::/32"], False),
    (["10.0.0.0/8"], ["::/0"], False),  # IPv4 is never inside an IPv6 range: clients are compared as IPv4
    (["2001:db8::/32"], ["0.0.0.0/0"], False),
    (["::ffff:10.1.2.3"], ["10.0.0.0/8"], True),  # a mapped address is the IPv4 address it means
    (["::ffff:10.0.0.0/104"], ["10.0.0.0/8"], True),
    (["::ffff:11.0.0.0/104"], ["10.0.0.0/8"], False),
    (["10.1.2.3"], ["::ffff:10.0.0.0/104"], True),
    (["10.1.2.3"], ["::ffff:0:0/96"], True),  # the whole mapped range is all of IPv4
    (["::ffff:0:0/96"], ["10.0.0.0/8"], False),
    (["10.1.2.3"], ["::/64"], False),  # ::/64 holds ::ffff:0:0/96, but an IPv4 client never matches it
])
def test_networks_within_bounds(networks, bounds, within):
    assert networks_within(networks, bounds) is within


@pytest.mark.parametrize(("networks", "bounds"), [
    (["10.1.0.0/16", "::ffff:10.2.0.0/112"], ["10.0.0.0/8"]),
    (["10.0.0.0/24"], ["10.0.0.0/25", "10.0.0.128/25"]),
    (["2001:db8:1::/48"], ["2001:db8::/32", "192.0.2.0/24"]),
])
def test_every_client_a_contained_allowlist_admits_is_admitted_by_the_bound(networks, bounds):
    assert networks_within(networks, bounds)
    for network in clean_networks(networks):
        ends = ipaddress.ip_network(network)
        for address in (ends[0], ends[-1]):
            assert ip_allowed(str(address), clean_networks(bounds)), address


def test_networks_within_accepts_the_output_of_clean_networks_and_the_stored_text():
    bounds = clean_networks("10.0.0.0/8\n2001:db8::/32")
    assert networks_within(clean_networks("10.0.0.1/16, 2001:db8::1"), bounds)
    assert not networks_within(clean_networks("10.0.0.0/8, 2001:db8::/31"), bounds)


# -- limits ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, "", "   "])
def test_no_limit(value):
    assert clean_limit(value, "rate_limit", 1000) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5), (5, 5), (" 5 ", 5), ("1", 1), (1, 1), (1000, 1000), ("1000", 1000), (2.0, 2),
])
def test_whole_numbers_in_range(value, expected):
    result = clean_limit(value, "rate_limit", 1000)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [0, -1, "0", "-1", 1001, "1001", 10 ** 30])
def test_out_of_range_is_refused_naming_the_range(value):
    with pytest.raises(KeyInputError) as caught:
        clean_limit(value, "remaining_uses", 1000)
    assert caught.value.field == "remaining_uses"
    assert "1,000" in caught.value.message


@pytest.mark.parametrize("value", [True, False, 2.5, "2.5", "abc", "5 requests", float("nan"), [5], object()])
def test_non_whole_numbers_are_refused(value):
    with pytest.raises(KeyInputError) as caught:
        clean_limit(value, "rate_limit", 1000)
    assert caught.value.field == "rate_limit"
    assert "whole number" in caught.value.message


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_limits_are_refused_with_key_input_error(value):
    with pytest.raises(KeyInputError):
        clean_limit(value, "rate_limit", 1000)


# -- renewal -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lifetime_days", "expected_days"), [
    (90, 90),     # the original lifetime again
    (3, 30),      # at least the minimum, so the key leaves the renewal list
    (30, 30),
    (400, 365),   # never past the policy
])
def test_renewal_gives_the_original_lifetime_within_bounds(lifetime_days, expected_days):
    created = NOW - timedelta(days=lifetime_days - 2)
    renewed = renewed_expiry(created, created + timedelta(days=lifetime_days), NOW, max_days=365, min_days=30)
    assert renewed == NOW + timedelta(days=expected_days)


def test_renewing_a_key_without_expiry_gives_the_longest_lifetime():
    assert renewed_expiry(NOW, None, NOW, max_days=200, min_days=30) == NOW + timedelta(days=200)
