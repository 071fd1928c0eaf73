"""`flask users ...`: the first admin is made from a shell."""

from __future__ import annotations

from sqlalchemy import select

from app.accounts import service
from app.accounts.models import User
from app.extensions import db
from tests.functional.keyhelpers import audit_rows
from tests.support import PASSWORD


def get_user(app, email):
    with app.app_context():
        return db.session.scalar(select(User).where(User.email == email))


def test_create_admin_with_password_from_environment(app, runner, monkeypatch):
    monkeypatch.setenv("KEYFOB_PASSWORD", PASSWORD)
    result = runner.invoke(args=["users", "create", "Root@Example.com", "--admin"])
    assert result.exit_code == 0, result.output
    assert "created admin root@example.com" in result.output
    user = get_user(app, "root@example.com")
    assert user.is_admin and user.password_hash.startswith("$argon2id$")


def test_create_user_with_password_from_prompt(app, runner, monkeypatch):
    monkeypatch.delenv("KEYFOB_PASSWORD", raising=False)
    result = runner.invoke(args=["users", "create", "grace@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert get_user(app, "grace@example.com").is_admin is False


def test_created_user_can_log_in(app, runner, auth, monkeypatch):
    monkeypatch.setenv("KEYFOB_PASSWORD", PASSWORD)
    runner.invoke(args=["users", "create", "root@example.com", "--admin"])
    assert auth.login(email="root@example.com").status_code == 302


def test_create_refuses_bad_input_with_a_clear_message(app, runner, user, monkeypatch):
    monkeypatch.setenv("KEYFOB_PASSWORD", "password")
    result = runner.invoke(args=["users", "create", "new@example.com"])
    assert result.exit_code == 1
    assert "password: This password is one of the most common" in result.output
    monkeypatch.setenv("KEYFOB_PASSWORD", PASSWORD)
    for email, message in (("ada@example.com", "already exists"), ("nope", "@-sign")):
        result = runner.invoke(args=["users", "create", email])
        assert result.exit_code == 1
        assert message in result.output
    assert get_user(app, "new@example.com") is None


def test_promote_demote_and_list(app, runner, user):
    result = runner.invoke(args=["users", "promote", "ADA@example.com"])
    assert result.exit_code == 0 and "now an admin" in result.output
    assert get_user(app, "ada@example.com").is_admin
    listing = runner.invoke(args=["users", "list"]).output
    assert "ada@example.com\tadmin\tactive" in listing
    assert "last login never" in listing
    # The last active admin stays one: the accounts core refuses, whichever face asks.
    refused = runner.invoke(args=["users", "demote", "ada@example.com"])
    assert refused.exit_code == 1
    assert "ada@example.com is the last active admin: promote someone else first." in refused.output
    assert get_user(app, "ada@example.com").is_admin
    with app.app_context():
        service.create_user("grace@example.com", PASSWORD, is_admin=True)
    assert runner.invoke(args=["users", "demote", "ada@example.com"]).exit_code == 0
    assert not get_user(app, "ada@example.com").is_admin
    assert [row["actor"] for row in audit_rows(app, "user.demoted")] == ["cli"]


def test_promote_unknown_user_fails(runner):
    result = runner.invoke(args=["users", "promote", "ghost@example.com"])
    assert result.exit_code == 1
    assert "no user with email 'ghost@example.com'" in result.output


def test_list_when_empty_says_how_to_start(runner):
    assert "users create EMAIL --admin" in runner.invoke(args=["users", "list"]).output
