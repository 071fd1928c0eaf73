"""Sessions: a new cookie at sign-in, a dead one after sign-out, its flags, and no way out through `next`.

test_auth.py covers the session's contents at login, the stolen-cookie replay after logout and `next` on the login
form; this file adds the cookie itself, and every other place that follows a `next` (sign-up, the key actions, the
admin actions) against the same hostile targets.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

import pytest

from app.audit.service import Actor
from app.keys import verifiers
from tests.functional.keyhelpers import count, new_key
from tests.functional.route_matrix import (
    COOKIE_FACES,
    FORM,
    PUBLIC,
    ROUTES,
    SIGNED_IN,
    build_world,
    csrf_token,
)
from tests.support import PASSWORD, AuthActions, close_app

COOKIE = "keyfob_session"
ORIGIN = "http://localhost"
HOSTILE_TARGETS = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "https://evil.example/",
    "http:evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",  # stays a path on this site: fine to follow
    "javascript:alert(document.domain)",
    "JaVaScRiPt:alert(1)",
    " //evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "data:text/html,<script>alert(1)</script>",
]
WORST_TARGETS = ["//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"]


def cookie_of(response) -> str | None:
    """The session cookie value a response sets, or None."""
    for header in response.headers.getlist("Set-Cookie"):
        match = re.match(rf"{COOKIE}=([^;]*)", header)
        if match:
            return match.group(1)
    return None


def where_a_browser_goes(location: str) -> tuple[str, str]:
    """(scheme, host) a browser would go to from this Location: WHATWG URL parsing drops tabs and newlines, trims
    spaces and control characters, and reads a backslash as a slash in http(s) URLs."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                                                      "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
                                                      "\x1d\x1e\x1f ").replace("\\", "/")
    target = urlsplit(urljoin(ORIGIN + "/", cleaned))
    return target.scheme.lower(), target.netloc.lower()


def assert_stays_here(response) -> None:
    assert response.status_code == 302, response.get_data(as_text=True)
    assert where_a_browser_goes(response.headers["Location"]) == ("http", "localhost"), response.headers["Location"]


# -- the cookie ------------------------------------------------------------------------------------------------------

def test_signing_in_sets_a_new_cookie_and_the_one_from_before_stays_anonymous(app, client, auth, user):
    client.get("/login")
    before = client.get_cookie(COOKIE).value
    response = auth.login()
    after = cookie_of(response)
    assert after and after != before
    visitor = app.test_client()
    visitor.set_cookie(COOKIE, before)
    assert visitor.get("/account").status_code == 302
    member = app.test_client()
    member.set_cookie(COOKIE, after)
    assert member.get("/account").status_code == 200


def test_after_sign_out_the_old_cookie_can_neither_read_nor_change(app, client, auth, user):
    auth.login()
    token = csrf_token(client)  # what a thief copying the cookie would also have
    stolen = client.get_cookie(COOKIE).value
    response = auth.logout()
    assert cookie_of(response) in ("", None) or cookie_of(response) != stolen
    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen)
    assert thief.get("/keys/").status_code == 302
    response = thief.post("/keys/new", data={"csrf_token": token, "name": "backdoor", "scopes": ["read:data"],
                                             "expiry": "30"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert count(app, "api_keys") == 0


@pytest.mark.parametrize("env", ["development", "production"])
def test_the_cookie_set_at_sign_in_has_its_flags(apps, env):
    app = apps(KEYFOB_ENV=env)
    from app.accounts import service

    with app.app_context():
        service.create_user("ada@example.com", PASSWORD)
    base = "https://keyfob.example" if env == "production" else "http://localhost"
    client = app.test_client()
    page = client.get("/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    # Over HTTPS, Flask-WTF also wants a same-origin Referer (WTF_CSRF_SSL_STRICT).
    response = client.post("/login", base_url=base, headers={"Referer": base + "/login"},
                           data={"csrf_token": token, "email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 302
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"httponly", "path"} <= flags
    assert "samesite=lax" in header.lower()
    assert ("secure" in flags) == (env == "production")


# -- `next` goes nowhere but here ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", HOSTILE_TARGETS)
@pytest.mark.parametrize("how", ["query string, then the form", "the form alone"])
def test_sign_in_never_sends_you_away(world, target, how):
    client = world.app.test_client()
    page = client.get("/login", query_string={"next": target} if how.startswith("query") else None)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    carried = re.search(r'name="next" type="hidden" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    next_value = html.unescape(carried) if how.startswith("query") else target
    response = client.post("/login", data={"csrf_token": token, "email": "mallory@example.com",
                                           "password": PASSWORD, "next": next_value})
    assert_stays_here(response)


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_sign_up_never_sends_you_away(world, target):
    client = world.app.test_client()
    email = f"new{HOSTILE_TARGETS.index(target)}@example.com"
    response = AuthActions(client).register(email=email, next=target)
    assert_stays_here(response)


# How each route answers the crawl below, `next` or not: a form posted sends you on (302), but for those that answer
# with the page showing a new key or verifier credential once; a page opens (200), but for the index, which sends you
# on.
SHOWS_A_KEY = {"dashboard.create", "dashboard.rotate", "admin.verifiers", "admin.rotate_verifier"}
# The two-factor pages of someone with no factor (or no sign-in waiting for its second step) send them on too; the
# set-up form, posted without an authenticator's code, answers with its error.
SENDS_YOU_ON = {"auth.index", "auth.second_step", "auth.two_factor_disable", "auth.recovery_codes"}
ASKS_FOR_A_CODE = {"auth.two_factor_enrol"}
# Posts that answer without a redirect to the crawl's form: the passkey ceremonies' options (409: passkeys are off
# without PUBLIC_BASE_URL, and no sign-in waits), a passkey with no browser's answer, and a removal without the proof.
NO_REDIRECT = {"auth.passkey_options": 409, "auth.passkey_sign_in_options": 409, "auth.passkey_new": 422,
               "auth.passkey_remove": 422}


def crawl_status(route) -> int:
    if route.unsafe and route.endpoint in ASKS_FOR_A_CODE:
        return 422
    if route.unsafe and route.endpoint in NO_REDIRECT:
        return NO_REDIRECT[route.endpoint]
    return 302 if (route.unsafe and route.endpoint not in SHOWS_A_KEY) or route.endpoint in SENDS_YOU_ON else 200


def test_no_route_sends_you_away_whatever_next_says(tmp_path):
    """Every cookie route, each form posted with a valid token and each page opened, with `next` set to the worst
    targets: every redirect stays on this site. Read from app.url_map, so a new route is covered when added."""
    world = build_world(tmp_path)
    try:
        for route in sorted(ROUTES, key=lambda route: route.endpoint == "auth.logout"):  # logging out ends it
            if route.face not in COOKIE_FACES:
                continue
            who = {PUBLIC: "anonymous", SIGNED_IN: "attacker"}.get(route.face, "admin")
            for number, target in enumerate(WORST_TARGETS):
                client = world.client(who)
                key_id = None
                if "key_id" in route.ids:  # each action on a key of its own, so none finds it revoked
                    owner = world.attacker if route.face == SIGNED_IN else world.victim
                    key_id, _ = new_key(world.app, owner, name=f"next {number}")
                verifier_id = None
                if "verifier_id" in route.ids:  # the same for a verifier credential
                    with world.app.app_context():
                        verifier_id = verifiers.create(f"{route.endpoint}-{number}", actor=Actor.cli())[0].id
                path = route.path(key_id=key_id, alert_id=world.alert, user_id=world.victim, verifier_id=verifier_id,
                                  passkey_id=world.passkeys.get(who))
                if route.unsafe:
                    fields = {**FORM, "csrf_token": csrf_token(client), "next": target,
                              "email": "mallory@example.com" if route.endpoint == "auth.login"
                              else f"new{number}@example.com"}
                    if route.endpoint == "admin.verifiers":  # a new service's name: lower-case, one word
                        fields["name"] = f"crawled-{number}"
                    response = client.open(path, method=route.method, data=fields)
                else:
                    response = client.open(path, method=route.method, query_string={"next": target})
                response.close()
                assert response.status_code == crawl_status(route), (str(route), target)
                if response.status_code == 302:
                    assert where_a_browser_goes(response.headers["Location"]) == ("http", "localhost"), \
                        (str(route), target, response.headers["Location"])
    finally:
        close_app(world.app)


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_the_revoke_page_carries_only_a_local_next(world, target):
    key_id, _ = new_key(world.app, world.attacker, name="revoke page")
    page = world.client("attacker").get(f"/keys/{key_id}/revoke", query_string={"next": target})
    carried = re.search(r'name="next" type="hidden" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    assert carried == "" or where_a_browser_goes(carried) == ("http", "localhost")
