"""Error pages for people, the JSON error shape for the API, and the health probes."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db


def test_html_404_for_browsers(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is nothing here" in response.get_data(as_text=True)


def test_json_errors_under_api(client):
    response = client.get("/api/v1/nothing")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": "not_found", "message": response.get_json()["message"]}
    assert response.get_json()["message"]


def test_json_errors_for_clients_that_ask_for_json(client):
    response = client.get("/logout", headers={"Accept": "application/json"})
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_csrf_error_is_json_for_api_clients(client):
    response = client.post("/login", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "csrf_failed"


def test_healthz_does_not_touch_the_database(app, client):
    with app.app_context():
        queries = []
        sa.event.listen(db.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert queries == []


def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_and_pages_answer_503_when_the_database_is_unreachable(tmp_path, apps):
    from tests.support import unreachable_database_url

    app = apps(DATABASE_URL=unreachable_database_url(tmp_path), migrate=False)
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert response.headers["Retry-After"] == "5"
    assert client.get("/healthz").status_code == 200

    with client.session_transaction() as session:
        session["_user_id"] = "1:whatever"  # a signed-in visitor makes the page load the user
    page = client.get("/account")
    assert page.status_code == 503
    assert "cannot reach its database" in page.get_data(as_text=True)
    assert page.headers["Retry-After"] == "5"
    api = client.get("/account", headers={"Accept": "application/json"})
    assert api.status_code == 503
    assert api.get_json()["error"] == "service_unavailable"


def test_the_favicon_is_served_where_browsers_look_and_where_pages_point(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert icon.get_data()[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert icon.headers["Cache-Control"] == "public, max-age=604800"
    icon.close()
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in page
    svg = client.get("/static/img/favicon.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    svg.close()
