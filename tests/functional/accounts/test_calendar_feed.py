"""The expiry calendar: the secret feed URL made and reset on the account page, and the feed calendar apps fetch with
no session, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta

import icalendar
import pytest
from itsdangerous import TimestampSigner

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.models import AuditEvent
from app.audit.service import Actor
from app.database import utcnow
from app.extensions import db
from app.keys import service as keys
from app.keys.calendar import EXPIRED_SHOWN_DAYS
from app.keys.models import ApiKey
from app.log_redaction import logged_path
from tests.functional.keyhelpers import add_user, new_key
from tests.functional.processes import clean_env, free_port
from tests.functional.served import gunicorn, status_of
from tests.support import AuthActions, csrf_token_from

HTMX = {"HX-Request": "true"}
FEED_URL = re.compile(r'id="calendar-url"[^>]*value="(http://localhost/calendar/([^"/]+)\.ics)"')


def words(page) -> str:
    """The page's text with every run of white space as one space, as a reader sees it."""
    return " ".join(page.get_data(as_text=True).split())


def feed_url_on(page) -> tuple[str, str] | None:
    """(the calendar URL, its token) shown on an account page or fragment, or None."""
    match = FEED_URL.search(page.get_data(as_text=True))
    return (match.group(1), match.group(2)) if match else None


def signed_in(app, email: str):
    client = app.test_client()
    assert AuthActions(client).login(email=email).status_code == 302
    return client


def make_link(client, *, htmx: bool = False):
    token = csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post("/account/calendar", data={"csrf_token": token}, headers=HTMX if htmx else {})


def new_link(client) -> tuple[str, str]:
    response = make_link(client)
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    return feed_url_on(client.get("/account"))


def fetch(app, path: str):
    """A calendar app's request: a new client with no cookie at all."""
    return app.test_client().get(path, headers={"Accept": "text/calendar, */*", "User-Agent": "CalendarApp/1.0"})


def events(response) -> dict[str, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(response.data)
    return {str(event["SUMMARY"]): event for event in calendar.walk("VEVENT")}


@pytest.fixture
def app(apps):
    """The test app, where a key may have no expiry (such a key has no place in the calendar)."""
    return apps(ALLOW_NON_EXPIRING_KEYS="true")


@pytest.fixture
def people(app):
    """ada, with keys in every state the feed must tell apart, and grace with a key of her own."""
    ada, grace = add_user(app, "ada@example.com"), add_user(app, "grace@example.com")
    now = utcnow()
    ids = {
        "live": new_key(app, ada, name="billing; sync, v2", days=20)[0],
        "disabled": new_key(app, ada, name="paused", days=40)[0],
        "revoked": new_key(app, ada, name="revoked one", days=50)[0],
        "lately expired": new_key(app, ada, name="lately expired", days=1, now=now - timedelta(days=10))[0],
        "long expired": new_key(app, ada, name="long expired", days=1,
                                now=now - timedelta(days=EXPIRED_SHOWN_DAYS + 5))[0],
        "never expires": new_key(app, ada, name="forever", expires_at=None)[0],
        "grace's": new_key(app, grace, name="grace's key", days=20)[0],
    }
    with app.app_context():
        keys.disable(db.session.get(ApiKey, ids["disabled"]), actor=Actor.cli())
        keys.revoke(db.session.get(ApiKey, ids["revoked"]), "gone", actor=Actor.cli())
    return {"ada": ada, "grace": grace, **ids}


# -- the link on the account page ----------------------------------------------------------------------------------

def test_the_account_page_offers_a_link_then_shows_it_never_cached(app, people, monkeypatch):
    client = signed_in(app, "ada@example.com")
    page = client.get("/account")
    html = page.get_data(as_text=True)
    assert "Create calendar link" in html and "Reset link" not in html
    assert feed_url_on(page) is None
    assert "anyone who has it can read the names and expiry dates of your keys" in words(page)

    url, token = new_link(client)
    page = client.get("/account")
    html = page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert "Reset link" in html and "Create calendar link" not in html
    assert 'hx-history="false"' in html  # never kept in htmx's history cache either
    assert "Reset makes a new URL and the old one stops working at once" in words(page)
    # Later (a timed token would carry another stamp), the same URL: it can be compared with the calendar app's.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: int(time.time()) + 3600)
    assert feed_url_on(client.get("/account")) == (url, token)  # the URL stays put: it can be compared with the app's
    with app.app_context():
        assert accounts.user_for_calendar_token(token).id == people["ada"]
        assert [event.event for event in db.session.query(AuditEvent).filter(
            AuditEvent.event.like("user.calendar%"))] == ["user.calendar_link_created"]


def test_a_reset_ends_the_old_url_at_once_and_the_new_one_works(app, people):
    client = signed_in(app, "ada@example.com")
    old_url, old_token = new_link(client)
    assert fetch(app, old_url).status_code == 200
    response = make_link(client)
    assert response.status_code == 302
    follow = client.get("/account")
    assert "The old one stopped working" in words(follow)
    new_url, new_token = feed_url_on(follow)
    assert new_token != old_token
    assert fetch(app, old_url).status_code == 404
    assert fetch(app, new_url).status_code == 200
    with app.app_context():
        assert [event.event for event in db.session.query(AuditEvent).filter(
            AuditEvent.event.like("user.calendar%")).order_by(AuditEvent.id)] == [
            "user.calendar_link_created", "user.calendar_link_reset"]
        reset = db.session.query(AuditEvent).filter_by(event="user.calendar_link_reset").one()
        assert reset.actor_user_id == people["ada"] and reset.ip == "127.0.0.1"
        assert new_token not in str(reset.detail) and old_token not in str(reset.detail)


def test_htmx_gets_the_fragment_with_the_new_url_never_cached(app, people):
    client = signed_in(app, "ada@example.com")
    response = make_link(client, htmx=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="calendar-link"')
    assert 'id="flashes"' in html and 'hx-swap-oob="true"' in html and "calendar link is ready" in html
    url, _ = feed_url_on(response)
    assert fetch(app, url).status_code == 200

    again = make_link(client, htmx=True)
    assert again.status_code == 200 and "Reset link" in again.get_data(as_text=True)
    assert fetch(app, url).status_code == 404
    assert fetch(app, feed_url_on(again)[0]).status_code == 200


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_the_reset_needs_its_csrf_token(app, people, token, htmx):
    client = signed_in(app, "ada@example.com")
    url, _ = new_link(client)
    with app.app_context():
        nonce = db.session.get(User, people["ada"]).calendar_nonce
    headers = {**HTMX, **({"X-CSRFToken": token} if token else {})} if htmx else {}
    response = client.post("/account/calendar", data={"csrf_token": token} if token and not htmx else {},
                           headers=headers)
    assert response.status_code == 400
    assert fetch(app, url).status_code == 200  # nothing was reset
    with app.app_context():
        assert db.session.get(User, people["ada"]).calendar_nonce == nonce


def test_the_reset_needs_a_signed_in_person(app, people):
    client = app.test_client()
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    response = client.post("/account/calendar", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    with app.app_context():
        assert db.session.get(User, people["ada"]).calendar_nonce is None


# -- the feed ------------------------------------------------------------------------------------------------------

def test_the_feed_lists_the_owners_unrevoked_expiries_and_sets_no_cookie(app, people):
    url, _ = new_link(signed_in(app, "ada@example.com"))
    response = fetch(app, url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")  # no session was even read
    assert b"\r\n" in response.data and b"\n" not in response.data.replace(b"\r\n", b"")

    found = events(response)
    assert sorted(found) == sorted(["API key billing; sync, v2 expires", "API key paused expires",
                                    "API key lately expired expires"])
    with app.app_context():
        live = db.session.get(ApiKey, people["live"])
        expires = live.expires_at
        display_start = live.display_start
    event = found["API key billing; sync, v2 expires"]
    assert str(event["UID"]) == f"key-{people['live']}-{int(expires.timestamp())}@localhost"
    assert event["DTSTART"].dt == expires.replace(microsecond=0)
    assert str(event["URL"]) == f"http://localhost/keys/{people['live']}"
    description = str(event["DESCRIPTION"])
    assert f"Key: {display_start}..." in description and "Scopes: read:data" in description
    assert [str(alarm["TRIGGER"].dt) for alarm in event.walk("VALARM")] == ["-7 days, 0:00:00", "-1 day, 0:00:00"]
    assert "disabled" in str(found["API key paused expires"]["DESCRIPTION"])
    assert found["API key lately expired expires"].walk("VALARM") == []


def test_the_feed_links_to_the_public_base_url_when_it_is_set(apps):
    app = apps(PUBLIC_BASE_URL="https://keys.example.com")
    ada = add_user(app)
    key_id, _ = new_key(app, ada, name="tool")
    client = signed_in(app, "ada@example.com")
    make_link(client)
    html = client.get("/account").get_data(as_text=True)
    url = re.search(r'value="(https://keys\.example\.com/calendar/[^"]+\.ics)"', html).group(1)
    response = fetch(app, url.removeprefix("https://keys.example.com"))
    event = events(response)["API key tool expires"]
    assert str(event["URL"]) == f"https://keys.example.com/keys/{key_id}"
    assert str(event["UID"]).endswith("@keys.example.com")


def test_a_deactivated_users_feed_is_404_until_reactivated(app, people):
    url, _ = new_link(signed_in(app, "ada@example.com"))
    with app.app_context():
        ada = db.session.get(User, people["ada"])
        accounts.set_active(ada, False, actor=Actor.cli())
    assert fetch(app, url).status_code == 404
    with app.app_context():
        accounts.set_active(db.session.get(User, people["ada"]), True, actor=Actor.cli())
    assert fetch(app, url).status_code == 200


def _bad_tokens(app, people) -> dict[str, str]:
    with app.app_context():
        ada = db.session.get(User, people["ada"])
        ada.calendar_nonce = "the current nonce"
        db.session.commit()
        good = accounts.calendar_url_token(ada)
        from app.accounts import signed_links

        return {
            "garbage": "garbage",
            "forged signature": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
            "another purpose": signed_links.sign("password-reset", [people["ada"], "the current nonce"]),
            "an old nonce": signed_links.sign("calendar", [people["ada"], "an earlier nonce"]),
            "another user's id": signed_links.sign("calendar", [people["grace"], "the current nonce"]),
            "no such user": signed_links.sign("calendar", [999_999, "the current nonce"]),
            "an id past 32 bits": signed_links.sign("calendar", [2**40, "the current nonce"]),
            "a payload of another shape": signed_links.sign("calendar", {"user": people["ada"]}),
            "a true for an id": signed_links.sign("calendar", [True, "the current nonce"]),
            "huge": "A" * 100_000,
            "non-ASCII": "caf\u00e9.\u2603.\U0001f511",
            "percent-escapes": "%00%ff%2e%2e",
        }


def test_every_token_that_is_not_a_current_link_gets_the_same_404(app, people):
    bad = _bad_tokens(app, people)
    answers = set()
    for name, token in bad.items():
        response = fetch(app, f"/calendar/{token}.ics")
        assert response.status_code == 404, name
        assert "Set-Cookie" not in response.headers, name
        assert response.headers["Cache-Control"] == "no-store"
        answers.add((response.headers["Content-Type"], response.data))
    assert len(answers) == 1  # the same answer whatever was wrong
    # The control: the token these were made from opens the feed.
    with app.app_context():
        good = accounts.calendar_url_token(db.session.get(User, people["ada"]))
    assert fetch(app, f"/calendar/{good}.ics").status_code == 200


def test_a_signed_in_browser_opening_the_feed_gets_it_without_a_new_cookie(app, people):
    client = signed_in(app, "ada@example.com")
    url, _ = new_link(client)
    response = client.get(url)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_the_feed_writes_nothing(app, people):
    url, _ = new_link(signed_in(app, "ada@example.com"))
    with app.app_context():
        before = db.session.query(AuditEvent).count()
    for _ in range(3):
        assert fetch(app, url).status_code == 200
    assert fetch(app, "/calendar/nope.ics").status_code == 404
    with app.app_context():
        assert db.session.query(AuditEvent).count() == before


def test_logs_write_the_feeds_path_without_its_token(app, people):
    url, token = new_link(signed_in(app, "ada@example.com"))
    path = url.removeprefix("http://localhost")
    assert token not in logged_path(path) and logged_path(path) == "/calendar/[redacted]"
    assert logged_path("/keys/7") == "/keys/7"


def test_gunicorns_access_log_writes_the_feeds_path_without_its_token(tmp_path):
    """The production server's access log (gunicorn.conf.py), written to a file: the feed's path is there, its token
    is not, and other paths are written as they are."""
    access_log = tmp_path / "access.log"
    env = clean_env(tmp_path, KEYFOB_ENV="production", SECRET_KEY="k" * 48, KEY_PEPPER="p" * 48,
                    KEYFOB_BIND=f"127.0.0.1:{free_port()}", WEB_CONCURRENCY="1",
                    GUNICORN_CMD_ARGS=f"--access-logfile {access_log}")
    token = "WzEsImFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6Il0.aw4-nw.q6RyohGEZxglGZE02MiJeoFlPu4"
    with gunicorn(env, tmp_path / "gunicorn.log") as (base, _):
        assert status_of(f"{base}/calendar/{token}.ics") == 404
        assert status_of(f"{base}/healthz") == 200
    written = access_log.read_text()
    assert '"GET /calendar/[redacted]" 404' in written
    assert '"GET /healthz" 200' in written
    assert token not in written and token[:20] not in written and token[-20:] not in written


@pytest.fixture
def fragile_app(apps):
    """An app that answers an exception as production does (the test configuration re-raises it). Built before the
    test runs: the migrations configure logging, which would drop the test's log capture."""
    app = apps(PROPAGATE_EXCEPTIONS=False)
    add_user(app)
    return app


def test_an_unexpected_error_in_the_feed_is_logged_without_its_token(fragile_app, monkeypatch, caplog):
    app = fragile_app
    url, token = new_link(signed_in(app, "ada@example.com"))

    def broken(*args, **kwargs):
        raise RuntimeError("the calendar could not be written")

    monkeypatch.setattr("app.auth.calendar.expiry_calendar", broken)
    with caplog.at_level(logging.ERROR, logger=app.logger.name):
        assert fetch(app, url).status_code == 500
    logged = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(logged) == 1 and "GET /calendar/[redacted]: RuntimeError" in logged[0]
    assert token not in caplog.text
