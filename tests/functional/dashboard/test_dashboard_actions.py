"""Key actions on the dashboard: renew, rotate, disable, enable, revoke — as plain form POSTs (no JavaScript) and
as htmx requests — plus CSRF and who may act on which key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.dashboard.routes import RENEWAL_LIST_LIMIT
from app.database import utcnow
from tests.functional.dashboard_helpers import HTMX, KEY, create_key, page_text, post_action
from tests.functional.keyhelpers import audit_rows, bearer, new_key, rows
from tests.support import PASSWORD

WHOAMI = "/api/v1/whoami"


@pytest.fixture
def signed_in(app, client, auth):
    auth.register()
    return rows(app, "SELECT id FROM users WHERE email = 'ada@example.com'")[0]["id"]


def key_row(app, key_id: int) -> dict:
    return rows(app, "SELECT * FROM api_keys WHERE id = :id", id=key_id)[0]


def expiring_soon(app, user_id: int, name: str = "soon", days: float = 3) -> tuple[int, str]:
    """A key made 87 days ago with a 90-day life: it expires in `days` days."""
    return new_key(app, user_id, name=name, now=utcnow() - timedelta(days=90 - days), days=90)


# -- renewal list --------------------------------------------------------------------------------------------------

def test_a_key_expiring_soon_is_listed_and_renew_takes_it_off(app, client, signed_in):
    key_id, token = expiring_soon(app, signed_in)
    later_id, _ = new_key(app, signed_in, name="later", days=60)
    html = page_text(client.get("/keys/"))
    renewal = html[html.index('id="renewal-list"'):html.index("</section>", html.index('id="renewal-list"'))]
    assert "soon" in renewal and "later" not in renewal
    assert "Expires <time" in renewal
    assert "in 2 days" in renewal or "in 3 days" in renewal

    response = post_action(client, f"/keys/{key_id}/renew", next="/keys/")
    assert response.status_code == 302 and response.headers["Location"] == "/keys/"
    page = page_text(client.get("/keys/"))
    assert "Renewed soon: it now expires on" in page
    assert "Nothing expires in the next 14 days." in page
    expires = key_row(app, key_id)["expires_at"]
    assert str((utcnow() + timedelta(days=90)).date()) in str(expires)  # its original 90-day lifetime again
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    assert audit_rows(app, "key.renewed")[0]["actor"] == f"user:{signed_in}"
    assert later_id


def test_an_expired_key_is_listed_and_renewing_brings_it_back(app, client, signed_in):
    key_id, token = new_key(app, signed_in, name="lapsed", now=utcnow() - timedelta(days=40), days=35)
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401
    html = page_text(client.get("/keys/"))
    assert "Expired <time" in html
    post_action(client, f"/keys/{key_id}/renew")
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200


def renewal_section(html: str) -> str:
    start = html.index('id="renewal-list"')
    return html[start:html.index("</section>", start)]


def test_a_long_renewal_list_shows_the_soonest_and_says_how_many_more(app, client, signed_in):
    for number in range(RENEWAL_LIST_LIMIT + 2):
        expiring_soon(app, signed_in, name=f"soon-{number:02d}", days=1 + number / 2)
    renewal = renewal_section(page_text(client.get("/keys/")))
    assert renewal.count('<li class="renewal-item') == RENEWAL_LIST_LIMIT
    assert f"soon-{RENEWAL_LIST_LIMIT - 1:02d}" in renewal and f"soon-{RENEWAL_LIST_LIMIT:02d}" not in renewal
    assert f"Showing the {RENEWAL_LIST_LIMIT} soonest of {RENEWAL_LIST_LIMIT + 2}." in renewal
    assert 'href="/keys/?status=expiring"' in renewal and 'href="/keys/?status=expired"' in renewal
    # The link leads to all of them.
    listed = page_text(client.get("/keys/?status=expiring"))
    assert all(f"soon-{number:02d}" in listed for number in range(RENEWAL_LIST_LIMIT + 2))
    # Renewing one through htmx answers the list with the count brought up to date.
    [first] = rows(app, "SELECT id FROM api_keys WHERE name = 'soon-00'")
    renewed = page_text(post_action(client, f"/keys/{first['id']}/renew", headers=HTMX))
    assert f"Showing the {RENEWAL_LIST_LIMIT} soonest of {RENEWAL_LIST_LIMIT + 1}." in renewal_section(renewed)


def test_a_short_renewal_list_says_nothing_about_more(app, client, signed_in):
    for number in range(RENEWAL_LIST_LIMIT):
        expiring_soon(app, signed_in, name=f"soon-{number:02d}")
    renewal = renewal_section(page_text(client.get("/keys/")))
    assert renewal.count('<li class="renewal-item') == RENEWAL_LIST_LIMIT and "soonest of" not in renewal


def test_renew_through_htmx_answers_the_renewal_list_with_messages_out_of_band(app, client, signed_in):
    key_id, _ = expiring_soon(app, signed_in)
    response = post_action(client, f"/keys/{key_id}/renew", headers=HTMX)
    assert response.status_code == 200
    html = page_text(response)
    assert html.lstrip().startswith('<section id="renewal-list"')
    assert "Nothing expires in the next 14 days." in html
    assert '<div id="flashes" class="flashes" aria-live="polite" hx-swap-oob="true">' in html
    assert "Renewed soon" in html
    assert response.headers["HX-Trigger"] == "keys-changed"
    assert "<html" not in html


def test_rotate_from_the_renewal_list_shows_the_new_key_once_and_keeps_the_old_for_24_hours(app, client, signed_in):
    key_id, old = expiring_soon(app, signed_in)
    response = post_action(client, f"/keys/{key_id}/rotate", grace="24h")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = KEY.search(page_text(response)).group(0)
    assert new != old
    assert "The old secret keeps working until" in page_text(response)
    assert client.get(WHOAMI, headers=bearer(new)).status_code == 200
    assert client.get(WHOAMI, headers=bearer(old)).status_code == 200
    assert new not in page_text(client.get(f"/keys/{key_id}"))


@pytest.mark.parametrize(("grace", "old_status"), [("none", 401), ("1h", 200), ("7d", 200)])
def test_rotate_with_each_grace_period(app, client, signed_in, grace, old_status):
    key_id, old = create_key(client)
    response = post_action(client, f"/keys/{key_id}/rotate", grace=grace)
    new = KEY.search(page_text(response)).group(0)
    assert client.get(WHOAMI, headers=bearer(old)).status_code == old_status
    assert client.get(WHOAMI, headers=bearer(new)).status_code == 200


def test_rotate_refuses_an_unknown_grace_and_changes_nothing(app, client, signed_in):
    key_id, old = create_key(client)
    before = key_row(app, key_id)["secret_hash"]
    response = post_action(client, f"/keys/{key_id}/rotate", grace="forever")
    assert response.status_code == 422
    assert 'id="grace-error"' in page_text(response)
    assert not KEY.search(page_text(response))
    assert key_row(app, key_id)["secret_hash"] == before


# -- disable, enable, revoke ---------------------------------------------------------------------------------------

def test_disable_and_enable_without_javascript(app, client, signed_in):
    key_id, token = create_key(client, name="switchy")
    response = post_action(client, f"/keys/{key_id}/disable", next="/keys/?q=switchy")
    assert response.status_code == 302 and response.headers["Location"] == "/keys/?q=switchy"
    assert "Disabled switchy" in page_text(client.get("/keys/"))
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401

    post_action(client, f"/keys/{key_id}/enable")
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    assert [row["event"] for row in rows(app, "SELECT event FROM audit_events WHERE key_id = :id AND event "
                                              "LIKE 'key.%abled' ORDER BY id", id=key_id)] == \
        ["key.disabled", "key.enabled"]


def test_disable_through_htmx_swaps_the_row_and_updates_the_rest_out_of_band(app, client, signed_in):
    key_id, _ = create_key(client, name="rowdy")
    response = post_action(client, f"/keys/{key_id}/disable", headers=HTMX)
    html = page_text(response)
    assert html.lstrip().startswith(f'<tr id="key-{key_id}">')
    assert "Disabled</span>" in html
    assert f'hx-post="/keys/{key_id}/enable"' in html
    assert 'id="renewal-list" class="card renewal" aria-labelledby="renewal-heading" hx-swap-oob="true"' in html
    assert 'id="flashes" class="flashes" aria-live="polite" hx-swap-oob="true"' in html
    assert "HX-Request" in response.headers["Vary"]
    assert "HX-Trigger" not in response.headers  # the row swaps itself; the table does not reload under it


def test_revoke_without_javascript_asks_on_a_page_first(app, client, signed_in):
    key_id, token = create_key(client, name="doomed")
    confirm = client.get(f"/keys/{key_id}/revoke?next=/keys/")
    assert confirm.status_code == 200
    assert "Revoke “doomed”?" in page_text(confirm)

    # The detail page's form posted without JavaScript: no hx-confirm dialog ran, so the page asks first.
    asked = post_action(client, f"/keys/{key_id}/revoke", reason="laptop stolen")
    assert asked.status_code == 200
    assert "Revoke “doomed”?" in page_text(asked)
    assert 'value="laptop stolen"' in page_text(asked)
    assert key_row(app, key_id)["revoked_at"] is None

    done = post_action(client, f"/keys/{key_id}/revoke", reason="laptop stolen", confirmed="yes", next="/keys/")
    assert done.status_code == 302
    assert key_row(app, key_id)["revoked_reason"] == "laptop stolen"
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401
    assert "Revoked doomed" in page_text(client.get("/keys/"))


def test_revoke_through_htmx_needs_no_page_and_swaps_the_row(app, client, signed_in):
    key_id, token = create_key(client, name="quick")
    response = post_action(client, f"/keys/{key_id}/revoke", headers=HTMX)
    assert response.status_code == 200
    html = page_text(response)
    assert html.lstrip().startswith(f'<tr id="key-{key_id}">')
    assert "Revoked</span>" in html
    assert "hx-post" not in html.split("</tr>")[0]  # no more actions on a revoked key
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401


def test_a_too_long_reason_is_refused_inline_and_the_key_stays(app, client, signed_in):
    key_id, token = create_key(client)
    response = post_action(client, f"/keys/{key_id}/revoke", reason="x" * 501, confirmed="yes")
    assert response.status_code == 422
    assert 'id="reason-error"' in page_text(response)
    assert key_row(app, key_id)["revoked_at"] is None
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("action", ["renew", "enable", "disable", "rotate", "revoke"])
def test_a_revoked_key_stays_revoked(app, client, signed_in, action):
    key_id, token = create_key(client, name="dead")
    post_action(client, f"/keys/{key_id}/revoke", confirmed="yes")
    before = key_row(app, key_id)
    response = post_action(client, f"/keys/{key_id}/{action}", confirmed="yes", grace="none")
    assert response.status_code == 302  # back to the page, which says why
    assert key_row(app, key_id) == before
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 401
    assert "revoked key stays revoked" in page_text(client.get(f"/keys/{key_id}"))

    htmx = post_action(client, f"/keys/{key_id}/{action}", headers=HTMX, confirmed="yes", grace="none")
    # A row action answers its refusal in place; rotate has no row fragment, and sends htmx to the key's page too.
    assert htmx.status_code == (302 if action == "rotate" else 409)
    assert key_row(app, key_id) == before


# -- who may do what -----------------------------------------------------------------------------------------------

ACTIONS = ["renew", "disable", "enable", "rotate", "revoke"]


def test_another_users_key_is_not_found_on_every_page_and_action(app, client, auth, signed_in):
    from app.accounts import service as accounts

    with app.app_context():
        other = accounts.create_user("grace@example.com", PASSWORD).id
    theirs, token = new_key(app, other, name="not yours")
    before = key_row(app, theirs)

    for path in (f"/keys/{theirs}", f"/keys/{theirs}/revoke"):
        assert client.get(path).status_code == 404, path
    for action in ACTIONS:
        for headers in ({}, HTMX):
            response = post_action(client, f"/keys/{theirs}/{action}", headers=headers, confirmed="yes",
                                   grace="none")
            assert response.status_code == 404, action
    response = post_action(client, f"/keys/{theirs}", name="mine now", scopes=["keys:write"])
    assert response.status_code == 404
    assert "not yours" not in page_text(client.get("/keys/"))
    assert key_row(app, theirs) == before
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    assert client.get("/keys/999999").status_code == 404
    assert client.get(f"/keys/{2**64}").status_code == 404  # past any database integer: not found, not a 500
    assert post_action(client, f"/keys/{2**64}/disable").status_code == 404


@pytest.mark.parametrize("path", ["/keys/new", "/keys/{id}", "/keys/{id}/renew", "/keys/{id}/disable",
                                  "/keys/{id}/enable", "/keys/{id}/rotate", "/keys/{id}/revoke"])
@pytest.mark.parametrize("token", [None, "wrong"])
def test_every_form_post_needs_its_csrf_token(app, client, signed_in, path, token):
    key_id, _ = create_key(client)
    before = key_row(app, key_id)
    data = {"name": "csrf", "scopes": ["read:data"], "expiry": "30", "grace": "none", "confirmed": "yes"}
    if token:
        data["csrf_token"] = token
    response = client.post(path.format(id=key_id), data=data)
    assert response.status_code == 400
    assert key_row(app, key_id) == before
    assert rows(app, "SELECT count(*) AS n FROM api_keys")[0]["n"] == 1


def test_the_csrf_header_htmx_sends_is_accepted(app, client, signed_in):
    key_id, _ = create_key(client)
    html = page_text(client.get("/keys/"))
    header_token = html.split('hx-headers=\'{"X-CSRFToken": "')[1].split('"')[0]
    response = client.post(f"/keys/{key_id}/disable", headers={**HTMX, "X-CSRFToken": header_token})
    assert response.status_code == 200
    assert key_row(app, key_id)["disabled"]


def test_no_get_changes_anything(app, client, signed_in):
    key_id, _ = create_key(client)
    before = key_row(app, key_id)
    for action in ACTIONS:
        response = client.get(f"/keys/{key_id}/{action}")
        # Only revoke has a page of its own (the confirmation asked without JavaScript); the rest take POST alone.
        assert response.status_code == (200 if action == "revoke" else 405), action
    assert key_row(app, key_id) == before
