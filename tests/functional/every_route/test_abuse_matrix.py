"""The abuse matrix: every route of the app (read from app.url_map, see route_matrix.py) against each way in that
should be shut: no sign-in, someone else's key, no admin role, no or a wrong CSRF token, a cross-site request, a
GET that writes, a deactivated account. Each refusal must also leave the database exactly as it was.

Most tests share one world (building it signs people in, which costs Argon2 time); each of them expects a refusal
and checks the database did not change. A test that fails may have changed it (or signed someone out), so the world
is built afresh after any failure: one hole in the app shows as one failure, not as a cascade.
"""

from __future__ import annotations

import pytest

from app.api.json_io import READ_ONLY
from app.fetch_metadata import MESSAGE as CROSS_SITE_MESSAGE
from tests.functional.keyhelpers import bearer
from tests.functional.route_matrix import (
    ADMIN,
    API_KEY,
    CALENDAR,
    COOKIE_FACES,
    FACES,
    FILES,
    FORM,
    METRICS,
    PUBLIC,
    ROUTES,
    SIGNED_IN,
    UNSAFE,
    VERIFIER,
    Route,
    build_world,
    check_security_headers,
    csrf_token,
    json_body,
    routes,
    signed_in,
    snapshot,
)
from tests.support import close_app

HTMX = {"HX-Request": "true"}
CSRF_FAILED = "did not come from Keyfob"


@pytest.fixture(scope="module")
def _shared(tmp_path_factory):
    shared = {}
    yield shared
    if "world" in shared:
        close_app(shared.pop("world").app)


@pytest.fixture
def world(_shared, request, tmp_path_factory):
    if "world" not in _shared:
        _shared["world"] = build_world(tmp_path_factory.mktemp("abuse-matrix"))
    failures = request.session.testsfailed
    yield _shared["world"]
    if request.session.testsfailed != failures:
        close_app(_shared.pop("world").app)


@pytest.fixture
def fresh_world(tmp_path):
    world = build_world(tmp_path)
    yield world
    close_app(world.app)


def send(client, route: Route, path: str, *, token: str | None = None, headers: dict | None = None,
         key_in_body: int = 0):
    """One request as the route expects it: a JSON body for the API, the form fields (and `token`) for a form."""
    headers = headers or {}
    if route.takes_json:
        response = client.open(path, method=route.method, json=json_body(route, key_in_body), headers=headers)
    elif route.unsafe:
        data = {**FORM, **({"csrf_token": token} if token else {})}
        response = client.open(path, method=route.method, data=data, headers=headers)
    else:
        response = client.open(path, method=route.method, headers=headers)
    response.get_data()  # read it all (the CSV export streams), then let go of it (a static file is an open file)
    response.close()
    check_security_headers(response)
    return response


def text(response) -> str:
    return response.get_data(as_text=True)


# -- the table itself ------------------------------------------------------------------------------------------------

def test_every_route_is_classified():
    """A new route fails here until route_matrix.FACES says who may use it; then every check below covers it."""
    endpoints = {route.endpoint for route in ROUTES}
    assert endpoints - FACES.keys() == set(), "classify these routes in tests/functional/route_matrix.py FACES"
    assert FACES.keys() - endpoints == set(), "these classified routes no longer exist"
    assert len(ROUTES) > 40


# -- who may come in -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", routes(SIGNED_IN, ADMIN, API_KEY, METRICS))
def test_no_one_signed_in_gets_nothing(world, route):
    client = world.client("anonymous")
    before = snapshot(world.app)
    response = send(client, route, route.path(**world.ids(route, whose="attacker")), token=csrf_token(client),
                    key_in_body=world.attacker_key)
    if route.face in (API_KEY, METRICS):
        assert response.status_code == 401, text(response)
        assert "WWW-Authenticate" in response.headers
        if route.face == API_KEY:
            assert response.get_json()["error"] == "missing_token"
    else:
        # A form post carries the anonymous session's own valid token: refused for want of a user, not of a token.
        assert response.status_code == 302, text(response)
        assert response.headers["Location"].startswith("/login?next=")
    assert snapshot(world.app) == before


@pytest.mark.parametrize("route", routes(ADMIN, METRICS))
def test_a_user_who_is_not_an_admin_gets_403_on_every_admin_route(world, route):
    client = world.client("attacker")
    before = snapshot(world.app)
    response = send(client, route, route.path(**world.ids(route, whose="victim")), token=csrf_token(client))
    assert response.status_code == 403, text(response)
    assert snapshot(world.app) == before


def _with_htmx(params: list) -> list:
    """Each page route as a plain request and as an htmx one; the API only plain (htmx never calls it)."""
    return [pytest.param(*param.values, htmx, id=f"{param.id} {'htmx' if htmx else 'plain'}") for param in params
            for htmx in ((False, True) if param.values[0].face != API_KEY else (False,))]


@pytest.mark.parametrize(("route", "htmx"), _with_htmx(routes(SIGNED_IN, API_KEY,
                                                              where=lambda route: route.names_a_key)))
def test_another_users_key_is_404_on_every_page_action_and_api_operation(world, route, htmx):
    client = world.client("attacker")
    before = snapshot(world.app)
    headers = {**world.headers_for(route, "attacker"), **(HTMX if htmx else {})}
    response = send(client, route, route.path(**world.ids(route, whose="victim")), token=csrf_token(client),
                    headers=headers, key_in_body=world.victim_key)
    assert response.status_code == 404, text(response)
    if route.face == API_KEY:
        assert response.get_json()["error"] == "not_found"
    assert snapshot(world.app) == before
    # Grace's key is untouched and still hers to use.
    assert client.get("/api/v1/whoami", headers=bearer(world.victim_token)).status_code == 200


@pytest.mark.parametrize("missing", [999_999, 2**31, 2**63, 2**64])  # past 32 bits, past 64 bits
@pytest.mark.parametrize("route", routes(SIGNED_IN, ADMIN, API_KEY, where=lambda route: route.ids
                                         or route.endpoint == "api.revoke_key_by_body"))
def test_an_id_that_does_not_exist_is_404_not_500(world, route, missing):
    who = "admin" if route.face == ADMIN else "attacker"
    client = world.client(who)
    before = snapshot(world.app)
    ids = {name: missing for name in route.ids}
    headers = world.headers_for(route, who)
    response = send(client, route, route.path(**ids), token=csrf_token(client), headers=headers, key_in_body=missing)
    if route.endpoint == "api.revoke_key_by_body":
        # A number past any key id (ids are 32-bit) is refused as out of range (422); one within range is simply not
        # found.
        assert response.status_code == (422 if missing > 2**31 - 1 else 404), text(response)
    else:
        assert response.status_code == 404, text(response)
    assert snapshot(world.app) == before


def test_nothing_of_another_user_shows_on_any_page_or_api_answer(world):
    """Every GET route, as mallory with her session and her key: grace's key name and start appear nowhere."""
    with world.app.app_context():
        from app.extensions import db
        from app.keys.models import ApiKey

        victim = db.session.get(ApiKey, world.victim_key)
        secrets = ("grace's secret project", "grace&#39;s secret project", victim.display_start, "grace@example.com")
        db.session.remove()
    client = world.client("attacker")
    for route in ROUTES:
        if route.method != "GET" or route.face in (ADMIN, METRICS) or "key_id" in route.ids or route.endpoint in FILES:
            continue
        for headers in ({}, HTMX):
            response = send(client, route, route.path(**world.ids(route, whose="attacker")),
                            headers={**world.headers_for(route, "attacker"), **headers})
            assert response.status_code < 400, (str(route), response.status_code)
            assert not [secret for secret in secrets if secret in text(response)], str(route)


# -- forged requests -----------------------------------------------------------------------------------------------

def _principal(route: Route) -> str:
    """Who sends a request the route would accept but for what is under test."""
    return {PUBLIC: "anonymous", SIGNED_IN: "attacker", ADMIN: "admin"}[route.face]


def _own_ids(world, route: Route) -> dict:
    return world.ids(route, whose="attacker" if route.face == SIGNED_IN else "victim")


@pytest.mark.parametrize("variant", ["missing", "wrong", "another session's", "htmx header wrong"])
@pytest.mark.parametrize("route", routes(*COOKIE_FACES, methods=UNSAFE))
def test_every_state_changing_form_without_its_csrf_token_is_400(world, route, variant):
    client = world.client(_principal(route))
    before = snapshot(world.app)
    token, headers = {
        "missing": (None, {}),
        "wrong": ("not-a-token", {}),
        "another session's": (csrf_token(world.client("anonymous")), {}),
        "htmx header wrong": (None, {**HTMX, "X-CSRFToken": "not-a-token"}),
    }[variant]
    response = send(client, route, route.path(**_own_ids(world, route)), token=token, headers=headers)
    assert response.status_code == 400, text(response)
    assert CSRF_FAILED in text(response)
    assert snapshot(world.app) == before


@pytest.mark.parametrize(("route", "htmx"), _with_htmx(routes(*COOKIE_FACES, methods=UNSAFE)))
def test_a_cross_site_request_to_a_cookie_route_is_refused_even_with_a_valid_token(world, route, htmx):
    client = world.client(_principal(route))
    before = snapshot(world.app)
    token = csrf_token(client)
    headers = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example",
               **({**HTMX, "X-CSRFToken": token} if htmx else {})}
    response = send(client, route, route.path(**_own_ids(world, route)), token=token, headers=headers)
    assert response.status_code == 403, text(response)
    assert CROSS_SITE_MESSAGE.replace("'", "&#39;") in text(response)
    assert snapshot(world.app) == before


def test_the_same_requests_get_through_from_the_same_site_and_the_api_from_anywhere(fresh_world):
    """The control for the two tests above: with a valid token from Keyfob's own page every form is accepted, and
    the Bearer-key API answers cross-site requests, so the refusals above have no other cause."""
    world = fresh_world
    unsafe = [route for route in ROUTES if route.unsafe]
    # Logging out ends the session the later requests need: last. Rotating or revoking the service's credential
    # ends the one the verification routes need: after them.
    unsafe.sort(key=lambda route: (route.endpoint == "auth.logout", route.endpoint.endswith("_verifier")))
    answers = {}
    for route in unsafe:
        if route.face == API_KEY:
            # Aimed at ada's own child key: the rotate and revoke operations must not end the key that calls.
            child = world.app.test_client().post("/api/v1/api-keys", json={"name": "target"},
                                                 headers=bearer(world.admin_token)).get_json()["key"]["id"]
            client = world.app.test_client()
            response = send(client, route, route.path(key_id=child),
                            headers={**bearer(world.admin_token), "Sec-Fetch-Site": "cross-site",
                                     "Origin": "https://elsewhere.example"}, key_in_body=child)
        elif route.face == VERIFIER:  # a service or a proxy: cookieless, so from anywhere too
            response = send(world.app.test_client(), route, route.path(), key_in_body=0,
                            headers={**world.headers_for(route, "admin"), "Sec-Fetch-Site": "cross-site"})
        else:
            client = world.client(_principal(route))
            response = send(client, route, route.path(**_own_ids(world, route)), token=csrf_token(client),
                            headers={"Sec-Fetch-Site": "same-origin"})
        answers[str(route)] = response.status_code
    refused = {route: status for route, status in answers.items() if status in (400, 401, 403) or status >= 500}
    assert refused == {}


# -- GET writes nothing ----------------------------------------------------------------------------------------------

def test_no_get_changes_state(world):
    """Every GET route, signed in as an admin (who may open them all), as a page and as an htmx request, and every
    API GET with ada's key: the database is the same afterwards. (A valid key's use is counted in memory and
    written only when the usage buffer flushes, which this test does not do: that bookkeeping is by design.)"""
    client = world.client("admin")
    before = snapshot(world.app)
    for route in ROUTES:
        if route.method != "GET":
            continue
        ids = world.ids(route, whose="admin" if route.face in (SIGNED_IN, API_KEY) else "victim")
        for extra in ({}, HTMX):
            response = send(client, route, route.path(**ids), headers={**world.headers_for(route, "admin"),
                                                                      **extra})
            assert response.status_code < 400, (str(route), response.status_code)
    assert snapshot(world.app) == before


@pytest.mark.parametrize("who", ["nobody", "a signed-in admin", "an API key"])
@pytest.mark.parametrize("route", routes(VERIFIER))
def test_the_verification_routes_take_nothing_but_a_verifier_credential(world, route, who):
    """Neither a session (with its CSRF token) nor an API key opens them: only a service's credential."""
    client = world.client("admin") if who == "a signed-in admin" else world.app.test_client()
    headers = {"X-CSRFToken": csrf_token(client)} if who == "a signed-in admin" else {}
    if who == "an API key":
        headers = {**bearer(world.admin_token), "X-Keyfob-Verifier": world.admin_token}
    before = snapshot(world.app)
    response = send(client, route, route.path(), headers=headers)
    assert response.status_code == 401, text(response)
    assert response.get_json()["error"] == "invalid_verifier"
    assert snapshot(world.app) == before


@pytest.mark.parametrize("route", routes(CALENDAR))
def test_a_calendar_route_opens_with_its_link_and_nothing_else(world, route):
    """No session opens a calendar without its token, not even an admin's: a token that is no current link is 404,
    and the one that is opens that person's calendar alone."""
    before = snapshot(world.app)
    for client in (world.client("admin"), world.client("attacker"), world.app.test_client()):
        response = send(client, route, route.path())
        assert response.status_code == 404, text(response)
    response = send(world.app.test_client(), route, route.path(**world.ids(route, whose="victim")))
    assert response.status_code == 200 and "grace's secret project" in text(response)
    assert "mallory's" not in text(response) and "ada's tool" not in text(response)
    assert snapshot(world.app) == before


# -- scopes and server-kept fields through the API -----------------------------------------------------------------

@pytest.mark.parametrize(("route", "field"), [
    pytest.param(*param.values, field, id=f"{param.id} {field}") for param in routes(API_KEY, methods=UNSAFE)
    for field in sorted(READ_ONLY)
    if not (field == "id" and param.values[0].endpoint == "api.revoke_key_by_body")  # its body names the key by id
])
def test_no_api_operation_lets_a_server_kept_field_be_set(world, route, field):
    client = world.app.test_client()
    before = snapshot(world.app)
    body = {**(json_body(route, world.attacker_child) or {}), field: 1}
    response = client.open(route.path(key_id=world.attacker_child), method=route.method, json=body,
                           headers=bearer(world.attacker_token))
    assert response.status_code == 400, response.get_json()
    error = response.get_json()
    assert error["error"] == "unknown_fields"
    assert error["fields"] == {field: "Cannot be set: the server keeps this."}
    assert snapshot(world.app) == before


# -- a deactivated account -------------------------------------------------------------------------------------------

def test_a_deactivated_users_session_and_keys_stop_on_every_route(fresh_world):
    world = fresh_world
    admin, mallory = world.client("admin"), world.client("attacker")
    laptop = signed_in(world.app, "mallory@example.com")  # her second browser
    tokens = {mallory: csrf_token(mallory), laptop: csrf_token(laptop)}
    response = admin.post(f"/admin/users/{world.attacker}/deactivate", data={"csrf_token": csrf_token(admin)})
    assert response.status_code == 302
    before = snapshot(world.app)
    for route in ROUTES:
        if route.face not in (SIGNED_IN, API_KEY):
            continue
        for client in (mallory, laptop):
            # Form posts carry the token the session had: refused for want of a user, not of a token.
            response = send(client, route, route.path(**world.ids(route, whose="attacker")), token=tokens[client],
                            headers=world.headers_for(route, "attacker"), key_in_body=world.attacker_child)
            if route.face == API_KEY:
                assert response.status_code == 401, (str(route), text(response))
                assert response.get_json()["error"] == "invalid_token"
            else:
                assert response.status_code == 302, (str(route), response.status_code)
                assert response.headers["Location"].startswith("/login")
    assert snapshot(world.app) == before
    # Reactivating brings the keys back, never the old sessions.
    assert admin.post(f"/admin/users/{world.attacker}/reactivate",
                      data={"csrf_token": csrf_token(admin)}).status_code == 302
    assert mallory.get("/api/v1/whoami", headers=bearer(world.attacker_token)).status_code == 200
    assert mallory.get("/keys/").status_code == 302
    assert laptop.get("/account").status_code == 302
