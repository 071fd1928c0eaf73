"""/metrics: who may read it, what it counts, and that it adds up across gunicorn workers."""

from __future__ import annotations

import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.accounts import service as accounts
from app.accounts.models import User
from app.audit.models import Alert
from app.audit.service import Actor
from app.extensions import db
from tests.functional.keyhelpers import bearer, flush, new_key
from tests.functional.served import gunicorn_with_a_key, status_of
from tests.support import PASSWORD, AuthActions

TOKEN = "m" * 40


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus's text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{{{re.escape(wanted)}}} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def metrics_app(apps):
    app = apps(METRICS_TOKEN=TOKEN)
    with app.app_context():
        accounts.create_user("admin@example.com", PASSWORD, is_admin=True)
        user = accounts.create_user("user@example.com", PASSWORD).id
    return app, user


def scrape(client) -> str:
    response = client.get("/metrics", headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.get_data(as_text=True)


def test_who_may_read_the_metrics(metrics_app):
    app, _ = metrics_app
    anonymous = app.test_client()
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.get("/metrics", headers=bearer("n" * 40)).status_code == 401
    assert anonymous.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    user = app.test_client()
    AuthActions(user).login(email="user@example.com")
    assert user.get("/metrics").status_code == 403
    admin = app.test_client()
    AuthActions(admin).login(email="admin@example.com")
    assert admin.get("/metrics").status_code == 200


def test_verifications_are_counted_by_outcome_with_latency_and_gauges(metrics_app):
    app, user = metrics_app
    client = app.test_client()
    _, token = new_key(app, user, scopes=("read:data",))
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    client.get("/api/v1/whoami", headers=bearer(token[:-1] + ("A" if token[-1] != "A" else "B")))
    client.get("/api/v1/api-keys", headers=bearer(token))  # lacks keys:read
    with app.app_context():
        db.session.add(Alert(kind="failure_burst", ip="192.0.2.1", message="test"))
        db.session.commit()
    flush(app)
    after = scrape(client)
    name = "keyfob_key_verifications_total"
    def counted(outcome: str) -> float:
        return sample(after, name, outcome=outcome, via="keyfob") - sample(before, name, outcome=outcome, via="keyfob")

    assert (counted("valid"), counted("malformed"), counted("insufficient_scope")) == (3, 1, 1)
    histogram = "keyfob_request_duration_seconds_count"
    assert sample(after, histogram, method="GET", route="/api/v1/whoami") - \
        sample(before, histogram, method="GET", route="/api/v1/whoami") == 4
    assert sample(after, "keyfob_active_keys") == 1
    assert sample(after, "keyfob_open_alerts") == 1
    client.get("/no/such/page/123")
    assert sample(scrape(client), histogram, method="GET", route="unmatched") >= 1


def test_the_active_keys_gauge_counts_only_keys_that_would_be_accepted_now(metrics_app):
    """Its help says "keys that would be accepted now": not a key whose uses are spent, nor one whose owner is
    deactivated, though both still have the status "active"."""
    app, user = metrics_app
    client = app.test_client()
    new_key(app, user, name="usable")
    _, spent = new_key(app, user, name="one use", remaining_uses=1)
    with app.app_context():
        other = accounts.create_user("gone@example.com", PASSWORD).id
    new_key(app, other, name="orphaned")
    assert sample(scrape(client), "keyfob_active_keys") == 3
    assert client.get("/api/v1/whoami", headers=bearer(spent)).status_code == 200  # its one use
    with app.app_context():
        accounts.set_active(db.session.get(User, other), False, actor=Actor.cli())
    assert sample(scrape(client), "keyfob_active_keys") == 1


def test_metrics_add_up_across_gunicorn_workers(tmp_path):
    folder = tmp_path / "metrics"
    with gunicorn_with_a_key(tmp_path, METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(folder)) as gunicorn:
        # Send batches until both workers have answered some (each writes its own counter file), so the totals
        # below can only be right if the scrape sums the workers.
        sent, whoami = 0, f"{gunicorn.base}/api/v1/whoami"
        with ThreadPoolExecutor(max_workers=8) as pool:
            while sent < 2000 and (sent == 0 or len(list(folder.glob("counter_*.db"))) < 2):
                statuses = list(pool.map(lambda _: status_of(whoami, bearer(gunicorn.token)), range(100)))
                assert statuses.count(200) == 100
                sent += 100
        assert len(list(folder.glob("counter_*.db"))) >= 2, "one worker answered everything"
        texts = []
        for _ in range(6):  # several scrapes, so more than one worker answers
            request = urllib.request.Request(f"{gunicorn.base}/metrics", headers=bearer(TOKEN))
            with urllib.request.urlopen(request, timeout=10) as response:
                texts.append(response.read().decode())
    for text in texts:  # whichever worker answered, it reports both workers' counts
        assert sample(text, "keyfob_key_verifications_total", outcome="valid", via="keyfob") == sent
        assert sample(text, "keyfob_request_duration_seconds_count", method="GET", route="/api/v1/whoami") == sent
