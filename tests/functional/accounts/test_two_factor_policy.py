"""Who must sign in with a second factor: admins by default (TWO_FACTOR_FOR_ADMINS, on in production; the shared test
settings turn it off, so these tests turn it back on), everyone with TWO_FACTOR_FOR_EVERYONE. Without one, every admin
route (read from the app's routes, tests/functional/route_matrix.py) sends them to set it up first and changes
nothing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from app.accounts import service
from app.config import SETTINGS
from tests.functional.route_matrix import ADMIN, FORM, routes, snapshot
from tests.support import PASSWORD, AppFactory, AuthActions, csrf_token_from
from tests.two_factor_support import code_for, enrol, recovery_codes_on_page, second_step, secret_on_page

ENROL = "/account/two-factor/enrol"


def text(response) -> str:
    return response.get_data(as_text=True)


def test_admins_must_have_a_second_factor_by_default_and_everyone_need_not():
    defaults = {setting.name: setting.default for setting in SETTINGS}
    assert defaults["TWO_FACTOR_FOR_ADMINS"] == "true"
    assert defaults["TWO_FACTOR_FOR_EVERYONE"] == "false"


@pytest.fixture(scope="module")
def required(tmp_path_factory):
    """An app with TWO_FACTOR_FOR_ADMINS on (the production default): ada the admin has no factor and is signed in
    with her password; grace is an ordinary user."""
    factory = AppFactory(tmp_path_factory.mktemp("two-factor-policy"))
    app = factory(TWO_FACTOR_FOR_ADMINS="true")
    with app.app_context():
        admin = service.create_user("ada@example.com", PASSWORD, is_admin=True).id
        service.create_user("grace@example.com", PASSWORD)
    client = app.test_client()
    assert AuthActions(client).login().headers["Location"] == "/"  # no factor yet: the password signs her in
    yield app, client, admin
    factory.close()


@pytest.mark.parametrize("route", routes(ADMIN))
def test_an_admin_without_a_second_factor_is_sent_to_set_one_up_from_every_admin_route(required, route):
    app, client, _ = required
    token = csrf_token_from(text(client.get("/account")))
    before = snapshot(app)
    path = route.path(key_id=1, alert_id=1, user_id=2, verifier_id=1)
    if route.unsafe:
        response = client.open(path, method=route.method, data={**FORM, "csrf_token": token})
    else:
        response = client.open(path, method=route.method)
    assert response.status_code == 302, text(response)[:500]
    location = urlsplit(response.headers["Location"])
    assert location.path == ENROL
    # Where they were going is kept for a page; a form's address cannot be opened again, so none for a post.
    assert parse_qs(location.query).get("next") == (None if route.unsafe else [route.path(key_id=1, alert_id=1,
                                                                                         user_id=2, verifier_id=1)])
    assert snapshot(app) == before


def test_an_admin_without_a_second_factor_cannot_read_the_metrics_with_the_session(required):
    _, client, _ = required
    response = client.get("/metrics")
    assert response.status_code == 403 and "Set up two-factor sign-in" in text(response)


def test_the_enrolment_the_admin_is_sent_to_leads_back_where_they_were_going(required):
    app, client, _ = required
    assert client.get("/metrics").status_code == 403
    response = client.get("/admin/users?sort=email")
    assert response.headers["Location"] == "/account/two-factor/enrol?next=/admin/users?sort%3Demail"
    assert client.get("/keys/").headers["Location"].startswith(ENROL)  # her own keys too: the policy is hers
    page = client.get(response.headers["Location"])
    assert "This Keyfob asks your account for a second factor" in text(page)
    secret = secret_on_page(text(page))
    done = client.post(ENROL, data={"csrf_token": csrf_token_from(text(page)), "code": code_for(secret),
                                    "next": "/admin/users?sort=email"})
    assert done.status_code == 200 and len(recovery_codes_on_page(text(done))) == 10
    assert 'href="/admin/users?sort=email"' in text(done)
    for path in ("/admin/", "/admin/users", "/admin/keys", "/admin/audit", "/keys/", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_an_ordinary_user_is_not_asked_when_only_admins_must(required):
    app, _, _ = required
    client = app.test_client()
    AuthActions(client).login(email="grace@example.com")
    assert client.get("/keys/").status_code == 200


def test_with_it_required_of_everyone_a_user_sets_it_up_before_the_dashboard(apps):
    app = apps(TWO_FACTOR_FOR_EVERYONE="true")
    with app.app_context():
        user = service.create_user("grace@example.com", PASSWORD).id
    client = app.test_client()
    auth = AuthActions(client)
    auth.login(email="grace@example.com", next="/keys/new")
    response = client.get("/keys/new")
    assert response.status_code == 302 and response.headers["Location"] == f"{ENROL}?next=/keys/new"
    account = client.get("/account")  # the account page, where it is set up, still opens
    assert account.status_code == 200 and "This Keyfob asks it of your account" in text(account)
    # Once she has a factor, she signs in with it and the dashboard opens.
    secret, _ = enrol(app, user)
    client = app.test_client()
    AuthActions(client).login(email="grace@example.com")
    assert second_step(client, code_for(secret)).status_code == 302
    assert client.get("/keys/").status_code == 200
