"""The rules a key's settings must follow: names, expiry within the lifetime policy, IP allowlists, limits."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

# The longest span of days any input may name (a lifetime, a "within" filter): ten years.
MAX_DAYS = 3650
# A key made without an expiry lives this long (within MAX_KEY_LIFETIME_DAYS), on every face.
DEFAULT_LIFETIME_DAYS = 90
# Expired keys stay in the renewal list this long, so their owners can still renew them from there.
EXPIRED_LISTED_DAYS = 30
# A renewal reaches at least this far, and at least twice RENEWAL_WARNING_DAYS, so a renewed key leaves the list.
MIN_RENEWAL_DAYS = 30
NAME_LENGTH = 100
DESCRIPTION_LENGTH = 500
REASON_LENGTH = 500
MAX_ALLOWED_NETWORKS = 100
MAX_RATE_LIMIT = 1_000_000
MAX_REMAINING_USES = 2_000_000_000
# Control characters: none in a name (one line, shown in tables and in `flask keys list`), and only tabs and line
# breaks in longer text. NUL above all: PostgreSQL cannot store it at all.
NAME_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class KeyInputError(ValueError):
    """A setting a key cannot have; `field` names it, `message` says why in words a person can act on."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _refuse_controls(field: str, text: str, controls: re.Pattern) -> str:
    if controls.search(text):
        raise KeyInputError(field, "Remove the control characters (such as NUL or escape) from it.")
    return text


def clean_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise KeyInputError("name", "Give the key a name, so you can tell it apart later.")
    if len(name) > NAME_LENGTH:
        raise KeyInputError("name", f"Use at most {NAME_LENGTH} characters.")
    return _refuse_controls("name", name, NAME_CONTROLS)


def clean_description(description: str | None) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_LENGTH:
        raise KeyInputError("description", f"Use at most {DESCRIPTION_LENGTH} characters.")
    return _refuse_controls("description", description, TEXT_CONTROLS)


def clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_LENGTH:
        raise KeyInputError("reason", f"Use at most {REASON_LENGTH} characters.")
    return _refuse_controls("reason", reason, TEXT_CONTROLS)


def check_expiry(expires_at: datetime | None, now: datetime, max_days: int, allow_never: bool) -> datetime | None:
    """`expires_at` when it is in the future and within the lifetime policy; otherwise KeyInputError."""
    if expires_at is None:
        if not allow_never:
            raise KeyInputError("expires_at", f"Choose an expiry date: keys must expire within {max_days} days.")
        return None
    if expires_at.tzinfo is None:
        raise KeyInputError("expires_at", "Give the expiry with a time zone (for example 2027-01-31T00:00:00Z).")
    if expires_at <= now:
        raise KeyInputError("expires_at", "The expiry must be in the future.")
    if expires_at > now + timedelta(days=max_days, minutes=1):  # a minute's slack for the form's round trip
        raise KeyInputError("expires_at", f"Keys may live at most {max_days} days.")
    return expires_at


def clean_networks(entries: Iterable[str] | str | None) -> tuple[str, ...]:
    """Addresses and CIDR ranges (IPv4 and IPv6) in canonical form; KeyInputError names the first bad one."""
    if entries is None:
        return ()
    if isinstance(entries, str):
        entries = entries.replace(",", "\n").splitlines()
    networks: list[str] = []
    for entry in entries:
        entry = str(entry).strip()
        if not entry:
            continue
        try:
            network = _unmapped(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise KeyInputError("allowed_ips", f"{entry!r} is not an IP address or CIDR range "
                                               "(such as 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32).") from None
        if str(network) not in networks:
            networks.append(str(network))
    if len(networks) > MAX_ALLOWED_NETWORKS:
        raise KeyInputError("allowed_ips", f"Use at most {MAX_ALLOWED_NETWORKS} addresses or ranges.")
    return tuple(networks)


def _unmapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network):
    """An IPv4-mapped IPv6 range (::ffff:10.1.2.3) as the IPv4 range it means, since clients are compared as IPv4."""
    if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped is not None:
        return ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    return network


def ip_allowed(client_ip: str | None, networks: Iterable[str]) -> bool:
    networks = tuple(networks)
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in networks)


def networks_within(networks: Iterable[str], bounds: Iterable[str]) -> bool:
    """True when every client `networks` admits is also admitted by `bounds`; an empty list admits anywhere.

    Checked as ip_allowed() compares clients: an IPv4-mapped range means its IPv4 range, and IPv4 and IPv6 ranges
    never contain one another. Ranges of `bounds` that together cover a network (two adjacent /25s, a /24) count.
    """
    outer = [_unmapped(ipaddress.ip_network(bound, strict=False)) for bound in bounds]
    if not outer:
        return True
    inner = [_unmapped(ipaddress.ip_network(network, strict=False)) for network in networks]
    if not inner:
        return False
    merged = [*ipaddress.collapse_addresses(bound for bound in outer if bound.version == 4),
              *ipaddress.collapse_addresses(bound for bound in outer if bound.version == 6)]
    return all(any(network.version == bound.version and network.subnet_of(bound) for bound in merged)
               for network in inner)


def clean_limit(value: int | str | None, field: str, upper: int) -> int | None:
    """An optional whole number from 1 to `upper`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise KeyInputError(field, "Must be a whole number.")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: float("inf")
        raise KeyInputError(field, "Must be a whole number.") from None
    if isinstance(value, float) and value != number:
        raise KeyInputError(field, "Must be a whole number.")
    if not 1 <= number <= upper:
        raise KeyInputError(field, f"Must be between 1 and {upper:,}.")
    return number


def renewed_expiry(created_at: datetime, expires_at: datetime | None, now: datetime, max_days: int,
                   min_days: int) -> datetime:
    """Where a one-click renewal moves the expiry: the key's original lifetime again from now, at least `min_days`
    (so a renewed key leaves the renewal list) and at most `max_days`. A key that never expired gets `max_days`."""
    longest = timedelta(days=max_days)
    lifetime = longest if expires_at is None else expires_at - created_at
    return now + min(max(lifetime, timedelta(days=min_days)), longest)
