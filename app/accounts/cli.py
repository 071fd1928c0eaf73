"""`flask --app wsgi users ...`: create the first admin and manage accounts from a shell."""

from __future__ import annotations

import os

import click
from flask.cli import AppGroup

from app.accounts import service, two_factor
from app.audit.service import Actor

users_cli = AppGroup("users", help="Create, promote and list user accounts.")


def _existing(email: str):
    user = service.find_user(email)
    if user is None:
        raise click.ClickException(f"no user with email {email!r}")
    return user


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the new user an administrator.")
def create_user(email: str, admin: bool) -> None:
    """Create a user. The password comes from KEYFOB_PASSWORD when set, otherwise from a prompt."""
    password = os.environ.get("KEYFOB_PASSWORD")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = service.create_user(email, password, is_admin=admin)
    except service.AccountError as error:
        raise click.ClickException(f"{error.field}: {error.message}") from None
    click.echo(f"created {'admin' if user.is_admin else 'user'} {user.email}")


def _set_admin(email: str, is_admin: bool) -> None:
    user = _existing(email)
    try:
        service.set_admin(user, is_admin, actor=Actor.cli())
    except service.AccountError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"{user.email} is {'now' if is_admin else 'no longer'} an admin")


@users_cli.command("promote")
@click.argument("email")
def promote_user(email: str) -> None:
    """Make an existing user an administrator."""
    _set_admin(email, True)


@users_cli.command("demote")
@click.argument("email")
def demote_user(email: str) -> None:
    """Take administrator rights away from a user."""
    _set_admin(email, False)


@users_cli.command("list")
def list_users() -> None:
    """List users: email, role, state, created and last login."""
    rows = service.list_users()
    if not rows:
        click.echo("no users yet: create the first admin with `flask --app wsgi users create EMAIL --admin`")
        return
    for user in rows:
        last = user.last_login_at.strftime("%Y-%m-%d %H:%M") if user.last_login_at else "never"
        click.echo(f"{user.email}\t{'admin' if user.is_admin else 'user'}\t"
                   f"{'active' if user.is_active else 'inactive'}\t"
                   f"created {user.created_at:%Y-%m-%d}\tlast login {last}")


@users_cli.command("reset-2fa")
@click.argument("email")
def reset_two_factor(email: str) -> None:
    """Remove a user's second factor and recovery codes (they lost their phone): their password alone signs them in
    until they set one up again. Audited as the CLI."""
    user = _existing(email)
    try:
        two_factor.reset(user, actor=Actor.cli())
    except two_factor.TwoFactorError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"reset the second factor of {user.email}")
