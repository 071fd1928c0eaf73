"""The key pages through the Flask test client: list, create, the key shown once, detail, edit."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
import sqlalchemy as sa

from app.database import utcnow
from app.extensions import db
from app.keys.models import ApiKey
from tests.functional.dashboard_helpers import KEY, create_form, create_key, page_text, token_on
from tests.functional.keyhelpers import all_stored_values, bearer, count, flush, new_key, rows
from tests.support import on_postgres, query_plan

PAGES = ["/keys/", "/keys/new", "/keys/1", "/keys/1/revoke"]


@pytest.fixture
def signed_in(app, client, auth):
    """A client signed in as ada@example.com; yields the user's id."""
    auth.register()
    return rows(app, "SELECT id FROM users WHERE email = 'ada@example.com'")[0]["id"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_signed_in_user(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_a_new_user_sees_what_to_do(client, signed_in):
    html = page_text(client.get("/keys/"))
    assert "You have no API keys yet." in html
    assert 'href="/keys/new"' in html
    assert "Nothing expires in the next 14 days." in html


def test_the_create_form_offers_the_catalogue_and_the_policy(client, signed_in):
    html = page_text(client.get("/keys/new"))
    for scope, description in [("keys:read", "See your API keys"), ("read:data", "Read data")]:
        assert f'value="{scope}"' in html
        assert description in html
    for days in (7, 30, 90, 365):
        assert f'value="{days}"' in html
    assert 'value="never"' not in html  # ALLOW_NON_EXPIRING_KEYS is off
    assert '<label for="name">Name</label>' in html


def test_create_shows_the_key_once_and_stores_only_its_digest(app, client, signed_in):
    response = create_form(client, name="billing sync", scopes=["read:data", "write:data"], expiry="30",
                           allowed_ips="10.0.0.0/8\n2001:db8::/32", rate_limit="120", description="nightly job")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = page_text(response)
    token = KEY.search(html).group(0)
    assert "It will not be shown again" in html
    assert 'data-copy="new-key"' in html
    assert 'hx-history="false"' in html

    key = rows(app, "SELECT * FROM api_keys")[0]
    assert (key["name"], key["description"], key["scopes"]) == ("billing sync", "nightly job", "read:data write:data")
    assert key["allowed_ips"] == "10.0.0.0/8\n2001:db8::/32"
    assert key["rate_limit"] == 120
    assert token not in all_stored_values(app)
    assert token not in page_text(client.get(f"/keys/{key['id']}"))
    assert token not in page_text(client.get("/keys/"))

    # The new key works at once, from an allowed address.
    api = client.get("/api/v1/whoami", headers=bearer(token), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert api.status_code == 200
    assert api.get_json()["scopes"] == ["read:data", "write:data"]


def test_create_with_a_date_uses_that_date(app, client, signed_in):
    day = (utcnow() + timedelta(days=45)).date()
    create_key(client, expiry="date", expires_on=day.isoformat())
    stored = rows(app, "SELECT expires_at FROM api_keys")[0]["expires_at"]
    assert str(stored).startswith(day.isoformat())


@pytest.mark.parametrize(("fields", "field_id", "message"), [
    ({"name": ""}, "name", "Give the key a name"),
    ({"name": "x" * 101}, "name", "at most 100"),
    ({"description": "x" * 501}, "description", "at most 500"),
    ({"scopes": ["read:data", "admin:everything"]}, "scopes", "Unknown scope: admin:everything"),
    ({"allowed_ips": "10.0.0.0/8\nnot-an-ip"}, "allowed_ips", "'not-an-ip' is not an IP address"),
    ({"rate_limit": "many"}, "rate_limit", "Not a valid integer"),
    ({"rate_limit": "0"}, "rate_limit", "between 1 and"),
    ({"expiry": "date", "expires_on": ""}, "expires_on", "Choose a date"),
    ({"expiry": "date", "expires_on": "2001-01-01"}, "expires_on", "must be in the future"),
    ({"expiry": "date", "expires_on": (utcnow() + timedelta(days=400)).date().isoformat()}, "expires_on",
     "at most 365 days"),
    ({"expiry": "never"}, "expiry", "Not a valid choice"),
    ({"expiry": "3650"}, "expiry", "Not a valid choice"),
])
def test_bad_input_is_refused_next_to_the_field_and_nothing_is_made(app, client, signed_in, fields, field_id,
                                                                     message):
    response = create_form(client, **fields)
    assert response.status_code == 422
    html = page_text(response)
    assert f'id="{field_id}-error"' in html
    error = unescape(html[html.index(f'id="{field_id}-error"'):][:400])
    assert message in error
    assert not KEY.search(html)
    assert count(app, "api_keys") == 0
    assert count(app, "audit_events") == 0


def test_create_keeps_what_was_typed_when_refused(client, signed_in):
    html = page_text(create_form(client, name="keep me", allowed_ips="bad", description="kept too"))
    assert 'value="keep me"' in html
    assert "kept too" in html


def test_the_list_shows_each_key_with_its_facts(app, client, signed_in):
    key_id, token = create_key(client, name="reporting", scopes=["read:data"])
    client.get("/api/v1/whoami", headers=bearer(token))
    flush(app)
    html = page_text(client.get("/keys/"))
    row = html[html.index(f'id="key-{key_id}"'):]
    row = row[:row.index("</tr>")]
    assert "reporting" in row and "read:data" in row
    assert ">1<" in row  # usage count
    assert "Active" in row
    assert 'title="20' in row  # exact dates on hover


def _bulk_keys(app, user_id: int, n: int, *, name: str = "bulk", **values) -> None:
    now = utcnow()
    with app.app_context():
        db.session.execute(sa.insert(ApiKey), [
            {"user_id": user_id, "name": f"{name} {i}", "secret_hash": f"{name}-{i:060d}"[-64:],
             "display_start": "kf_x", "created_at": now - timedelta(seconds=i),
             "expires_at": now + timedelta(days=90), **values}
            for i in range(n)])
        db.session.commit()


def test_the_list_is_paged_newest_first(app, client, signed_in):
    _bulk_keys(app, signed_in, 60)
    first = page_text(client.get("/keys/"))
    assert first.count('<tr id="key-') == 25
    assert "bulk 0<" in first and "bulk 25<" not in first
    assert "Page 1 of 3 (60 keys)" in first
    third = page_text(client.get("/keys/?page=3"))
    assert third.count('<tr id="key-') == 10
    assert "bulk 59<" in third
    assert page_text(client.get("/keys/?page=99")).count('<tr id="key-') == 10  # past the end: the last page


def test_search_and_status_filters(app, client, signed_in):
    live_id, _ = create_key(client, name="alpha live")
    disabled_id, _ = create_key(client, name="alpha disabled")
    other_id, _ = create_key(client, name="beta")
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == disabled_id).values(disabled=True))
        db.session.commit()

    found = page_text(client.get("/keys/?q=alpha"))
    assert f'id="key-{live_id}"' in found and f'id="key-{disabled_id}"' in found
    assert f'id="key-{other_id}"' not in found

    disabled = page_text(client.get("/keys/?status=disabled"))
    assert f'id="key-{disabled_id}"' in disabled and f'id="key-{live_id}"' not in disabled

    assert "No keys match" in page_text(client.get("/keys/?q=%25"))  # LIKE wildcards are literal
    assert "No keys match" in page_text(client.get("/keys/?q=zzz"))
    # An unknown filter falls back to the default list rather than failing.
    assert f'id="key-{other_id}"' in page_text(client.get("/keys/?status=bogus"))


def test_revoked_and_expired_keys_are_apart_in_a_collapsed_section(app, client, signed_in):
    live_id, _ = create_key(client, name="still good")
    gone_id, _ = new_key(app, signed_in, name="gone", days=30)
    old_id, _ = new_key(app, signed_in, name="lapsed", now=utcnow() - timedelta(days=60), days=10)
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == gone_id).values(revoked_at=utcnow()))
        db.session.commit()
    html = page_text(client.get("/keys/"))
    ended = html[html.index('<details class="card ended">'):]
    assert "Revoked and expired keys (2)" in ended
    assert f'id="key-{gone_id}"' in ended and f'id="key-{old_id}"' in ended
    assert f'id="key-{live_id}"' not in ended
    active = html[:html.index('<details class="card ended">')]
    assert f'id="key-{gone_id}"' not in active


def test_detail_shows_settings_usage_chart_and_events(app, client, signed_in):
    key_id, token = create_key(client, name="charted", rate_limit="60", allowed_ips="127.0.0.1")
    for _ in range(3):
        assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    client.get("/api/v1/whoami", headers=bearer(token), environ_base={"REMOTE_ADDR": "192.0.2.9"})  # refused
    flush(app)
    html = page_text(client.get(f"/keys/{key_id}"))
    assert "60 requests per minute" in html
    assert "127.0.0.1/32" in html
    assert "3 valid,\n    1 failed" in html or ("3 valid" in html and "1 failed" in html)
    assert html.count('class="bar-valid"') == 1
    assert html.count('class="bar-failed"') == 1
    assert "ip_not_allowed: from 192.0.2.9" in html  # the refused request, with its IP
    assert ">created<" in html


def test_edit_changes_settings_and_refuses_bad_ones_inline(app, client, signed_in):
    key_id, _ = create_key(client, name="before")
    form = {"csrf_token": token_on(client, f"/keys/{key_id}"), "name": "after", "description": "d",
            "scopes": ["read:data", "keys:read"], "allowed_ips": "", "rate_limit": "30"}
    response = client.post(f"/keys/{key_id}", data=form)
    assert response.status_code == 302
    assert "Saved after." in page_text(client.get(response.headers["Location"]))
    key = rows(app, "SELECT name, scopes, rate_limit FROM api_keys")[0]
    assert key == {"name": "after", "scopes": "keys:read read:data", "rate_limit": 30}

    response = client.post(f"/keys/{key_id}", data={**form, "name": "worse", "allowed_ips": "300.1.1.1"})
    assert response.status_code == 422
    assert 'id="allowed_ips-error"' in page_text(response)
    assert rows(app, "SELECT name FROM api_keys")[0]["name"] == "after"


def test_htmx_gets_the_list_fragment_and_every_answer_varies_on_hx_request(client, signed_in):
    create_key(client, name="fragmented")
    full = client.get("/keys/")
    fragment = client.get("/keys/", headers={"HX-Request": "true"})
    assert "<html" in page_text(full)
    assert "<html" not in page_text(fragment)
    assert page_text(fragment).lstrip().startswith("{#") is False and 'id="key-list"' in page_text(fragment)
    for response in (full, fragment):
        assert "HX-Request" in response.headers["Vary"]
    # A history restore and a boosted request want the whole page.
    assert "<html" in page_text(client.get("/keys/", headers={"HX-Request": "true",
                                                              "HX-History-Restore-Request": "true"}))
    assert "<html" in page_text(client.get("/keys/", headers={"HX-Request": "true", "HX-Boosted": "true"}))


def test_every_mistake_is_shown_at_once(app, client, signed_in):
    html = page_text(create_form(client, name="", scopes=["nope:scope"], allowed_ips="10.0.0.300", rate_limit="0"))
    for field_id in ("name", "scopes", "allowed_ips", "rate_limit"):
        assert f'id="{field_id}-error"' in html, field_id
    assert count(app, "api_keys") == 0


def test_ten_thousand_keys_still_give_one_small_page(app, client, signed_in):
    _bulk_keys(app, signed_in, 10_000)
    html = page_text(client.get("/keys/?page=200"))
    assert html.count('<tr id="key-') == 25
    assert "Page 200 of 400 (10,000 keys)" in html
    with app.app_context():
        plan = query_plan("SELECT id FROM api_keys WHERE user_id = :u ORDER BY created_at DESC, id DESC "
                          "LIMIT 25 OFFSET 4975", u=signed_in)
    # Every key here is this one user's, so PostgreSQL's planner may as well walk the created_at index: the page is
    # read in order through an index either way, never by sorting a full scan.
    indexes = ["ix_api_keys_user_id_created_at"] + (["ix_api_keys_created_at"] if on_postgres() else [])
    assert any(index in plan for index in indexes) and "Seq Scan" not in plan, plan
