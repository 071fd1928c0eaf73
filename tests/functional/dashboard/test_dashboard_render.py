"""The key list's row forms as the page renders them: each carries its own CSRF input (written out once per form,
not rendered by WTForms), and posting one with exactly the fields it holds works, as it does with JavaScript off."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from app.audit.service import Actor
from app.database import utcnow
from app.keys import queries, service
from tests.functional.dashboard_helpers import HTMX, page_text
from tests.functional.keyhelpers import new_key, rows


class Forms(HTMLParser):
    """Every POST form on a page (its action and hidden fields) and every element id."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.ids: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids[attrs["id"]] += 1
        if tag == "form" and attrs.get("method") == "post":
            self.forms.append({"action": attrs["action"], "fields": {}})
        elif tag == "input" and attrs.get("type") == "hidden" and self.forms:
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value", "")


def forms_on(html: str) -> Forms:
    parser = Forms()
    parser.feed(html)
    return parser


@pytest.fixture
def keys(app, client, auth):
    """A signed-in user with a live key, a disabled one and one expiring in 3 days (in the renewal list)."""
    auth.register()
    user_id = rows(app, "SELECT id FROM users WHERE email = 'ada@example.com'")[0]["id"]
    live, _ = new_key(app, user_id, name="live", days=60)
    disabled, _ = new_key(app, user_id, name="off", days=60)
    soon, _ = new_key(app, user_id, name="soon", now=utcnow() - timedelta(days=87), days=90)
    with app.app_context():
        service.disable(queries.get_key(disabled), actor=Actor.cli())
    return {"live": live, "off": disabled, "soon": soon}


def test_every_row_form_carries_the_sessions_csrf_token(client, keys):
    page = forms_on(page_text(client.get("/keys/")))
    with client.session_transaction() as session:
        assert session.get("csrf_token")
    actions = {form["action"]: form["fields"] for form in page.forms}
    for path in (f"/keys/{keys['live']}/disable", f"/keys/{keys['off']}/enable", f"/keys/{keys['soon']}/renew",
                 f"/keys/{keys['soon']}/rotate"):
        assert actions[path]["csrf_token"], path
    tokens = {form["fields"].get("csrf_token") for form in page.forms}
    assert len(tokens) == 1  # made once per request: the logout form's and every row's alike
    assert [name for name, count in page.ids.items() if count > 1] == []


@pytest.mark.parametrize("action", ["disable", "enable", "renew"])
def test_a_row_form_posted_as_rendered_works_without_javascript(app, client, keys, action):
    key_id = {"disable": keys["live"], "enable": keys["off"], "renew": keys["soon"]}[action]
    path = f"/keys/{key_id}/{action}"
    form = next(form for form in forms_on(page_text(client.get("/keys/"))).forms if form["action"] == path)
    response = client.post(path, data=form["fields"])
    assert response.status_code == 302
    disabled = rows(app, "SELECT disabled FROM api_keys WHERE id = :id", id=key_id)[0]["disabled"]
    assert bool(disabled) is (action == "disable")


def test_the_row_an_htmx_action_returns_has_a_working_form_too(app, client, keys):
    page = forms_on(page_text(client.get("/keys/")))
    fields = next(form["fields"] for form in page.forms if form["action"] == f"/keys/{keys['live']}/disable")
    response = client.post(f"/keys/{keys['live']}/disable", data=fields, headers=HTMX)
    assert response.status_code == 200
    row = forms_on(page_text(response))
    enable = next(form["fields"] for form in row.forms if form["action"] == f"/keys/{keys['live']}/enable")
    assert client.post(f"/keys/{keys['live']}/enable", data=enable, headers=HTMX).status_code == 200
    assert not rows(app, "SELECT disabled FROM api_keys WHERE id = :id", id=keys["live"])[0]["disabled"]
