"""Every route of the app, read from `app.url_map`, each with the face it belongs to, and a world to aim them at.

The abuse matrix (every_route/test_abuse_matrix.py) parametrizes over ROUTES: a route added to the app shows up there
by itself, and fails test_every_route_is_classified until FACES says who may use it. A face decides what every check
expects:

- PUBLIC: anyone (sign-in pages, health probes, static files, the OpenAPI document).
- SIGNED_IN: a person's session cookie (the account page and the key dashboard).
- ADMIN: an admin's session cookie.
- API_KEY: an `Authorization: Bearer` key; no cookie is read, so no CSRF token and no cross-site check.
- METRICS: an admin's session, or the METRICS_TOKEN for Prometheus.
- VERIFIER: a verifier credential (a service, or a reverse proxy in X-Keyfob-Verifier), checking a key it was sent.
- CALENDAR: the token in a secret calendar URL, which calendar apps fetch with no cookie (any other token: 404).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app import create_app
from app.accounts import confirmation, signed_links
from app.accounts import service as accounts
from app.accounts.models import Passkey, User
from app.assets import HTMX
from app.audit.models import Alert
from app.audit.service import Actor
from app.extensions import db
from app.keys import verifiers
from tests.functional.keyhelpers import bearer, new_key
from tests.support import PASSWORD, QUIET, AuthActions, app_config, close_app, csrf_token_from, make_app

PUBLIC, SIGNED_IN, ADMIN, API_KEY, METRICS = "public", "signed in", "admin", "API key", "admin or metrics token"
VERIFIER = "verifier credential"  # a service or a reverse proxy checking a key: no cookie, no API key
CALENDAR = "calendar link"  # the token in the URL is the credential: no cookie, no key
COOKIE_FACES = (PUBLIC, SIGNED_IN, ADMIN, METRICS)
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

FACES = {
    "static": PUBLIC,
    "favicon": PUBLIC,
    "health.healthz": PUBLIC,
    "health.readyz": PUBLIC,
    "auth.index": PUBLIC,
    "auth.login": PUBLIC,
    "auth.register": PUBLIC,
    "auth.logout": PUBLIC,  # anyone may post it; it ends the session there is, if any
    "auth.confirmation_page": PUBLIC,  # the mailed link: whoever holds it (FIXED_ARGUMENTS has a valid one)
    "auth.confirm_address": PUBLIC,
    "auth.resend_confirmation": SIGNED_IN,
    "auth.forgot_password": PUBLIC,
    "auth.reset_password": PUBLIC,  # for whoever holds a mailed link
    "auth.second_step": PUBLIC,  # it asks for the sign-in its password step began, and sends anyone else to /login
    "auth.passkey_sign_in": PUBLIC,  # the same second step, with a passkey
    "auth.passkey_sign_in_options": PUBLIC,  # its options: 401 JSON without a pending sign-in
    "api.openapi_document": PUBLIC,
    "auth.account": SIGNED_IN,
    "auth.reset_calendar_link": SIGNED_IN,
    "auth.calendar_feed": CALENDAR,
    "auth.notifications": SIGNED_IN,
    "auth.two_factor_enrol": SIGNED_IN,
    "auth.two_factor_disable": SIGNED_IN,
    "auth.recovery_codes": SIGNED_IN,
    "auth.passkey_options": SIGNED_IN,
    "auth.passkey_new": SIGNED_IN,
    "auth.passkey_remove": SIGNED_IN,
    "dashboard.index": SIGNED_IN,
    "dashboard.create": SIGNED_IN,
    "dashboard.detail": SIGNED_IN,
    "dashboard.edit": SIGNED_IN,
    "dashboard.rotate": SIGNED_IN,
    "dashboard.renew": SIGNED_IN,
    "dashboard.disable": SIGNED_IN,
    "dashboard.enable": SIGNED_IN,
    "dashboard.revoke": SIGNED_IN,
    "admin.overview": ADMIN,
    "admin.keys": ADMIN,
    "admin.key": ADMIN,
    "admin.alerts": ADMIN,
    "admin.health": ADMIN,
    "admin.users": ADMIN,
    "admin.audit_log": ADMIN,
    "admin.audit_csv": ADMIN,
    "admin.disable_key": ADMIN,
    "admin.enable_key": ADMIN,
    "admin.revoke_key": ADMIN,
    "admin.lift_suspension": ADMIN,
    "admin.acknowledge_alert": ADMIN,
    "admin.change_user": ADMIN,
    "admin.reset_two_factor": ADMIN,
    "admin.verifiers": ADMIN,
    "admin.rotate_verifier": ADMIN,
    "admin.revoke_verifier": ADMIN,
    "api.whoami": API_KEY,
    "api.scope_catalogue": API_KEY,
    "api.list_keys": API_KEY,
    "api.create_key": API_KEY,
    "api.expiring_keys": API_KEY,
    "api.get_key": API_KEY,
    "api.patch_key": API_KEY,
    "api.put_key": API_KEY,
    "api.rotate_key": API_KEY,
    "api.renew_key": API_KEY,
    "api.revoke_key": API_KEY,
    "api.revoke_key_by_body": API_KEY,
    "api.key_usage": API_KEY,
    "metrics.metrics": METRICS,
    "api.verify_key": VERIFIER,
    "proxy_auth.forward_auth": VERIFIER,
}
# Routes that serve files from static/, not pages or answers of their own.
FILES = {"static", "favicon"}
# Routes that name a key in the body rather than the path.
KEY_ID_IN_BODY = {"api.revoke_key_by_body"}
ARGUMENT = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    """One method of one URL rule; a rule with an `any(...)` argument gives one Route per choice."""

    endpoint: str
    method: str
    rule: str
    choices: tuple[tuple[str, str], ...] = ()  # (argument, value) for any(...) arguments
    ids: tuple[str, ...] = ()  # the integer arguments, such as key_id

    @property
    def face(self) -> str | None:
        return FACES.get(self.endpoint)

    @property
    def unsafe(self) -> bool:
        return self.method in UNSAFE

    @property
    def takes_json(self) -> bool:
        """The API's operations and the verification API read JSON; everything else reads forms."""
        return self.face == API_KEY or self.endpoint == "api.verify_key"

    @property
    def names_a_key(self) -> bool:
        return "key_id" in self.ids or self.endpoint in KEY_ID_IN_BODY

    def path(self, **ids: int) -> str:
        values = {**FIXED_ARGUMENTS, **dict(self.choices), **ids}
        return ARGUMENT.sub(lambda match: str(values[match.group(3)]), self.rule)

    def __str__(self) -> str:
        chosen = dict(self.choices)
        shown = ARGUMENT.sub(lambda match: chosen.get(match.group(3), f"<{match.group(3)}>"), self.rule)
        return f"{self.method} {shown}"


def routes_of(app) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        ids = tuple(sorted(name for name, converter in rule._converters.items()
                           if type(converter).__name__ == "IntegerConverter"))
        options = [()]
        for name, converter in rule._converters.items():
            if type(converter).__name__ == "AnyConverter":
                options = [(*option, (name, item)) for option in options for item in sorted(converter.items)]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.extend(Route(rule.endpoint, method, rule.rule, option, ids) for option in options)
    return sorted(found, key=lambda route: (route.rule, route.method, route.choices))


def _read_routes() -> tuple[list[Route], str]:
    """The routes of an app built with no migrations on a throwaway SQLite file (it is never queried), and an
    address-confirmation token for ada (user 1 of every world, confirmed already: following it changes nothing),
    signed with the tests' SECRET_KEY."""
    folder = Path(tempfile.mkdtemp(prefix="keyfob-routes-"))
    app = create_app(app_config(folder, DATABASE_URL=f"sqlite:///{folder / 'routes.db'}"))
    try:
        with app.app_context():
            token = signed_links.sign(confirmation.PURPOSE, [1, "ada@example.com"])
        return routes_of(app), token
    finally:
        close_app(app)
        shutil.rmtree(folder, ignore_errors=True)


ROUTES, CONFIRMATION_TOKEN = _read_routes()
# Values for path arguments that are not database ids. A calendar link's token is one only World.ids() gives.
FIXED_ARGUMENTS = {"filename": "css/app.css", "sub_path": "invoices/1", "token": CONFIRMATION_TOKEN}


def routes(*faces: str, methods=None, where=None) -> list:
    """pytest params for the routes of these faces (all faces when none given), ids like 'POST /keys/<key_id>'."""
    import pytest

    chosen = [route for route in ROUTES if (not faces or route.face in faces)
              and (methods is None or route.method in methods) and (where is None or where(route))]
    return [pytest.param(route, id=str(route)) for route in chosen]


# -- what the requests send ------------------------------------------------------------------------------------------

# Every form field any form reads, with values that pass: a request refused is refused for the reason under test.
FORM = {"name": "changed by the test", "description": "", "scopes": ["read:data"], "allowed_ips": "",
        "rate_limit": "", "expiry": "30", "expires_on": "", "grace": "none", "confirmed": "yes",
        "reason": "the abuse matrix", "email": "someone.new@example.com", "password": PASSWORD, "confirm": PASSWORD}


def json_body(route: Route, key_id: int) -> dict | None:
    """A body the API operation would accept, so a refusal has no other cause than the one under test."""
    return {
        "api.create_key": {"name": "child", "scopes": ["read:data"], "expires_in_days": 10},
        "api.patch_key": {"name": "renamed"},
        "api.put_key": {"name": "renamed", "description": "", "scopes": ["read:data"], "allowed_ips": [],
                        "rate_limit": None},
        "api.rotate_key": {"grace": "none"},
        "api.renew_key": {"expires_in_days": 5},
        "api.revoke_key": {"reason": "the abuse matrix"},
        "api.revoke_key_by_body": {"id": key_id, "reason": "the abuse matrix"},
        "api.verify_key": {"key": "kf_" + "A" * 33, "scopes": ["read:data"], "client_ip": "192.0.2.7"},
    }.get(route.endpoint) if route.unsafe else None


# -- the world the routes are aimed at -----------------------------------------------------------------------------

ALL_SCOPES = ("keys:read", "keys:write", "read:data", "write:data")


@dataclass
class World:
    """Three people on one app: ada the admin, mallory (an ordinary user: the attacker) and grace (the victim).
    Ada and mallory are signed in and hold keys with every scope; grace has a key with an open alert on it. One service
    holds a verifier credential; forward auth lets any valid key through (no rules file)."""

    app: object
    admin: int
    attacker: int
    victim: int
    admin_key: int
    admin_token: str
    attacker_key: int
    attacker_token: str
    attacker_child: int
    victim_key: int
    victim_token: str
    alert: int
    verifier: int = 0
    verifier_credential: str = ""
    clients: dict = field(default_factory=dict)
    calendar_tokens: dict = field(default_factory=dict)  # each person's calendar link token, by "admin" and so on
    passkeys: dict = field(default_factory=dict)  # each person's passkey id, by "admin" and so on

    def client(self, who: str):
        """A signed-in test client for "admin" or "attacker"; "anonymous" is a new client with a session (and so a
        CSRF token) but no user."""
        if who == "anonymous":
            client = self.app.test_client()
            client.get("/login")
            return client
        return self.clients[who]

    def ids(self, route: Route, *, whose: str) -> dict:
        """Path values: the key, alert, user and calendar link a request from `whose` side would name."""
        key = {"victim": self.victim_key, "attacker": self.attacker_key, "admin": self.admin_key}[whose]
        calendar = {"token": self.calendar_tokens[whose]} if route.face == CALENDAR else {}
        return {"key_id": key, "alert_id": self.alert, "user_id": self.victim, "verifier_id": self.verifier,
                "passkey_id": self.passkeys[whose], **calendar}

    def headers_for(self, route: Route, who: str) -> dict:
        """An API key's Authorization for the API; for the verification routes the service's credential (forward
        auth also carries `who`'s key, as a proxy passes the client's on)."""
        token = {"admin": self.admin_token, "attacker": self.attacker_token}.get(who, "")
        if route.face == API_KEY:
            return bearer(token)
        if route.endpoint == "proxy_auth.forward_auth":
            return {"X-Keyfob-Verifier": self.verifier_credential, **bearer(token)}
        if route.face == VERIFIER:
            return bearer(self.verifier_credential)
        return {}


def signed_in(app, email: str):
    client = app.test_client()
    response = AuthActions(client).login(email=email)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf_token(client) -> str:
    """A valid CSRF token of the client's own session: from the account page (its logout form), or the login page
    for a client no one is signed in on."""
    page = client.get("/account")
    if page.status_code != 200:
        page = client.get("/login")
    return csrf_token_from(page.get_data(as_text=True))


def build_world(folder) -> World:
    app = make_app(folder, **QUIET, FORWARD_AUTH_UNMATCHED="any-key")  # usage is written only when a test flushes
    with app.app_context():
        admin = accounts.create_user("ada@example.com", PASSWORD, is_admin=True).id
        attacker = accounts.create_user("mallory@example.com", PASSWORD).id
        victim = accounts.create_user("grace@example.com", PASSWORD).id
    admin_key, admin_token = new_key(app, admin, name="ada's tool", scopes=ALL_SCOPES, days=60)
    attacker_key, attacker_token = new_key(app, attacker, name="mallory's tool", scopes=ALL_SCOPES, days=60)
    attacker_child, _ = new_key(app, attacker, name="mallory's child", days=30)
    victim_key, victim_token = new_key(app, victim, name="grace's secret project", days=30)
    with app.app_context():
        alert = Alert(kind="rate_limit_suspension", key_id=victim_key, ip="192.0.2.1", message="kept exceeding")
        db.session.add(alert)
        db.session.commit()
        alert_id = alert.id
        verifier, credential = verifiers.create("billing-service", actor=Actor.cli())
        calendar_tokens = {who: accounts.reset_calendar_link(db.session.get(User, user_id), actor=Actor.cli())
                           for who, user_id in (("admin", admin), ("attacker", attacker), ("victim", victim))}
    world = World(app, admin, attacker, victim, admin_key, admin_token, attacker_key, attacker_token,
                  attacker_child, victim_key, victim_token, alert_id, verifier.id, credential,
                  calendar_tokens=calendar_tokens)
    world.clients = {"admin": signed_in(app, "ada@example.com"), "attacker": signed_in(app, "mallory@example.com")}
    # A passkey each, added once they are signed in (from then on their sign-in has a second step): only the rows the
    # passkey routes name, so no ceremony is needed.
    with app.app_context():
        for who, user_id in (("admin", admin), ("attacker", attacker), ("victim", victim)):
            passkey = Passkey(user_id=user_id, credential_id=f"credential-of-{who}", public_key=b"\xa0", name=who)
            db.session.add(passkey)
            db.session.flush()
            world.passkeys[who] = passkey.id
        db.session.commit()
    return world


def snapshot(app) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order: two snapshots are equal when nothing was written."""
    with app.app_context():
        tables = {}
        for table in db.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            tables[table.name] = [tuple(row) for row in db.session.execute(table.select().order_by(*order))]
        db.session.remove()
    return tables


def check_security_headers(response) -> None:
    """The headers every response carries, whatever its kind (page, fragment, JSON, error, file, CSV, metrics)."""
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", f"script-src 'self' {HTMX.url};", "object-src 'none'",
                      "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    # no-referrer (stricter) on pages whose URL holds, or held, a secret, such as a mailed link's.
    private = response.request.path == "/reset-password"
    assert headers["Referrer-Policy"] in (("no-referrer",) if private else ("same-origin", "no-referrer"))
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in headers["Permissions-Policy"]
    assert "HX-Request" in headers.get("Vary", "")
    if response.request.scheme == "https":
        assert headers["Strict-Transport-Security"].startswith("max-age=63072000")
    else:
        assert "Strict-Transport-Security" not in headers
