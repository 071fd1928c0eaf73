"""The admin pages through the Flask test client: who may see them, and every page, filter and action."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.models import Alert
from app.database import utcnow
from app.extensions import db
from app.keys.models import ApiKey
from tests.functional.keyhelpers import audit_rows, bearer, flush, new_key, rows
from tests.support import PASSWORD, AuthActions, csrf_token_from, query_plan

PAGES = ["/admin/", "/admin/keys", "/admin/keys/{key}", "/admin/alerts", "/admin/health", "/admin/users",
         "/admin/audit", "/admin/audit.csv"]
ACTIONS = ["/admin/keys/{key}/disable", "/admin/keys/{key}/enable", "/admin/keys/{key}/revoke",
           "/admin/keys/{key}/unsuspend", "/admin/alerts/{alert}/acknowledge", "/admin/users/{user}/promote",
           "/admin/users/{user}/demote", "/admin/users/{user}/deactivate", "/admin/users/{user}/reactivate"]


@pytest.fixture
def world(app):
    """An admin (ada), a user (grace) with a key and an open alert. Returns a dict of their ids and the key."""
    with app.app_context():
        admin = accounts.create_user("ada@example.com", PASSWORD, is_admin=True).id
        user = accounts.create_user("grace@example.com", PASSWORD).id
    key, token = new_key(app, user, name="grace's key", scopes=("read:data",))
    with app.app_context():
        alert = Alert(kind="rate_limit_suspension", key_id=key, ip="192.0.2.1", message="kept exceeding its limit")
        db.session.add(alert)
        db.session.commit()
        alert_id = alert.id
    return {"admin": admin, "user": user, "key": key, "token": token, "alert": alert_id}


def signed_in(app, email: str):
    client = app.test_client()
    assert AuthActions(client).login(email=email).status_code == 302
    return client


def post(client, path: str, **data):
    token = csrf_token_from(client.get("/account").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


def fill(path: str, world: dict) -> str:
    return path.format(key=world["key"], alert=world["alert"], user=world["user"])


# -- who may see what ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES + ACTIONS)
@pytest.mark.parametrize("who", ["anonymous", "user"])
def test_only_admins_get_in(app, world, path, who):
    client = app.test_client() if who == "anonymous" else signed_in(app, "grace@example.com")
    action, path = path in ACTIONS, fill(path, world)
    before = rows(app, "SELECT * FROM api_keys"), rows(app, "SELECT is_admin, is_active FROM users ORDER BY id")
    response = client.post(path, data={}) if action else client.get(path)
    if who == "anonymous" and action:
        # An anonymous POST has no session, so no CSRF token: refused before the login check, which is fine.
        assert response.status_code == 400
    elif who == "anonymous":
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    else:
        if action:
            response = post(client, path)
        assert response.status_code == 403
    assert (rows(app, "SELECT * FROM api_keys"), rows(app, "SELECT is_admin, is_active FROM users ORDER BY id")) \
        == before


@pytest.mark.parametrize("path", PAGES)
def test_admins_see_every_page(app, world, path):
    client = signed_in(app, "ada@example.com")
    response = client.get(fill(path, world))
    assert response.status_code == 200
    if not path.endswith(".csv"):
        assert 'aria-label="Admin"' in response.get_data(as_text=True)


def test_the_nav_shows_admin_only_to_admins(app, world):
    assert 'href="/admin/"' in signed_in(app, "ada@example.com").get("/keys/").get_data(as_text=True)
    assert 'href="/admin/"' not in signed_in(app, "grace@example.com").get("/keys/").get_data(as_text=True)


# -- pages -------------------------------------------------------------------------------------------------------

def test_the_overview_counts_and_charts_usage(app, world):
    client = signed_in(app, "ada@example.com")
    for _ in range(3):
        assert client.get("/api/v1/whoami", headers=bearer(world["token"])).status_code == 200
    token = world["token"]
    client.get("/api/v1/whoami", headers=bearer(token[:-1] + ("1" if token.endswith("0") else "0")))  # a typo
    flush(app)
    html = client.get("/admin/").get_data(as_text=True)
    totals = dict(zip([label for label in _labels(html)], _values(html), strict=True))
    assert totals["Users"] == 2 and totals["Active keys"] == 1
    assert totals["Requests today"] == 3 and totals["Failed attempts today"] == 1
    assert totals["Open alerts"] == 1
    assert html.count('class="bar-valid"') == 1
    assert "grace&#39;s key" in html and "kept exceeding its limit" in html


def _labels(html: str) -> list[str]:
    return [part.split("</span>")[0] for part in html.split('class="total-label">')[1:]]


def _values(html: str) -> list[int]:
    return [int(part.split("</span>")[0].replace(",", "")) for part in html.split('class="total-value">')[1:]]


def _listed(html: str) -> list[str]:
    return [part.split('"')[0] for part in html.split('<tr id="admin-key-')[1:]]


def test_all_keys_search_filter_and_sort(app, world):
    client = signed_in(app, "ada@example.com")
    mine, _ = new_key(app, world["admin"], name="ada deploy", scopes=("keys:read", "read:data"))
    idle, _ = new_key(app, world["admin"], name="old idle", now=utcnow() - timedelta(days=40), days=300)
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == mine).values(usage_count=50))
        db.session.commit()
    grace = str(world["key"])

    def listed(**query):
        return _listed(client.get("/admin/keys", query_string=query).get_data(as_text=True))

    assert set(listed()) == {str(mine), str(idle), grace}
    assert listed(q="grace@") == [grace]                    # by owner email
    assert listed(q="deploy") == [str(mine)]                # by name
    assert listed(owner="grace@example.com") == [grace]
    assert listed(scope="keys:read") == [str(mine)]
    assert listed(scope="read") == []                       # a scope is matched whole
    assert listed(idle=30) == [str(idle)]
    assert listed(expiring=40) == [str(mine), grace]
    assert listed(sort="most_used")[0] == str(mine)
    assert listed(status="revoked") == []
    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == idle).values(expires_at=None))
        db.session.commit()
    assert listed(never_expiring="y") == [str(idle)]
    assert listed(status="active", owner="ada@example.com", sort="name") == [str(mine), str(idle)]
    refused = client.get("/admin/keys?idle=0")
    assert refused.status_code == 200  # a bad filter is shown next to its field and ignored, never a 500
    assert 'id="idle-error"' in refused.get_data(as_text=True)
    assert set(_listed(refused.get_data(as_text=True))) == {str(mine), str(idle), grace}


def test_all_keys_pages_through_many(app, world):
    now = utcnow()
    with app.app_context():
        db.session.execute(sa.insert(ApiKey), [
            {"user_id": world["user"], "name": f"bulk {i}", "secret_hash": f"{i:064d}", "display_start": "kf_b",
             "created_at": now - timedelta(seconds=i), "expires_at": now + timedelta(days=30)} for i in range(120)])
        db.session.commit()
    client = signed_in(app, "ada@example.com")
    page = client.get("/admin/keys", query_string={"page": 3, "q": "bulk"}).get_data(as_text=True)
    assert len(_listed(page)) == 25
    assert "Page 3 of 5" in page and "q=bulk" in page.split('rel="next"')[1][:200]


def test_key_detail_shows_events_with_ip_and_user_agent(app, world):
    client = signed_in(app, "ada@example.com")
    client.get("/api/v1/whoami", headers={**bearer(world["token"]), "User-Agent": "billing-sync/2.1"},
               environ_base={"REMOTE_ADDR": "198.51.100.7"})
    # A refused request (the key lacks keys:read) is an audit event, with where it came from.
    client.get("/api/v1/api-keys", headers={**bearer(world["token"]), "User-Agent": "billing-sync/2.1"},
               environ_base={"REMOTE_ADDR": "198.51.100.7"})
    flush(app)
    html = client.get(f"/admin/keys/{world['key']}").get_data(as_text=True)
    assert "grace@example.com" in html
    assert 'class="usage-chart"' in html
    assert ">key.created<" in html
    assert '<td class="user-agent">billing-sync/2.1</td>' in html and "<td>198.51.100.7</td>" in html


def test_key_health_lists_risky_keys_and_disables_in_one_click(app, world):
    now = utcnow()
    with app.app_context():
        db.session.execute(sa.insert(ApiKey), [
            {"user_id": world["user"], "name": "no expiry", "secret_hash": "a" * 64, "display_start": "kf_a",
             "created_at": now, "expires_at": None},
            {"user_id": world["user"], "name": "all powerful", "secret_hash": "b" * 64, "display_start": "kf_b",
             "created_at": now, "expires_at": now + timedelta(days=5),
             "scope_text": "keys:read keys:write read:data write:data"},
            {"user_id": world["user"], "name": "dusty", "secret_hash": "c" * 64, "display_start": "kf_c",
             "created_at": now - timedelta(days=45), "expires_at": now + timedelta(days=5)},
        ])
        db.session.commit()
    client = signed_in(app, "ada@example.com")
    html = client.get("/admin/health").get_data(as_text=True)
    sections = {title: html.split(title)[1].split("</section>")[0] for title in
                ("Keys that never expire", "Keys that hold every scope", "Keys that not used for 30 days or more",
                 "Keys that belong to a deactivated user")}
    assert "no expiry" in sections["Keys that never expire"]
    assert "all powerful" in sections["Keys that hold every scope"]
    assert "dusty" in sections["Keys that not used for 30 days or more"]
    assert "None." in sections["Keys that belong to a deactivated user"]

    dusty = rows(app, "SELECT id FROM api_keys WHERE name = 'dusty'")[0]["id"]
    response = post(client, f"/admin/keys/{dusty}/disable", next="/admin/health")
    assert response.headers["Location"] == "/admin/health"
    assert rows(app, "SELECT disabled FROM api_keys WHERE id = :id", id=dusty)[0]["disabled"]
    assert audit_rows(app, "key.disabled")[-1]["actor"] == f"user:{world['admin']}"


# -- actions -----------------------------------------------------------------------------------------------------

def test_admin_key_actions_work_and_are_audited(app, world):
    client = signed_in(app, "ada@example.com")
    key, token = world["key"], world["token"]
    post(client, f"/admin/keys/{key}/disable")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401
    post(client, f"/admin/keys/{key}/enable")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200

    with app.app_context():
        db.session.execute(sa.update(ApiKey).where(ApiKey.id == key).values(
            suspended_until=utcnow() + timedelta(minutes=10)))
        db.session.commit()
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401
    post(client, f"/admin/keys/{key}/unsuspend")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200

    assert post(client, f"/admin/keys/{key}/revoke", reason="x" * 501).status_code == 302
    assert rows(app, "SELECT revoked_at FROM api_keys WHERE id = :id", id=key)[0]["revoked_at"] is None
    post(client, f"/admin/keys/{key}/revoke", reason="policy breach")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401
    events = [row["event"] for row in rows(app, "SELECT event FROM audit_events WHERE actor = :a ORDER BY id",
                                                a=f"user:{world['admin']}")]
    assert events == ["key.disabled", "key.enabled", "key.unsuspended", "key.revoked"]
    assert "policy breach" in client.get(f"/admin/keys/{key}").get_data(as_text=True)
    assert post(client, f"/admin/keys/{2**64}/disable").status_code == 404


def test_acknowledging_an_alert_takes_it_off_the_open_list(app, world):
    client = signed_in(app, "ada@example.com")
    assert "kept exceeding its limit" in client.get("/admin/alerts").get_data(as_text=True)
    post(client, f"/admin/alerts/{world['alert']}/acknowledge")
    assert "No open alerts." in client.get("/admin/alerts").get_data(as_text=True)
    assert "acknowledged" in client.get("/admin/alerts?show=all").get_data(as_text=True)
    assert audit_rows(app, "alert.acknowledged")[0]["actor_user_id"] == world["admin"]
    assert post(client, "/admin/alerts/999/acknowledge").status_code == 404


def test_users_promote_demote_deactivate_and_reactivate(app, world):
    client = signed_in(app, "ada@example.com")
    grace = signed_in(app, "grace@example.com")
    user, token = world["user"], world["token"]
    html = client.get("/admin/users").get_data(as_text=True)
    row = html.split(f'id="user-{user}"')[1].split("</tr>")[0]
    assert '<td class="number">1</td><td class="number">1</td>' in row  # one live key of one

    post(client, f"/admin/users/{user}/promote")
    assert rows(app, "SELECT is_admin FROM users WHERE id = :id", id=user)[0]["is_admin"]
    post(client, f"/admin/users/{user}/demote")
    post(client, f"/admin/users/{user}/deactivate")
    # Their keys stop at once and their session ends.
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 401
    assert grace.get("/keys/").status_code == 302
    post(client, f"/admin/users/{user}/reactivate")
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    assert [row["event"] for row in rows(app, "SELECT event FROM audit_events WHERE event LIKE 'user.%' ORDER BY id")] \
        == ["user.promoted", "user.demoted", "user.deactivated", "user.reactivated"]


def test_an_admin_cannot_demote_or_deactivate_themselves(app, world):
    client = signed_in(app, "ada@example.com")
    for action in ("demote", "deactivate"):
        post(client, f"/admin/users/{world['admin']}/{action}")
    with app.app_context():
        me = db.session.get(User, world["admin"])
        assert me.is_admin and me.is_active


def test_the_audit_log_filters_and_exports_csv(app, world):
    client = signed_in(app, "ada@example.com")
    post(client, f"/admin/keys/{world['key']}/disable")
    client.get("/api/v1/whoami", headers={**bearer(world["token"]), "User-Agent": "=HYPERLINK(\"http://evil\")"})
    flush(app)

    by_user = client.get("/admin/audit", query_string={"user": "ada@example.com"}).get_data(as_text=True)
    assert "<td>key.disabled</td>" in by_user and "<td>key.created</td>" not in by_user
    by_event = client.get("/admin/audit", query_string={"event": "key.created"}).get_data(as_text=True)
    assert "<td>key.created</td>" in by_event and "<td>key.disabled</td>" not in by_event
    by_key = client.get("/admin/audit", query_string={"key": str(world["key"])}).get_data(as_text=True)
    assert "<td>key.disabled</td>" in by_key
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert "No events match." in client.get("/admin/audit", query_string={"since": tomorrow}).get_data(as_text=True)

    export = client.get("/admin/audit.csv", query_string={"key": str(world["key"])})
    assert export.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in export.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    assert table[0] == ["time", "event", "actor", "key_id", "key", "detail", "ip", "user_agent"]
    assert {row[1] for row in table[1:]} >= {"key.created", "key.disabled", "key.verify_failed"}
    agents = [row[7] for row in table[1:] if row[7]]
    assert agents and all(not agent.startswith("=") for agent in agents)  # no formula reaches a spreadsheet


def test_an_export_cut_short_closes_its_database_cursor(app, world):
    """A download the client abandons after the first rows must close the query (on PostgreSQL a server-side
    cursor; left open, it warns when collected, which this suite turns into a failure)."""
    client = signed_in(app, "ada@example.com")
    for number in range(3):
        new_key(app, world["user"], name=f"row {number}")
    export = client.get("/admin/audit.csv")
    assert next(iter(export.response)).startswith(b"time,event")
    export.close()
    assert client.get("/admin/audit.csv").status_code == 200


def test_a_hundred_thousand_keys_give_one_page_through_an_index(app, world):
    now = utcnow()
    with app.app_context():
        for start in range(0, 100_000, 20_000):
            db.session.execute(sa.insert(ApiKey), [
                {"user_id": world["user"], "name": f"k{i}", "secret_hash": f"{i:064d}", "display_start": "kf_k",
                 "created_at": now - timedelta(seconds=i), "expires_at": now + timedelta(days=30)}
                for i in range(start, start + 20_000)])
        db.session.commit()
        plan = query_plan("SELECT id FROM api_keys ORDER BY created_at DESC, id DESC LIMIT 25 OFFSET 50000")
    assert "ix_api_keys_created_at" in plan
    html = signed_in(app, "ada@example.com").get("/admin/keys", query_string={"page": 2000}).get_data(as_text=True)
    assert len(_listed(html)) == 25
    assert "Page 2000 of 4001" in html
