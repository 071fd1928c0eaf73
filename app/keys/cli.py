"""`flask --app wsgi keys ...`: issue, list, rotate and revoke keys from a shell."""

from __future__ import annotations

import json
from datetime import timedelta

import click
from flask.cli import AppGroup

from app.accounts import service as accounts
from app.audit.service import Actor
from app.database import utcnow
from app.keys import policy, queries, reminders, service, verifiers
from app.keys.core import settings
from app.keys.policy import KeyInputError

keys_cli = AppGroup("keys", help="Create, list, rotate and revoke API keys.")


def _fail(error: Exception) -> click.ClickException:
    if isinstance(error, KeyInputError):
        return click.ClickException(f"{error.field}: {error.message}")
    return click.ClickException(str(error))


def _key(key_id: int):
    try:
        return queries.get_key(key_id)
    except queries.KeyNotFound as error:
        raise click.ClickException(str(error)) from None


def _as_dict(key) -> dict:
    def when(value):
        return value.isoformat() if value else None

    return {
        "id": key.id, "owner": key.owner.email, "name": key.name, "key": key.display_start,
        "status": key.status(utcnow()), "scopes": list(key.scopes), "created_at": when(key.created_at),
        "expires_at": when(key.expires_at), "last_used_at": when(key.last_used_at), "usage_count": key.usage_count,
        "allowed_ips": list(key.allowed_ips), "rate_limit": key.rate_limit, "remaining_uses": key.remaining_uses,
    }


@keys_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--description", default="", help="A longer note.")
@click.option("--scope", "scopes", multiple=True, help="A scope to grant; repeat for several.")
@click.option("--expires-in-days", type=int, default=None,
              help=f"Days until it expires (default {policy.DEFAULT_LIFETIME_DAYS}, at most MAX_KEY_LIFETIME_DAYS).")
@click.option("--no-expiry", is_flag=True, help="Never expires (only when ALLOW_NON_EXPIRING_KEYS is on).")
@click.option("--rate-limit", type=int, default=None, help="Requests per minute.")
@click.option("--remaining-uses", type=int, default=None, help="Number of requests before the key stops working.")
@click.option("--allowed-ip", "allowed_ips", multiple=True, help="An address or CIDR range; repeat for several.")
def create_key(email, name, description, scopes, expires_in_days, no_expiry, rate_limit, remaining_uses,
               allowed_ips) -> None:
    """Issue a key for the user with EMAIL. The key itself is printed alone on the last line, once."""
    owner = accounts.find_user(email)
    if owner is None:
        raise click.ClickException(f"no user with email {email!r}")
    if no_expiry and expires_in_days is not None:
        raise click.ClickException("give either --expires-in-days or --no-expiry")
    now = utcnow()
    if no_expiry:
        expires_at = None
    else:
        days = expires_in_days
        if days is None:
            days = settings().default_lifetime_days
        expires_at = now + timedelta(days=days)
    try:
        key, token = service.create(owner, name, scopes, expires_at, actor=Actor.cli(), description=description,
                                    allowed_ips=allowed_ips, rate_limit=rate_limit, remaining_uses=remaining_uses,
                                    now=now)
    except KeyInputError as error:
        raise _fail(error) from None
    click.echo(f"created key {key.id} ({key.display_start}) for {owner.email}; "
               f"expires {key.expires_at:%Y-%m-%d}" if key.expires_at else
               f"created key {key.id} ({key.display_start}) for {owner.email}; never expires", err=True)
    click.echo("This is the only time the key is shown. Store it now.", err=True)
    click.echo(token)


@keys_cli.command("list")
@click.option("--user", "email", default=None, help="Only this user's keys.")
@click.option("--json", "as_json", is_flag=True, help="JSON, one array.")
def list_keys(email, as_json) -> None:
    """List keys (never their secrets)."""
    owner = None
    if email is not None:
        owner = accounts.find_user(email)
        if owner is None:
            raise click.ClickException(f"no user with email {email!r}")
    rows = [_as_dict(key) for key in queries.keys_of(owner)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['key']}\t{row['status']}\t{row['owner']}\t{row['name']}\t"
                   f"{' '.join(row['scopes']) or '-'}\texpires {row['expires_at'] or 'never'}\t"
                   f"used {row['usage_count']}")


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
@click.option("--reason", default="", help="Why, for the audit log.")
def revoke_key(key_id, reason) -> None:
    """Revoke a key for good."""
    key = _key(key_id)
    try:
        service.revoke(key, reason, actor=Actor.cli())
    except (KeyInputError, service.KeyStateError) as error:
        raise _fail(error) from None
    click.echo(f"revoked key {key.id} ({key.display_start})")


@keys_cli.command("rotate")
@click.argument("key_id", type=int)
@click.option("--grace", type=click.Choice(list(service.GRACE_PERIODS)), default="none",
              help="How long the old secret keeps working.")
def rotate_key(key_id, grace) -> None:
    """Give a key a new secret; the new key is printed alone on the last line, once."""
    key = _key(key_id)
    try:
        token = service.rotate(key, grace, actor=Actor.cli())
    except (KeyInputError, service.KeyStateError) as error:
        raise _fail(error) from None
    click.echo(f"rotated key {key.id}; old secret valid for {grace}", err=True)
    click.echo("This is the only time the key is shown. Store it now.", err=True)
    click.echo(token)


verifiers_cli = AppGroup("verifiers", help="Issue, list, rotate and revoke verifier credentials for services.")


def _verifier(name: str):
    verifier = verifiers.find_verifier(name)
    if verifier is None:
        raise click.ClickException(f"no verifier named {name!r}")
    return verifier


def _issued(token: str) -> None:
    click.echo("This is the only time the credential is shown. Store it in the service's secrets now.", err=True)
    click.echo(token)


@verifiers_cli.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the service is, for the admins.")
def create_verifier(name, description) -> None:
    """Issue a credential for the service NAME (such as billing-service); it is printed alone on the last line, once."""
    try:
        verifier, token = verifiers.create(name, actor=Actor.cli(), description=description)
    except verifiers.VerifierError as error:
        raise click.ClickException(f"{error.field}: {error.message}") from None
    click.echo(f"created verifier {verifier.name} ({verifier.display_start})", err=True)
    _issued(token)


@verifiers_cli.command("list")
def list_verifiers() -> None:
    """List verifiers (never their secrets): name, start, state, checks asked, last check."""
    rows = verifiers.list_verifiers()
    if not rows:
        click.echo("no verifiers yet: `flask --app wsgi verifiers create NAME` issues one")
    for verifier in rows:
        last = f"{verifier.last_used_at:%Y-%m-%d %H:%M}" if verifier.last_used_at else "never"
        click.echo(f"{verifier.name}\t{verifier.display_start}\t{'active' if verifier.active else 'revoked'}\t"
                   f"checks {verifier.usage_count}\tlast {last}")


@verifiers_cli.command("rotate")
@click.argument("name")
def rotate_verifier(name) -> None:
    """A new credential for NAME; the old one stops at once. Printed alone on the last line, once."""
    try:
        token = verifiers.rotate(_verifier(name), actor=Actor.cli())
    except verifiers.VerifierError as error:
        raise click.ClickException(error.message) from None
    _issued(token)


@verifiers_cli.command("revoke")
@click.argument("name")
def revoke_verifier(name) -> None:
    """Revoke NAME's credential for good: the service can check no key from its next request on."""
    try:
        verifiers.revoke(_verifier(name), actor=Actor.cli())
    except verifiers.VerifierError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"revoked verifier {name}")


@keys_cli.command("remind")
def remind() -> None:
    """Queue the expiry reminders that are due (30, 7 and 1 days before, and at expiry). Safe to run every minute,
    on any number of hosts at once: each reminder is sent once."""
    queued = reminders.send_due_reminders(utcnow())
    click.echo(f"queued {queued} expiry reminders")
