"""Helpers the two-factor tests share: set an authenticator up for a user, compute its codes, pass the second step."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyotp

from app.accounts import two_factor
from app.accounts.models import User
from app.audit.models import AuditEvent
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from tests.support import csrf_token_from

SECRET_ON_PAGE = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')
STEP = timedelta(seconds=two_factor.PERIOD)
RECOVERY_CODE = re.compile(r"<code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>")


def code_for(secret: str, when: datetime | None = None) -> str:
    """The authenticator app's code at `when` (now by default), computed as the app would."""
    return pyotp.TOTP(secret).at(when or utcnow())


def enrol(app, user_id: int, now: datetime | None = None) -> tuple[str, list[str]]:
    """Switch an authenticator on for the user through the core: its secret and the ten recovery codes. The code
    that confirmed it is of the step before `now`, so a code of `now` still signs in."""
    now = now or utcnow()
    secret = two_factor.new_secret()
    with app.app_context():
        user = db.session.get(User, user_id)
        codes = two_factor.enable(user, secret, code_for(secret, now - STEP), actor=Actor.cli(), now=now)
        db.session.remove()
    return secret, codes


def secret_on_page(html: str) -> str:
    match = SECRET_ON_PAGE.search(html)
    assert match, "the enrolment page shows no secret"
    return match.group(1).replace(" ", "")


def recovery_codes_on_page(html: str) -> list[str]:
    return RECOVERY_CODE.findall(html)


def second_step(client, code: str):
    """Post a code to the second step, with the CSRF token its page carries."""
    page = client.get("/login/two-factor")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/login/two-factor", data={"csrf_token": token, "code": code})


def audit_events(app, event: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)))
        db.session.remove()
    return rows


def load_user(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
    return user
